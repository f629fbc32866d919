//! The label vocabularies of every metric family: closed enums, plus the route template.
//!
//! A label value is one of a fixed list of words chosen here, or (for [`Route`]) a template
//! the router was built with. Nothing a caller sends (a path, a secret name or value, a host
//! name, a key) can become a label: there is no constructor that takes a caller's string.
//! That bounds the number of series, and keeps `/metrics` free of anything worth hiding.

use std::fmt;
use std::sync::Arc;

use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// Declares a closed vocabulary: an enum, its words, `ALL`, and its label encoding.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, so a family can show each series (at 0) from the start.
            // Not every family shows all its series up front.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The label value.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

vocabulary! {
    /// An HTTP request method; the rare ones are `other`.
    Method {
        Get => "GET",
        Post => "POST",
        Delete => "DELETE",
        Put => "PUT",
        Patch => "PATCH",
        Head => "HEAD",
        Options => "OPTIONS",
        Other => "other",
    }
}

impl Method {
    /// The vocabulary word for `method`.
    pub(crate) fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Self::Get,
            http::Method::POST => Self::Post,
            http::Method::DELETE => Self::Delete,
            http::Method::PUT => Self::Put,
            http::Method::PATCH => Self::Patch,
            http::Method::HEAD => Self::Head,
            http::Method::OPTIONS => Self::Options,
            _ => Self::Other,
        }
    }
}

vocabulary! {
    /// How one resolution of a LookupSecret ended, as its caller saw it.
    LookupOutcome {
        /// A fresh value (or "no value") from the cache.
        Hit => "hit",
        /// A fresh value (or "no value") from an upstream request, started or joined.
        Miss => "miss",
        /// The last good value, served after a transient failure.
        Stale => "stale",
        /// Nothing to serve.
        Error => "error",
    }
}

vocabulary! {
    /// The class of an upstream answer; `none` when there was none (connect error, timeout,
    /// refused address).
    StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        None => "none",
    }
}

impl StatusClass {
    /// The class of HTTP status `status`; anything outside 100..=599 is `none`.
    pub(crate) fn of(status: u16) -> Self {
        match status / 100 {
            1 => Self::Informational,
            2 => Self::Success,
            3 => Self::Redirection,
            4 => Self::ClientError,
            5 => Self::ServerError,
            _ => Self::None,
        }
    }
}

vocabulary! {
    /// What an upstream request was for.
    UpstreamTarget {
        /// One LookupSecret's value.
        Secret => "secret",
        /// Discovery's list of secrets.
        SecretList => "secret_list",
    }
}

vocabulary! {
    /// How a command that was started ended.
    Ending {
        /// The shell exited (any code, or a signal).
        Exited => "exited",
        /// Its timeout passed; the group was terminated.
        TimedOut => "timed_out",
        /// The caller went away or the service is draining.
        Cancelled => "cancelled",
        /// It could not be started or waited for.
        Failed => "failed",
    }
}

vocabulary! {
    /// The result of one discovery run.
    RunResult {
        Ok => "ok",
        Error => "error",
    }
}

vocabulary! {
    /// A kind of scope (never a conversation id).
    ScopeKind {
        Sandbox => "sandbox",
        Conversation => "conversation",
    }
}

/// The route a request matched, as its template (`/api/conversations/{id}/secrets`), or
/// `unmatched`.
///
/// Built only from axum's [`MatchedPath`], which holds the template a route was declared
/// with, never the request's own path: a conversation id, event id or secret name in a path
/// stays out of the label, and the values are bounded by the routes the service has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Route(Option<Arc<str>>);

impl Route {
    /// The label of a request that matched `matched` (`None`: no route did).
    pub(crate) fn of(matched: Option<&MatchedPath>) -> Self {
        Self(matched.map(|m| Arc::from(m.as_str())))
    }

    /// The template, or `unmatched`.
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("unmatched")
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (100, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (302, "3xx"),
            (401, "4xx"),
            (429, "4xx"),
            (503, "5xx"),
            (0, "none"),
            (99, "none"),
            (600, "none"),
            (u16::MAX, "none"),
        ];
        for (status, class) in cases {
            assert_eq!(StatusClass::of(status).as_str(), class, "{status}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(Method::of(&http::Method::GET).as_str(), "GET");
        assert_eq!(Method::of(&http::Method::DELETE).as_str(), "DELETE");
        let custom = http::Method::from_bytes(b"SECRET-VERB").unwrap();
        assert_eq!(Method::of(&custom).as_str(), "other", "a caller's word never becomes a label");
    }

    #[test]
    fn no_route_is_unmatched() {
        assert_eq!(Route::of(None).as_str(), "unmatched");
        assert_eq!(Route::of(None).to_string(), "unmatched");
    }

    #[test]
    fn vocabularies_are_distinct_lowercase_words() {
        fn check(words: &[&str]) {
            let mut seen = std::collections::HashSet::new();
            for w in words {
                assert!(seen.insert(*w), "{w} twice");
                assert!(w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{w}");
            }
        }
        check(&LookupOutcome::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&StatusClass::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&UpstreamTarget::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&Ending::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&RunResult::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&ScopeKind::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
        check(&Method::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>());
    }
}
