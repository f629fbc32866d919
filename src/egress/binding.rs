//! Where a bound secret may go: the hosts (exact names or `*.` suffix wildcards) and the
//! request places beyond `Authorization` (named headers and query parameters).
//!
//! Validation of the wire fields and of `--egress-bind` lives with their parsers; the types
//! here are already checked and only answer "does this host / header / parameter match".

use http::HeaderName;

/// One allowed host: an exact name, or every name strictly below a suffix (`*.example.com`).
/// Names are stored lower-case, without a trailing dot; ports are not part of a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name ending in `.` + this suffix (the suffix itself does not match).
    Below(String),
}

impl HostPattern {
    /// True when `host` (any case, optional trailing dot, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        match self {
            Self::Exact(name) => host == *name,
            Self::Below(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Below(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// A secret's binding. `Authorization` is always a substitution place; `headers` and `query`
/// add to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub hosts: Vec<HostPattern>,
    pub headers: Vec<HeaderName>,
    /// Query parameter names, compared exactly (after percent-decoding of the name).
    pub query: Vec<String>,
}

impl Binding {
    /// True when `host` is one of the bound hosts.
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| p.matches(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_below() {
        let exact = HostPattern::Exact("api.github.com".into());
        assert!(exact.matches("API.github.com."));
        assert!(!exact.matches("xapi.github.com"));
        let below = HostPattern::Below("example.com".into());
        assert!(below.matches("a.example.com"));
        assert!(below.matches("a.b.example.com"));
        assert!(!below.matches("example.com"));
        assert!(!below.matches("badexample.com"));
    }
}
