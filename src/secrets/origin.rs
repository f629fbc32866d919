//! Where a lookup may go: normalised origins and the allow-list built from configuration.
//!
//! An [`Origin`] is (scheme, lowercased host without a trailing dot, port with the scheme's
//! default folded in), so `https://App.Example.dev.:443` and `https://app.example.dev` are
//! the same origin. [`OriginPolicy`] answers "may a lookup go to this URL, and is it a
//! settings origin (which gets the session key)?". It is checked when a descriptor is
//! registered and again before every request; the connect-time address guard lives with the
//! HTTP client, not here.

use std::fmt;

use url::{Host, Url};

/// A normalised (scheme, host, port) triple.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// Why a URL cannot be used for a lookup. Messages never contain the URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    #[error("url scheme must be http or https")]
    Scheme,
    #[error("url must not contain a user name or password")]
    Userinfo,
    #[error("url has no host")]
    NoHost,
    #[error("url origin {0} is not on the lookup allow-list")]
    NotAllowed(Origin),
}

impl Origin {
    /// The origin of `url`, refusing schemes other than http(s), userinfo and missing hosts.
    pub fn of(url: &Url) -> Result<Self, OriginError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(OriginError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::Userinfo);
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(OriginError::NoHost),
        };
        if host.is_empty() {
            return Err(OriginError::NoHost);
        }
        let port = url.port_or_known_default().ok_or(OriginError::NoHost)?;
        Ok(Self { scheme: scheme.to_owned(), host, port })
    }

    /// Parses an origin given on the command line (`https://host[:port]`, a path is ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("invalid origin: {e}"))?;
        Self::of(&url).map_err(|e| e.to_string())
    }

    /// The scheme, `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// True when the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h == "localhost"
            || h.ends_with(".localhost")
            || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = match self.scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        if self.port == default {
            write!(f, "{}://{}", self.scheme, self.host)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// The lookup allow-list: settings origins (which receive the session key) and other
/// allowed origins (which never do).
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    settings: Vec<Origin>,
    others: Vec<Origin>,
}

/// What the policy says about an allowed URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginKind {
    /// A settings origin: the session key may be set and `env_headers` are honoured.
    Settings,
    /// Allowed, but never given the session key or `env_headers`.
    Other,
}

impl OriginPolicy {
    /// Builds the allow-list from the settings origins and the other allowed origins.
    pub fn new(settings: Vec<Origin>, others: Vec<Origin>) -> Self {
        Self { settings, others }
    }

    /// Checks `url` and says which kind of origin it is.
    pub fn check(&self, url: &Url) -> Result<(Origin, OriginKind), OriginError> {
        let origin = Origin::of(url)?;
        if self.settings.contains(&origin) {
            Ok((origin, OriginKind::Settings))
        } else if self.others.contains(&origin) {
            Ok((origin, OriginKind::Other))
        } else {
            Err(OriginError::NotAllowed(origin))
        }
    }

    /// The settings origins, in configuration order.
    pub fn settings(&self) -> &[Origin] {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::of(&Url::parse(s).unwrap()).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(origin("https://App.Example.DEV.:443/x?y"), origin("https://app.example.dev"));
        assert_eq!(origin("http://h:80/"), origin("http://h"));
        assert_ne!(origin("http://h:8080/"), origin("http://h"));
        assert_ne!(origin("http://h/"), origin("https://h"));
        assert_eq!(origin("https://h:8443").to_string(), "https://h:8443");
        assert_eq!(origin("http://[::1]:80").to_string(), "http://[::1]");
        assert!(origin("http://[::1]:9").is_loopback());
        assert!(origin("http://127.0.0.2").is_loopback());
        assert!(origin("http://localhost:9").is_loopback());
        assert!(!origin("http://example.com").is_loopback());
    }

    #[test]
    fn refuses() {
        let of = |s: &str| Origin::of(&Url::parse(s).unwrap());
        assert_eq!(of("file:///etc/passwd"), Err(OriginError::Scheme));
        assert_eq!(of("ftp://h/x"), Err(OriginError::Scheme));
        assert_eq!(of("https://u:p@h/x"), Err(OriginError::Userinfo));
        assert_eq!(of("https://u@h/x"), Err(OriginError::Userinfo));
    }

    #[test]
    fn policy() {
        let p =
            OriginPolicy::new(vec![origin("https://app.example.dev")], vec![origin("http://127.0.0.1:8000")]);
        let check = |s: &str| p.check(&Url::parse(s).unwrap()).map(|(_, k)| k);
        assert_eq!(check("https://APP.example.dev/api"), Ok(OriginKind::Settings));
        assert_eq!(check("http://127.0.0.1:8000/api"), Ok(OriginKind::Other));
        assert!(matches!(check("https://evil.example/api"), Err(OriginError::NotAllowed(_))));
        assert!(matches!(check("http://app.example.dev/api"), Err(OriginError::NotAllowed(_))));
    }
}
