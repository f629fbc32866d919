//! [`AppState`]: the handles every request handler shares.
//!
//! Every field is a cheap handle (`Arc`, a token, small copies of configuration); locks live
//! inside the components, never around the state. Each component is built from its own part
//! of [`Config`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::bash::EventStore;
use crate::config::EgressConfig;
use crate::config::{Config, HttpConfig, ListenAddr};
use crate::egress::grant::Grants;
use crate::egress::runtime::Runtime as EgressRuntime;
use crate::exec::Executor;
use crate::mask::MaskSet;
use crate::metrics::{MaskedTotals, Metrics, Observed, SecretCounts};
use crate::persist::Durable;
use crate::ratelimit::RateLimit;
use crate::run::{Egress, Parts, Runner};
use crate::secrets::fetch::{FetchBuildError, Fetcher};
use crate::secrets::registry::Registry;
use crate::secrets::resolver::Resolver;
use crate::secrets::session_key::SessionKey;
use crate::secrets::source::ParseContext;

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("lookup client: {0}")]
    Lookup(#[from] FetchBuildError),
    #[error("cannot mask the sidecar's own keys: {0}")]
    Mask(#[from] crate::mask::MaskError),
    #[error(transparent)]
    Egress(#[from] crate::egress::runtime::RuntimeError),
    #[error(transparent)]
    StateFile(#[from] crate::persist::LoadError),
}

/// Shared state of the HTTP service: one `Arc`, so the clone every request and middleware
/// layer takes is one reference count, not one per component (that was a measurable share of
/// a cached request's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds: handles only, built once by [`AppState::new`].
pub struct Shared {
    pub(crate) registry: Arc<Registry>,
    pub(crate) resolver: Resolver,
    /// The command pipeline (slots, gathering, masking, executor).
    pub(crate) runner: Runner,
    /// Every value held since start, for masking.
    pub(crate) masks: Arc<MaskSet>,
    /// Events of the reference-compatible bash routes.
    pub(crate) bash_events: Arc<EventStore>,
    pub(crate) keys: Arc<ApiKeys>,
    pub(crate) sources: Arc<ParseContext>,
    pub(crate) http: HttpConfig,
    /// Where the service listens (the front door derives the accepted `Host` names).
    pub(crate) listen: ListenAddr,
    pub(crate) mask_rate: Arc<RateLimit>,
    pub(crate) mask_min_length: usize,
    pub(crate) started: Instant,
    /// Registry changes, written to the state file (if any) before they are acknowledged.
    pub(crate) durable: Durable,
    /// Requests in flight beyond this are refused with 429.
    pub(crate) request_slots: Arc<Semaphore>,
    ready: Arc<AtomicBool>,
    /// Cancelled when the service starts draining.
    pub(crate) shutdown: CancellationToken,
    /// What `/metrics` shows; each component counts in its own part.
    pub(crate) metrics: Metrics,
    /// Egress mode's CA, proxy socket and counters, when it is on.
    pub(crate) egress: Option<Arc<EgressRuntime>>,
}

impl AppState {
    /// Builds every component from its part of `config`; `keys` were loaded by the caller
    /// (loading can generate a key file, which is start-up's business, not the state's).
    pub fn new(config: &Config, keys: ApiKeys) -> Result<Self, StateError> {
        let mut egress_cfg = config.egress.clone();
        let grants = Grants::new();
        let shutdown = CancellationToken::new();
        let runtime = if egress_cfg.enabled {
            egress_runtime(&egress_cfg, &grants, &shutdown)?.map(Arc::new)
        } else {
            None
        };
        if let Some(runtime) = &runtime {
            // Commands are given the address really bound (a configured port 0 works).
            egress_cfg.listen = runtime.addr();
        }
        let egress = Arc::new(Egress::new(&egress_cfg, grants, runtime.clone()));
        let lookup = &config.lookup;
        let fetcher = Fetcher::new(lookup.fetch.clone())?;
        let session_key = Arc::new(SessionKey::new(lookup.session_key.clone()));
        let masks = Arc::new(MaskSet::new(config.mask_min_length));
        let registry = Arc::new(Registry::new(config.registry));
        let stats = runtime.as_ref().map(|r| r.stats().clone());
        let metrics = Metrics::with(observed(&registry, &masks), |registry| {
            if let Some(stats) = &stats {
                stats.register(registry);
            }
        });
        let resolver = Resolver::with_metrics(
            fetcher,
            lookup.cache.clone(),
            config.sources.policy.clone(),
            session_key.clone(),
            lookup.env_headers.clone(),
            masks.clone(),
            metrics.lookups.clone(),
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
        scrub_names.extend(exec.strip_env.iter().cloned());
        // Before anything is served: what was registered before a restart is back, and masked.
        let durable = crate::persist::open(
            registry.clone(),
            config.state_file.as_ref(),
            config.state_key.as_ref(),
            &config.sources,
        )?;
        crate::persist::mask_loaded(&registry, &masks)?;
        let keys = Arc::new(keys);
        let runner = Runner::new(
            Parts {
                registry: registry.clone(),
                resolver: resolver.clone(),
                executor: Executor::new(exec.clone(), config.process_env.0.clone()),
                masks: masks.clone(),
                keys: keys.clone(),
                session_key,
                egress,
                metrics: metrics.commands.clone(),
            },
            scrub_names,
        );
        Ok(Self(Arc::new(Shared {
            registry,
            resolver,
            runner,
            masks,
            bash_events: Arc::new(EventStore::default()),
            keys,
            sources: Arc::new(config.sources.clone()),
            http: config.http,
            listen: config.listen.clone(),
            mask_rate: Arc::new(RateLimit::new(config.mask_rate)),
            mask_min_length: config.mask_min_length,
            started: Instant::now(),
            durable,
            request_slots: Arc::new(Semaphore::new(config.http.max_concurrent_requests)),
            ready: Arc::new(AtomicBool::new(false)),
            shutdown,
            metrics,
            egress: runtime,
        })))
    }

    /// True once listening with state loaded, and until draining starts.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    /// Marks the service ready (called by `serve` once it is listening).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The descriptors of every scope (tests and embedders inspect them).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The caching resolver (tests and embedders resolve through it).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The global mask set (tests check what it hides).
    pub fn masks(&self) -> &Arc<MaskSet> {
        &self.masks
    }

    /// The egress proxy's address, when egress mode is on and its socket is bound.
    pub fn egress_proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.egress.as_ref().map(|e| e.addr())
    }

    /// The egress CA's certificate (PEM), once egress mode made it.
    pub fn egress_ca_pem(&self) -> Option<&str> {
        self.egress.as_ref().and_then(|e| e.ca_pem())
    }

    /// The live egress credentials (the proxy looks tokens up here; tests count them).
    pub fn grants(&self) -> &Arc<Grants> {
        self.runner.egress().grants()
    }

    /// The bash routes' event store (tests check its bounds).
    pub fn bash_events(&self) -> &Arc<EventStore> {
        &self.bash_events
    }

    /// Cancelled when the service starts draining (start-up code ties background tasks to it).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Takes one request slot, as a request in flight would (tests fill the bound with it).
    pub fn take_request_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.request_slots.clone().try_acquire_owned().ok()
    }
}

/// What `/metrics` reads at each scrape: registered entries and the masker's totals.
fn observed(registry: &Arc<Registry>, masks: &Arc<MaskSet>) -> Observed {
    let (registry, masks) = (registry.clone(), masks.clone());
    Observed {
        secrets: Box::new(move || {
            let (sandbox, conversations) = registry.entry_counts();
            SecretCounts { sandbox: sandbox as u64, conversations: conversations as u64 }
        }),
        masked: Box::new(move || {
            let totals = masks.output_totals();
            MaskedTotals { bytes: totals.bytes, replacements: totals.replacements }
        }),
    }
}

/// Egress mode's proxy socket (and, with bindings configured, its CA and bundle). A socket
/// that cannot be bound stops the start when bindings are configured (egress mode is clearly
/// wanted); otherwise the service starts without the proxy and says so, and commands that
/// hold placeholders cannot reach bound hosts (they fail closed: the value is never given to
/// them).
fn egress_runtime(
    cfg: &EgressConfig,
    grants: &Arc<Grants>,
    shutdown: &CancellationToken,
) -> Result<Option<EgressRuntime>, StateError> {
    match EgressRuntime::start(cfg, Arc::clone(grants), shutdown.clone()) {
        Ok(runtime) => Ok(Some(runtime)),
        Err(e) if cfg.bindings.is_empty() => {
            tracing::warn!("egress proxy not started: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
