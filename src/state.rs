//! [`AppState`]: the handles every request handler shares.
//!
//! Every field is a cheap handle (`Arc`, a token, small copies of configuration); locks live
//! inside the components, never around the state. Each component is built from its own part
//! of [`Config`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::config::{Config, HttpConfig, ListenAddr};
use crate::secrets::fetch::{FetchBuildError, FetchConfig, Fetcher};
use crate::secrets::registry::Registry;
use crate::secrets::resolver::Resolver;
use crate::secrets::session_key::SessionKey;
use crate::secrets::source::ParseContext;

/// Which `Host` headers are accepted (DNS-rebinding guard).
#[derive(Clone, Debug)]
pub enum HostPolicy {
    /// Any host: unix sockets and wildcard binds (which require a configured key).
    Any,
    /// Only these host names (ports are not compared: a rebinding attack changes the name).
    Names(Vec<String>),
}

impl HostPolicy {
    fn for_listen(listen: &ListenAddr) -> Self {
        match listen {
            ListenAddr::Unix(_) => Self::Any,
            ListenAddr::Tcp(a) if a.ip().is_unspecified() => Self::Any,
            ListenAddr::Tcp(a) => {
                let ip = match a.ip() {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                };
                Self::Names(vec![ip, "localhost".to_owned()])
            }
        }
    }

    /// True when a request with this `Host` header value may be served.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Names(names) => {
                let name = match host.rfind(':') {
                    // Strip a port, but not the colons of a bracketed IPv6 literal.
                    Some(i) if !host[i..].contains(']') => &host[..i],
                    _ => host,
                };
                names.iter().any(|n| n.eq_ignore_ascii_case(name.trim_end_matches('.')))
            }
        }
    }
}

/// Shared state of the HTTP service.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub resolver: Resolver,
    pub session_key: Arc<SessionKey>,
    pub keys: Arc<ApiKeys>,
    pub sources: Arc<ParseContext>,
    pub http: HttpConfig,
    pub hosts: Arc<HostPolicy>,
    pub mask_min_length: usize,
    pub started: Instant,
    /// Requests in flight beyond this are refused with 429.
    pub request_slots: Arc<Semaphore>,
    ready: Arc<AtomicBool>,
    /// Cancelled when the service starts draining.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Builds every component from its part of `config`; `keys` were loaded by the caller
    /// (loading can generate a key file, which is start-up's business, not the state's).
    pub fn new(config: &Config, keys: ApiKeys) -> Result<Self, FetchBuildError> {
        let lookup = &config.lookup;
        let fetcher = Fetcher::new(FetchConfig {
            timeout: lookup.timeout,
            max_value_bytes: lookup.max_value_bytes,
            proxy: lookup.proxy.clone(),
            extra_ca_file: lookup.extra_ca_file.clone(),
            resolve_overrides: lookup.resolve_overrides.clone(),
            retry_base: Duration::from_millis(200),
            max_attempts: 3,
        })?;
        let session_key = Arc::new(SessionKey::new(lookup.session_key.clone()));
        let resolver = Resolver::new(
            fetcher,
            lookup.cache.clone(),
            config.sources.policy.clone(),
            session_key.clone(),
            lookup.env_headers.clone(),
        );
        Ok(Self {
            registry: Arc::new(Registry::new(config.registry)),
            resolver,
            session_key,
            keys: Arc::new(keys),
            sources: Arc::new(config.sources.clone()),
            http: config.http,
            hosts: Arc::new(HostPolicy::for_listen(&config.listen)),
            mask_min_length: config.mask_min_length,
            started: Instant::now(),
            request_slots: Arc::new(Semaphore::new(config.http.max_concurrent_requests)),
            ready: Arc::new(AtomicBool::new(false)),
            shutdown: CancellationToken::new(),
        })
    }

    /// True once listening with state loaded, and until draining starts.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    /// Marks the service ready (called by `serve` once it is listening).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_policy() {
        let p = HostPolicy::for_listen(&ListenAddr::Tcp("127.0.0.1:8001".parse().unwrap()));
        for ok in ["127.0.0.1:8001", "127.0.0.1", "localhost", "LOCALHOST:9", "localhost."] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.example:8001", "127.0.0.2:8001", "localhost.evil.example", ""] {
            assert!(!p.allows(bad), "{bad}");
        }
        let p6 = HostPolicy::for_listen(&ListenAddr::Tcp("[::1]:8001".parse().unwrap()));
        assert!(p6.allows("[::1]:8001") && p6.allows("[::1]") && !p6.allows("::1x"));
        assert!(HostPolicy::for_listen(&ListenAddr::Tcp("0.0.0.0:1".parse().unwrap())).allows("anything"));
    }
}
