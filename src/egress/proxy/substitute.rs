//! Where a placeholder becomes its value in a request head, and where it is only reported.
//!
//! Substitution happens in exactly these places, and only for grants whose binding covers the
//! request's host (the caller filters): the credential of `Authorization` in the Bearer and
//! `token` schemes, both fields of Basic (decoded, replaced, re-encoded), and the header and
//! query-parameter names the binding lists. A field is substituted only when it *is* a
//! placeholder (surrounding whitespace aside), never when a placeholder is part of it.
//!
//! [`sightings`] then finds every placeholder still left in a head: each one is an audit
//! finding, left as it is. Body sightings are found while the body streams (`scan`).
//!
//! Everything here is pure (no I/O, no logging), so a fuzz target can drive it with hostile
//! heads. Invariant: nothing here panics on any input, and a rewritten header is marked
//! sensitive.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::egress::grant::Grant;

/// Where in a request a placeholder was seen but not substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A header (by name) that is not a substitution place for this secret here.
    Header(HeaderName),
    /// The path of the request target.
    Path,
    /// A query parameter the binding does not name (or the query of a plain-http request).
    Query,
    /// The request body.
    Body,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header {name}"),
            Self::Path => f.write_str("path"),
            Self::Query => f.write_str("query"),
            Self::Body => f.write_str("body"),
        }
    }
}

/// One placeholder seen where it is not substituted: the secret's name and the place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub name: String,
    pub place: Place,
}

fn placeholder(grant: &Grant) -> &[u8] {
    grant.placeholder.expose_secret().as_bytes()
}

/// The grant whose placeholder `field` is exactly (ASCII whitespace around it ignored).
fn grant_for<'g>(field: &[u8], grants: &[&'g Grant]) -> Option<&'g Grant> {
    let field = field.trim_ascii();
    if field.is_empty() {
        return None;
    }
    grants.iter().copied().find(|g| placeholder(g) == field)
}

/// The real value of `grant`, the one place this module reads it.
fn value(grant: &Grant) -> &[u8] {
    grant.value.expose_secret().as_bytes()
}

/// Rewrites one `Authorization` value: the credential of Bearer and `token`, or either field
/// of Basic, when it is one of `grants`' placeholders. Returns the new value and how many
/// placeholders were replaced, or `None` when nothing was.
pub fn authorization(header_value: &[u8], grants: &[&Grant]) -> Option<(Zeroizing<Vec<u8>>, usize)> {
    let trimmed = header_value.trim_ascii();
    let split = trimmed.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = trimmed.split_at(split);
    let credential = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token") {
        let grant = grant_for(credential, grants)?;
        let mut out = Zeroizing::new(Vec::with_capacity(scheme.len() + 1 + value(grant).len()));
        out.extend_from_slice(scheme);
        out.push(b' ');
        out.extend_from_slice(value(grant));
        return Some((out, 1));
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = Zeroizing::new(STANDARD.decode(credential).ok()?);
        let colon = decoded.iter().position(|b| *b == b':')?;
        let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
        let (new_user, new_pass) = (grant_for(user, grants), grant_for(pass, grants));
        let count = usize::from(new_user.is_some()) + usize::from(new_pass.is_some());
        if count == 0 {
            return None;
        }
        let mut plain = Zeroizing::new(Vec::with_capacity(decoded.len() + 64));
        plain.extend_from_slice(new_user.map_or(user, value));
        plain.push(b':');
        plain.extend_from_slice(new_pass.map_or(pass, value));
        let encoded = Zeroizing::new(STANDARD.encode(plain.as_slice()));
        let mut out = Zeroizing::new(Vec::with_capacity(6 + encoded.len()));
        out.extend_from_slice(scheme);
        out.push(b' ');
        out.extend_from_slice(encoded.as_bytes());
        return Some((out, count));
    }
    None
}

/// Rewrites the query string (without `?`): the value of each parameter whose name a grant's
/// binding lists and whose value is that grant's placeholder becomes the real value,
/// percent-encoded. Other parameters keep their bytes. Returns the new query and the count,
/// or `None` when nothing was replaced.
pub fn query(query: &str, grants: &[&Grant]) -> Option<(Zeroizing<String>, usize)> {
    let mut out = Zeroizing::new(String::with_capacity(query.len() + 64));
    let mut count = 0;
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let Some((name, raw_value)) = pair.split_once('=') else {
            out.push_str(pair);
            continue;
        };
        let name_decoded = percent_decode(name.as_bytes());
        let value_decoded = Zeroizing::new(percent_decode(raw_value.as_bytes()));
        let named: Vec<&Grant> = grants
            .iter()
            .copied()
            .filter(|g| g.binding.query.iter().any(|q| q.as_bytes() == name_decoded.as_slice()))
            .collect();
        match grant_for(&value_decoded, &named) {
            Some(grant) => {
                out.push_str(name);
                out.push('=');
                percent_encode_into(value(grant), &mut out);
                count += 1;
            }
            None => out.push_str(pair),
        }
    }
    (count > 0).then_some((out, count))
}

/// Substitutes in `Authorization` and in the headers the grants' bindings name. Returns how
/// many placeholders were replaced. Rewritten values are marked sensitive.
pub fn headers(headers: &mut HeaderMap, grants: &[&Grant]) -> usize {
    let mut count = 0;
    count += rewrite_all(headers, &header::AUTHORIZATION, |v| authorization(v, grants));
    let mut names: Vec<&HeaderName> = grants.iter().flat_map(|g| g.binding.headers.iter()).collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    for name in names {
        if *name == header::AUTHORIZATION {
            continue;
        }
        let named: Vec<&Grant> =
            grants.iter().copied().filter(|g| g.binding.headers.contains(name)).collect();
        count += rewrite_all(headers, name, |v| {
            grant_for(v, &named).map(|g| (Zeroizing::new(value(g).to_vec()), 1))
        });
    }
    count
}

/// Applies `rewrite` to every value of header `name`, keeping their order.
fn rewrite_all(
    headers: &mut HeaderMap,
    name: &HeaderName,
    mut rewrite: impl FnMut(&[u8]) -> Option<(Zeroizing<Vec<u8>>, usize)>,
) -> usize {
    if !headers.contains_key(name) {
        return 0;
    }
    let mut count = 0;
    let mut values = Vec::new();
    for old in headers.get_all(name) {
        match rewrite(old.as_bytes()) {
            Some((new, n)) => match HeaderValue::from_bytes(&new) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    values.push(v);
                    count += n;
                }
                // A value a header cannot carry is not sent: the placeholder stays.
                Err(_) => values.push(old.clone()),
            },
            None => values.push(old.clone()),
        }
    }
    if count > 0 {
        headers.remove(name);
        for v in values {
            headers.append(name.clone(), v);
        }
    }
    count
}

/// Every placeholder of `grants` still present in a request head (path, query, header values,
/// and the decoded fields of Basic credentials), once per secret and place.
pub fn sightings(path_and_query: &str, headers: &HeaderMap, grants: &[Grant]) -> Vec<Sighting> {
    let mut out: Vec<Sighting> = Vec::new();
    let mut note = |grant: &Grant, place: Place| {
        if !out.iter().any(|s| s.name == grant.name && s.place == place) {
            out.push(Sighting { name: grant.name.clone(), place });
        }
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path_decoded = percent_decode(path.as_bytes());
    let query_decoded = query.map(|q| percent_decode(q.as_bytes()));
    for grant in grants {
        let needle = placeholder(grant);
        if needle.is_empty() {
            continue;
        }
        if contains(path.as_bytes(), needle) || contains(&path_decoded, needle) {
            note(grant, Place::Path);
        }
        if let (Some(raw), Some(decoded)) = (query, &query_decoded) {
            if contains(raw.as_bytes(), needle) || contains(decoded, needle) {
                note(grant, Place::Query);
            }
        }
        for (name, v) in headers {
            let bytes = v.as_bytes();
            if contains(bytes, needle) || basic_contains(name, bytes, needle) {
                note(grant, Place::Header(name.clone()));
            }
        }
    }
    out
}

/// True when `value` of header `name` is Basic credentials whose decoded text holds `needle`.
fn basic_contains(name: &HeaderName, value: &[u8], needle: &[u8]) -> bool {
    if *name != header::AUTHORIZATION && *name != header::PROXY_AUTHORIZATION {
        return false;
    }
    let value = value.trim_ascii();
    let Some(rest) = value.get(..6).filter(|s| s.eq_ignore_ascii_case(b"basic ")).map(|_| &value[6..]) else {
        return false;
    };
    STANDARD.decode(rest.trim_ascii()).map(Zeroizing::new).is_ok_and(|d| contains(&d, needle))
}

/// True when `needle` (not empty) occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Percent-decoding as query strings use it (`+` is a space); malformed escapes stay as they
/// are.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => match (input.get(i + 1).and_then(hex_val), input.get(i + 2).and_then(hex_val)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_val(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 component encoding: everything but unreserved characters is escaped.
fn percent_encode_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::egress::binding::{Binding, HostPattern};

    const HOLDER: &str = "ghp_PLACEHOLDER0123456789abcdefghijkl";
    const VALUE: &str = "ghp_realvalue/+=0123456789abcdefghijk";

    fn grant(name: &str, holder: &str, value: &str, headers: &[&str], query: &[&str]) -> Grant {
        Grant {
            name: name.into(),
            placeholder: SecretString::from(holder),
            value: SecretString::from(value),
            binding: Arc::new(Binding {
                hosts: vec![HostPattern::Exact("api.test.example".into())],
                headers: headers.iter().map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()).collect(),
                query: query.iter().map(|q| q.to_string()).collect(),
            }),
        }
    }

    fn one() -> Grant {
        grant("GITHUB_TOKEN", HOLDER, VALUE, &["x-api-key"], &["key"])
    }

    #[test]
    fn bearer_and_token_schemes() {
        let g = one();
        for scheme in ["Bearer", "bearer", "token", "TOKEN"] {
            let (out, n) = authorization(format!("{scheme} {HOLDER}").as_bytes(), &[&g]).unwrap();
            assert_eq!(out.as_slice(), format!("{scheme} {VALUE}").as_bytes());
            assert_eq!(n, 1);
        }
        assert!(authorization(format!("Bearer x{HOLDER}").as_bytes(), &[&g]).is_none());
        assert!(authorization(format!("Digest {HOLDER}").as_bytes(), &[&g]).is_none());
        assert!(authorization(HOLDER.as_bytes(), &[&g]).is_none());
    }

    #[test]
    fn basic_both_fields() {
        let g = one();
        let header = format!("Basic {}", STANDARD.encode(format!("{HOLDER}:{HOLDER}")));
        let (out, n) = authorization(header.as_bytes(), &[&g]).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            out.as_slice(),
            format!("Basic {}", STANDARD.encode(format!("{VALUE}:{VALUE}"))).as_bytes()
        );
        let header = format!("basic {}", STANDARD.encode(format!("x-access-token:{HOLDER}")));
        let (out, n) = authorization(header.as_bytes(), &[&g]).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out.as_slice(),
            format!("basic {}", STANDARD.encode(format!("x-access-token:{VALUE}"))).as_bytes()
        );
        assert!(authorization(b"Basic !!!notbase64", &[&g]).is_none());
        assert!(authorization(format!("Basic {}", STANDARD.encode("nocolon")).as_bytes(), &[&g]).is_none());
    }

    #[test]
    fn query_named_only() {
        let g = one();
        let q = format!("a=1&key={HOLDER}&other={HOLDER}&flag");
        let (out, n) = query(&q, &[&g]).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out.as_str(),
            format!("a=1&key=ghp_realvalue%2F%2B%3D0123456789abcdefghijk&other={HOLDER}&flag")
        );
        assert!(query(&format!("other={HOLDER}"), &[&g]).is_none());
        assert!(query("", &[&g]).is_none());
        // An encoded name and value still match.
        let q = format!("k%65y={}", HOLDER.replace('_', "%5F"));
        assert_eq!(query(&q, &[&g]).unwrap().1, 1);
    }

    #[test]
    fn headers_named_and_authorization() {
        let g = one();
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {HOLDER}").parse().unwrap());
        h.insert("x-api-key", format!(" {HOLDER} ").parse().unwrap());
        h.insert("x-other", HOLDER.parse().unwrap());
        assert_eq!(headers(&mut h, &[&g]), 2);
        assert_eq!(h[header::AUTHORIZATION], format!("Bearer {VALUE}").as_str());
        assert!(h[header::AUTHORIZATION].is_sensitive());
        assert_eq!(h["x-api-key"], VALUE);
        assert_eq!(h["x-other"], HOLDER);
        let left = sightings("/", &h, &[g]);
        assert_eq!(
            left,
            vec![Sighting {
                name: "GITHUB_TOKEN".into(),
                place: Place::Header(HeaderName::from_static("x-other"))
            }]
        );
    }

    #[test]
    fn only_the_given_grants_substitute() {
        let g = one();
        let other = grant(
            "NPM_TOKEN",
            "npm_PLACEHOLDERxxxxxxxxxxxxxxxxxxxxx",
            "npm_valuexxxxxxxxxxxxxxxxxxxxxxxxxxx",
            &[],
            &[],
        );
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer npm_PLACEHOLDERxxxxxxxxxxxxxxxxxxxxx".parse().unwrap());
        assert_eq!(headers(&mut h, &[&g]), 0);
        let seen = sightings("/x", &h, &[g, other]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].name, "NPM_TOKEN");
    }

    #[test]
    fn sightings_everywhere_in_the_head() {
        let g = one();
        let mut h = HeaderMap::new();
        let basic = format!("Basic {}", STANDARD.encode(format!("u:{HOLDER}")));
        h.insert(header::AUTHORIZATION, basic.parse().unwrap());
        let seen = sightings(&format!("/p/{HOLDER}?q={}", HOLDER.replace('_', "%5F")), &h, &[g]);
        let places: Vec<String> = seen.iter().map(|s| s.place.to_string()).collect();
        assert_eq!(places, ["path", "query", "header authorization"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_heads_never_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200), text in ".{0,200}") {
            let g = one();
            let _ = authorization(&raw, &[&g]);
            let mut basic = b"Basic ".to_vec();
            basic.extend_from_slice(STANDARD.encode(&raw).as_bytes());
            let _ = authorization(&basic, &[&g]);
            let _ = query(&text, &[&g]);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                h.insert(header::AUTHORIZATION, v.clone());
                h.insert("x-api-key", v);
            }
            let _ = headers(&mut h, &[&g]);
            let _ = sightings(&text, &h, std::slice::from_ref(&g));
        }
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let g = one();
        for input in
            [&b""[..], b" ", b"Basic", b"Basic ", b"Bearer ", b"\xff\xfe \xff", b"Basic ====", b"%", b"%%%4"]
        {
            let _ = authorization(input, &[&g]);
            if let Ok(s) = std::str::from_utf8(input) {
                let _ = query(s, &[&g]);
                let _ = sightings(s, &HeaderMap::new(), std::slice::from_ref(&g));
            }
        }
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"a%41+%zz"), b"aA %zz");
    }
}
