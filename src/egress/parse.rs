//! Checking bindings as they arrive: the descriptor fields `egress_hosts`, `egress_headers`
//! and `egress_query`, and the `--egress-bind 'NAME=HOST[,HOST…][;header=H][;query=Q]'`
//! flag. Both produce a [`Binding`] that obeys the same rules.
//!
//! The rules (contract §8): hosts are exact DNS names (lower-cased, IDNA to ASCII) or `*.`
//! wildcards that are not over a public suffix (`*.com`, `*.co.uk`, `*.github.io` are
//! refused, as is any single-label suffix); IP literals, ports, paths and a `*` anywhere else
//! are refused. Header names must be valid and must not be ones that frame, route or carry
//! other state (`Host`, hop-by-hop headers, `Proxy-*`, `Content-Length`, `Transfer-Encoding`,
//! `Cookie`); `Authorization` is always a place, so naming it adds nothing and is accepted.
//!
//! Errors name the entry (by position) and never quote the input: a caller who pasted a
//! token into the wrong field must not get it echoed.

use http::HeaderName;
use url::Host;

use super::binding::{Binding, HostPattern};

/// Most hosts one binding may list.
pub const MAX_HOSTS: usize = 64;
/// Most extra header names, and most query parameter names, one binding may list.
pub const MAX_PLACES: usize = 16;
/// Shortest value that may be bound: a shorter placeholder would be guessable and its
/// reflections ambiguous.
pub const MIN_BOUND_BYTES: usize = 16;
/// Longest query parameter name accepted.
const MAX_QUERY_NAME: usize = 128;

/// Headers a binding may not name: they frame or route the request, or carry other state
/// that a substitution would mix a credential into.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "set-cookie",
    "forwarded",
];
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["proxy-", "x-forwarded-"];

/// Why a binding was refused. Messages name the position of the entry at fault, never its
/// text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("must list at least one host")]
    NoHosts,
    #[error("at most {MAX_HOSTS} hosts")]
    TooManyHosts,
    #[error("at most {MAX_PLACES} names")]
    TooManyPlaces,
    #[error("entry {0} must be a string")]
    NotString(usize),
    #[error("entry {0} is an IP address; bind names, not addresses")]
    IpLiteral(usize),
    #[error("entry {0} must be a host name without scheme, port or path")]
    NotHost(usize),
    #[error("entry {0} has a `*` that is not a leading `*.`")]
    BadWildcard(usize),
    #[error("entry {0} is a wildcard over a public suffix")]
    PublicSuffix(usize),
    #[error("entry {0} is not a valid header name")]
    BadHeader(usize),
    #[error("entry {0} names a header that frames or routes the request and cannot carry a credential")]
    ForbiddenHeader(usize),
    #[error("entry {0} is not a valid query parameter name")]
    BadQuery(usize),
}

/// One host entry: an exact name or a `*.` wildcard. `index` is for the error only.
pub fn parse_host(raw: &str, index: usize) -> Result<HostPattern, BindingError> {
    let (wildcard, rest) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if rest.contains('*') {
        return Err(BindingError::BadWildcard(index));
    }
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.is_empty() || rest.starts_with('[') {
        return Err(if rest.starts_with('[') {
            BindingError::IpLiteral(index)
        } else {
            BindingError::NotHost(index)
        });
    }
    if rest.parse::<std::net::IpAddr>().is_ok() {
        return Err(BindingError::IpLiteral(index));
    }
    if rest.chars().any(|c| {
        matches!(c, ':' | '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control() || invisible(c)
    }) {
        return Err(BindingError::NotHost(index));
    }
    // The URL host parser does what a client does with the name: IDNA to ASCII, lower case,
    // and the WHATWG IPv4 forms (`127.1`, `0x7f.1`) read as addresses.
    let name = match Host::parse(rest) {
        Ok(Host::Domain(name)) => name,
        Ok(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(BindingError::IpLiteral(index)),
        Err(_) => return Err(BindingError::NotHost(index)),
    };
    if name.split('.').any(|label| label.is_empty() || label.len() > 63) || name.len() > 253 {
        return Err(BindingError::NotHost(index));
    }
    if !wildcard {
        return Ok(HostPattern::Exact(name));
    }
    // Over a public suffix (or a name the list does not know, which its default rule makes a
    // suffix of its own): `*.com` would bind the credential to every site.
    let is_suffix = psl::suffix(name.as_bytes()).is_none_or(|s| s.as_bytes().len() == name.len());
    if is_suffix {
        return Err(BindingError::PublicSuffix(index));
    }
    Ok(HostPattern::Below(name))
}

/// Default-ignorable code points (zero-width and joiner characters, bidi controls, variation
/// selectors, soft hyphen, tags): IDNA drops them silently, so a name that shows one host
/// would bind another. Refused rather than mapped.
fn invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0x1BCA0..=0x1BCA3
            | 0xE0000..=0xE0FFF
    )
}

/// One extra header name; `Ok(None)` for `Authorization`, which is always a place.
pub fn parse_header(raw: &str, index: usize) -> Result<Option<HeaderName>, BindingError> {
    let name = HeaderName::from_bytes(raw.as_bytes()).map_err(|_| BindingError::BadHeader(index))?;
    let lower = name.as_str();
    if FORBIDDEN_HEADERS.contains(&lower) || FORBIDDEN_HEADER_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Err(BindingError::ForbiddenHeader(index));
    }
    Ok((name != http::header::AUTHORIZATION).then_some(name))
}

/// One query parameter name: printable ASCII without the characters that delimit a query.
pub fn parse_query(raw: &str, index: usize) -> Result<String, BindingError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_QUERY_NAME
        && raw.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#' | b'%' | b'+'));
    if ok { Ok(raw.to_owned()) } else { Err(BindingError::BadQuery(index)) }
}

/// Which of a binding's lists an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Hosts,
    Headers,
    Query,
}

impl Field {
    /// The descriptor field name.
    pub fn descriptor_field(self) -> &'static str {
        match self {
            Self::Hosts => "egress_hosts",
            Self::Headers => "egress_headers",
            Self::Query => "egress_query",
        }
    }
}

/// A binding from its three lists of entries (already known to be strings).
pub fn build<'a>(
    hosts: impl IntoIterator<Item = &'a str>,
    headers: impl IntoIterator<Item = &'a str>,
    query: impl IntoIterator<Item = &'a str>,
) -> Result<Binding, (Field, BindingError)> {
    let mut binding = Binding::default();
    for (i, raw) in hosts.into_iter().enumerate() {
        if i >= MAX_HOSTS {
            return Err((Field::Hosts, BindingError::TooManyHosts));
        }
        let host = parse_host(raw, i).map_err(|e| (Field::Hosts, e))?;
        if !binding.hosts.contains(&host) {
            binding.hosts.push(host);
        }
    }
    if binding.hosts.is_empty() {
        return Err((Field::Hosts, BindingError::NoHosts));
    }
    for (i, raw) in headers.into_iter().enumerate() {
        if i >= MAX_PLACES {
            return Err((Field::Headers, BindingError::TooManyPlaces));
        }
        if let Some(h) = parse_header(raw, i).map_err(|e| (Field::Headers, e))? {
            if !binding.headers.contains(&h) {
                binding.headers.push(h);
            }
        }
    }
    for (i, raw) in query.into_iter().enumerate() {
        if i >= MAX_PLACES {
            return Err((Field::Query, BindingError::TooManyPlaces));
        }
        let q = parse_query(raw, i).map_err(|e| (Field::Query, e))?;
        if !binding.query.contains(&q) {
            binding.query.push(q);
        }
    }
    Ok(binding)
}

/// Why an `--egress-bind` value was refused; it may quote the name, never the rest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindFlagError {
    #[error("expected NAME=HOST[,HOST…][;header=H][;query=Q]")]
    Shape,
    #[error("{0} is not a valid variable name")]
    Name(String),
    #[error("{name}: unknown option (expected header=H or query=Q)")]
    Option { name: String },
    #[error("{name}: hosts: {source}")]
    Hosts { name: String, source: BindingError },
    #[error("{name}: header: {source}")]
    Header { name: String, source: BindingError },
    #[error("{name}: query: {source}")]
    Query { name: String, source: BindingError },
}

/// `NAME=HOST[,HOST…][;header=H][;query=Q]`; `header` and `query` may repeat and may list
/// several names separated by commas.
pub fn parse_bind_flag(text: &str) -> Result<(String, Binding), BindFlagError> {
    let (name, rest) = text.split_once('=').ok_or(BindFlagError::Shape)?;
    if !crate::secrets::value::is_env_name(name) {
        return Err(BindFlagError::Name(if name.len() <= 64 && name.is_ascii() {
            name.to_owned()
        } else {
            "the name".into()
        }));
    }
    let mut parts = rest.split(';');
    let hosts: Vec<&str> = parts.next().unwrap_or_default().split(',').filter(|h| !h.is_empty()).collect();
    let (mut headers, mut query) = (Vec::new(), Vec::new());
    for part in parts {
        match part.split_once('=') {
            Some(("header", list)) => headers.extend(list.split(',')),
            Some(("query", list)) => query.extend(list.split(',')),
            _ => return Err(BindFlagError::Option { name: name.to_owned() }),
        }
    }
    let binding = build(hosts, headers, query).map_err(|(field, source)| {
        let name = name.to_owned();
        match field {
            Field::Hosts => BindFlagError::Hosts { name, source },
            Field::Headers => BindFlagError::Header { name, source },
            Field::Query => BindFlagError::Query { name, source },
        }
    })?;
    Ok((name.to_owned(), binding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(parse_host("API.GitHub.com", 0), Ok(HostPattern::Exact("api.github.com".into())));
        assert_eq!(parse_host("api.github.com.", 0), Ok(HostPattern::Exact("api.github.com".into())));
        assert_eq!(parse_host("*.example.com", 0), Ok(HostPattern::Below("example.com".into())));
        assert_eq!(parse_host("*.foo.github.io", 0), Ok(HostPattern::Below("foo.github.io".into())));
        assert_eq!(parse_host("bücher.example", 0), Ok(HostPattern::Exact("xn--bcher-kva.example".into())));
        for ip in ["127.0.0.1", "127.1", "0x7f.1", "[::1]", "::1", "2001:db8::1", "*.1.2.3.4"] {
            let e = parse_host(ip, 3).unwrap_err();
            assert!(matches!(e, BindingError::IpLiteral(3) | BindingError::NotHost(3)), "{ip}: {e:?}");
        }
        assert_eq!(parse_host("10.0.0.1", 0), Err(BindingError::IpLiteral(0)));
        for suffix in ["*.com", "*.co.uk", "*.github.io", "*.internal", "*.COM."] {
            assert_eq!(parse_host(suffix, 1), Err(BindingError::PublicSuffix(1)), "{suffix}");
        }
        for bad in ["", "*", "*.", "a.*.com", "*example.com", "**.example.com", "api.github.com:443"] {
            assert!(parse_host(bad, 0).is_err(), "{bad}");
        }
        for bad in ["https://api.github.com", "api.github.com/x", "a..b", "u@host.com", "a b.com"] {
            assert_eq!(parse_host(bad, 0), Err(BindingError::NotHost(0)), "{bad}");
        }
    }

    #[test]
    fn over_long_labels_and_invisible_characters_are_refused() {
        let long = format!("{}.example.com", "a".repeat(64));
        assert_eq!(parse_host(&long, 0), Err(BindingError::NotHost(0)));
        assert!(parse_host(&format!("{}.example.com", "a".repeat(63)), 0).is_ok());
        // IDNA would drop these and bind `api.example.com` under a name that shows otherwise.
        for bad in [
            "api\u{200b}.example.com",
            "api.exa\u{200d}mple.com",
            "\u{feff}api.example.com",
            "api.example.com\u{202e}",
            "*.ex\u{ad}ample.com",
        ] {
            assert_eq!(parse_host(bad, 1), Err(BindingError::NotHost(1)), "{bad:?}");
        }
    }

    #[test]
    fn headers_and_query() {
        assert_eq!(parse_header("X-Api-Key", 0).unwrap().unwrap().as_str(), "x-api-key");
        assert_eq!(parse_header("Authorization", 0), Ok(None));
        for bad in
            ["Host", "content-length", "Transfer-Encoding", "Proxy-Authorization", "Cookie", "Connection"]
        {
            assert_eq!(parse_header(bad, 2), Err(BindingError::ForbiddenHeader(2)), "{bad}");
        }
        for bad in ["", "X Key", "X-Key\n", "é"] {
            assert_eq!(parse_header(bad, 0), Err(BindingError::BadHeader(0)), "{bad:?}");
        }
        assert_eq!(parse_query("key", 0), Ok("key".into()));
        for bad in ["", "a=b", "a&b", "a b", "a%20"] {
            assert_eq!(parse_query(bad, 0), Err(BindingError::BadQuery(0)), "{bad}");
        }
    }

    #[test]
    fn bind_flag() {
        let (name, b) = parse_bind_flag(
            "GITLAB_TOKEN=gitlab.com,*.gitlab.example;header=PRIVATE-TOKEN;query=private_token",
        )
        .unwrap();
        assert_eq!(name, "GITLAB_TOKEN");
        assert_eq!(b.hosts.len(), 2);
        assert_eq!(b.headers[0].as_str(), "private-token");
        assert_eq!(b.query, ["private_token"]);
        assert!(matches!(
            parse_bind_flag("X=*.com"),
            Err(BindFlagError::Hosts { source: BindingError::PublicSuffix(0), .. })
        ));
        assert!(matches!(
            parse_bind_flag("X="),
            Err(BindFlagError::Hosts { source: BindingError::NoHosts, .. })
        ));
        assert!(matches!(parse_bind_flag("X=a.com;cookie=1"), Err(BindFlagError::Option { .. })));
        assert!(matches!(parse_bind_flag("nope"), Err(BindFlagError::Shape)));
        assert!(matches!(parse_bind_flag("1X=a.com"), Err(BindFlagError::Name(_))));
        let e = parse_bind_flag("X=ghp_sekrit:443").unwrap_err().to_string();
        assert!(!e.contains("sekrit"), "{e}");
    }
}
