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
use zeroize::Zeroizing;

use crate::auth::ApiKeys;
use crate::config::{Config, HttpConfig, ListenAddr};
use crate::secrets::fetch::{FetchBuildError, Fetcher};
use secrecy::{ExposeSecret, SecretString};

use crate::api::RateLimit;
use crate::bash::EventStore;
use crate::error::ApiError;
use crate::exec::Executor;
use crate::mask::{MaskSet, Masker};
use crate::secrets::export::Unavailable;
use crate::secrets::registry::{Registry, ScopeId};
use crate::secrets::resolver::Resolver;
use crate::secrets::session_key::SessionKey;
use crate::secrets::source::ParseContext;
use crate::secrets::value::SecretValue;

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

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("lookup client: {0}")]
    Lookup(#[from] FetchBuildError),
    #[error("cannot mask the sidecar's own keys: {0}")]
    Mask(#[from] crate::mask::MaskError),
}

/// Shared state of the HTTP service.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub resolver: Resolver,
    pub executor: Executor,
    /// Every value held since start, for masking.
    pub masks: Arc<MaskSet>,
    pub exec_limits: Arc<ExecLimits>,
    /// Commands running beyond this are refused with 429.
    pub command_slots: Arc<Semaphore>,
    pub mask_rate: Arc<RateLimit>,
    /// Events of the reference-compatible bash routes.
    pub bash_events: Arc<EventStore>,
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
    pub fn new(config: &Config, keys: ApiKeys) -> Result<Self, StateError> {
        let lookup = &config.lookup;
        let fetcher = Fetcher::new(lookup.fetch.clone())?;
        let session_key = Arc::new(SessionKey::new(lookup.session_key.clone()));
        let masks = Arc::new(MaskSet::new(config.mask_min_length));
        let resolver = Resolver::new(
            fetcher,
            lookup.cache.clone(),
            config.sources.policy.clone(),
            session_key.clone(),
            lookup.env_headers.clone(),
            masks.clone(),
        );
        // The sidecar's own keys are masked like any value it holds: a root command can read
        // a key file, and nothing should print one by accident.
        let own: Vec<SecretString> = keys.keys().iter().cloned().chain(session_key.held()).collect();
        let own: Vec<(String, &[u8])> = own
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("sidecar/key-{i}"), k.expose_secret().as_bytes()))
            .filter(|(_, k)| masks.is_maskable(k))
            .collect();
        masks.extend(own.iter().map(|(n, k)| (n.as_str(), *k)))?;
        let exec = &config.exec;
        let mut scrub_names = config.sources.allowed_env_headers.clone();
        scrub_names.extend(exec.runner.strip_env.iter().cloned());
        Ok(Self {
            registry: Arc::new(Registry::new(config.registry)),
            executor: Executor::new(exec.runner.clone(), exec.process_env.clone()),
            masks,
            exec_limits: Arc::new(ExecLimits {
                max_timeout: exec.max_timeout,
                refuse_unmaskable: exec.refuse_unmaskable,
                scrub_names,
            }),
            command_slots: Arc::new(Semaphore::new(exec.max_concurrent)),
            mask_rate: Arc::new(RateLimit::new(config.mask_rate)),
            bash_events: Arc::new(EventStore::default()),
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

    /// Every key the sidecar holds or has held (API keys and session keys), to scrub from
    /// children's environments.
    pub fn held_keys(&self) -> Vec<SecretString> {
        let mut keys = self.keys.keys().to_vec();
        keys.extend(self.session_key.held());
        keys
    }

    /// Adds `values` of `scope` to the global mask set and returns a masker that hides them
    /// (and everything held before). Fails closed: an error here refuses the command.
    pub async fn masks_for(
        &self,
        scope: &ScopeId,
        values: &[(String, SecretValue)],
    ) -> Result<Arc<Masker>, ApiError> {
        if self.exec_limits.refuse_unmaskable {
            if let Some((name, _)) = values.iter().find(|(_, v)| !self.masks.is_maskable(v.expose())) {
                return Err(ApiError::MissingSecrets(vec![Unavailable {
                    name: name.clone(),
                    error: format!("secret {name} is shorter than --mask-min-length and cannot be masked"),
                }]));
            }
        }
        self.remember(scope, values.iter().map(|(name, value)| (name.as_str(), value))).await?;
        Ok(self.masks.masker())
    }

    /// Adds held values of `scope` to the global mask set, all with one compilation that runs
    /// off the async workers, and returns once they are masked. Values shorter than
    /// `--mask-min-length` cannot be masked and are skipped (listings report them
    /// `masked: false`); any other failure fails closed.
    ///
    /// The sidecar's own keys can join the set the same way, or with [`MaskSet::extend`] at
    /// start-up.
    pub async fn remember<'a>(
        &self,
        scope: &ScopeId,
        values: impl IntoIterator<Item = (&'a str, &'a SecretValue)>,
    ) -> Result<(), ApiError> {
        let items: Vec<(String, Zeroizing<Vec<u8>>)> = values
            .into_iter()
            .filter(|(_, value)| self.masks.is_maskable(value.expose()))
            .map(|(name, value)| (mask_key(scope, name), Zeroizing::new(value.expose().to_vec())))
            .collect();
        let count = items.len();
        self.masks.extend_async(items).await.map_err(|_| {
            // The error's detail can carry a value's length; the count is enough.
            tracing::error!(count, "cannot mask secret values; refusing to use them");
            ApiError::Unavailable
        })
    }

    /// Marks the service ready (called by `serve` once it is listening).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Limits and policy of the command routes.
#[derive(Debug)]
pub struct ExecLimits {
    pub max_timeout: Duration,
    pub refuse_unmaskable: bool,
    /// Variable names scrubbed from children beyond the built-in ones.
    pub scrub_names: Vec<String>,
}

/// The mask-set key of a secret: its scope and name, so rotations of one secret share a
/// history and same-named secrets of different conversations do not.
pub fn mask_key(scope: &ScopeId, name: &str) -> String {
    match scope {
        ScopeId::Sandbox => format!("sandbox/{name}"),
        ScopeId::Conversation(id) => format!("{id}/{name}"),
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
