//! The resolver: turns a registered descriptor into its value, through a cache.
//!
//! It owns what happens around one fetch: the lookup policy re-checked before every request,
//! the headers (the descriptor's, `env_headers`, and the session key set toward a settings
//! origin), the 401-then-re-read-the-key-file retry, the moka cache with per-entry TTL and
//! jitter, single-flight, the bound on lookups in flight, stale-if-error and the short memory
//! of failures. The HTTP mechanics of one GET (deadline, retries, redirects, address guard)
//! are [`Fetcher`]'s.
//!
//! Invariants: concurrent misses for one entry make one upstream request, and that request
//! runs in its own task, so it completes and fills the cache even if every caller goes away.
//! Cache keys are entry generations, so a replaced or deleted descriptor can never be served
//! from the cache. Every fetched value enters the global mask set before any caller sees it,
//! whichever route asked for it (resolve, refresh, a command, a bash route).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use moka::Expiry;
use moka::future::Cache;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, watch};
use zeroize::Zeroizing;

use super::fetch::{FetchError, Fetcher};
use super::origin::{OriginKind, OriginPolicy};
use super::registry::Entry;
use super::session_key::SessionKey;
use super::source::{LookupSecret, SecretSource};
use super::value::{SecretName, SecretValue};
use crate::mask::MaskSet;

/// How long a failure (or a stale value served after one) is remembered before the next try.
const FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// A refresh of an entry fetched more recently than this returns the fresh value instead.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Paths under which a settings origin gets the sidecar's own session key.
const SANDBOX_PATH_PREFIX: &str = "/api/v1/sandboxes/";
/// The header carrying the session key toward settings origins.
const SESSION_KEY_HEADER: &str = "x-session-api-key";

/// Cache and concurrency settings, from configuration.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub capacity: u64,
    pub max_upstream: usize,
    pub max_stale: Duration,
}

/// Why a secret could not be resolved. Messages name the secret and the cause, never a
/// value, header value or URL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("lookup for secret {name} refused: {reason}")]
    Refused { name: SecretName, reason: String },
    #[error("lookup for secret {0} failed unexpectedly")]
    Internal(SecretName),
}

/// A resolved value. `value: None` means the source has no value (an empty body, or a
/// StaticSecret without one).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub value: Option<SecretValue>,
    /// Served from the last good fetch after a transient failure.
    pub stale: bool,
}

/// What listings report about an entry, without its value.
#[derive(Clone, Debug)]
pub struct EntryState {
    /// `unresolved`, `resolved`, `stale`, `failed` or `no_value`.
    pub status: &'static str,
    pub stale: bool,
    pub age: Option<Duration>,
    pub last_error: Option<String>,
    /// Length of the known value, to decide `masked`.
    pub value_len: Option<usize>,
}

/// One cached result.
enum Outcome {
    Fresh { value: Option<SecretValue>, fetched_at: Instant, ttl: Duration },
    Stale { value: SecretValue, fetched_at: Instant, error: ResolveError },
    Failed { error: ResolveError },
}

impl Outcome {
    fn ttl(&self) -> Duration {
        match self {
            Self::Fresh { ttl, .. } => *ttl,
            Self::Stale { .. } | Self::Failed { .. } => FAILURE_MEMORY,
        }
    }

    fn to_result(&self) -> Result<Resolved, ResolveError> {
        match self {
            Self::Fresh { value, .. } => Ok(Resolved { value: value.clone(), stale: false }),
            Self::Stale { value, .. } => Ok(Resolved { value: Some(value.clone()), stale: true }),
            Self::Failed { error } => Err(error.clone()),
        }
    }
}

/// The last successful fetch of an entry, kept for stale-if-error.
struct Good {
    value: Option<SecretValue>,
    fetched_at: Instant,
}

/// Per-outcome TTL: fresh values live for their (jittered) TTL, failures briefly.
struct OutcomeExpiry;

impl Expiry<u64, Arc<Outcome>> for OutcomeExpiry {
    fn expire_after_create(&self, _: &u64, value: &Arc<Outcome>, _: std::time::Instant) -> Option<Duration> {
        Some(value.ttl())
    }

    fn expire_after_update(
        &self,
        _: &u64,
        value: &Arc<Outcome>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

type InflightMap = HashMap<u64, watch::Receiver<Option<Arc<Outcome>>>>;

struct Inner {
    fetcher: Fetcher,
    cache: Cache<u64, Arc<Outcome>>,
    last_good: Cache<u64, Arc<Good>>,
    // std lock: held only to look up or insert a receiver, never across `.await`.
    inflight: Mutex<InflightMap>,
    upstream: Semaphore,
    session_key: Arc<SessionKey>,
    policy: OriginPolicy,
    /// Values of the variables `env_headers` may read, captured at start.
    env_headers: HashMap<String, SecretString>,
    /// The global mask set, which every fetched value joins.
    masks: Arc<MaskSet>,
    cfg: CacheConfig,
}

/// Resolves descriptors to values; cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("cached", &self.inner.cache.entry_count()).finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver over `fetcher` with the given cache settings, lookup policy, session key
    /// and `env_headers` values; fetched values join `masks`.
    pub fn new(
        fetcher: Fetcher,
        cfg: CacheConfig,
        policy: OriginPolicy,
        session_key: Arc<SessionKey>,
        env_headers: HashMap<String, SecretString>,
        masks: Arc<MaskSet>,
    ) -> Self {
        let cache = Cache::builder().max_capacity(cfg.capacity).expire_after(OutcomeExpiry).build();
        let last_good = Cache::builder().max_capacity(cfg.capacity).time_to_live(cfg.max_stale).build();
        Self {
            inner: Arc::new(Inner {
                fetcher,
                cache,
                last_good,
                inflight: Mutex::default(),
                upstream: Semaphore::new(cfg.max_upstream.max(1)),
                session_key,
                policy,
                env_headers,
                masks,
                cfg,
            }),
        }
    }

    /// The value of `entry`, from the cache when possible.
    pub async fn resolve(&self, entry: &Arc<Entry>) -> Result<Resolved, ResolveError> {
        let lookup = match &entry.source {
            SecretSource::Static(s) => return Ok(Resolved { value: s.value.clone(), stale: false }),
            SecretSource::Lookup(l) => l,
        };
        if never_cached(lookup) {
            // Values are never cached, but a recent failure (or the stale value served after
            // one) is, so an outage does not turn into a retry storm.
            if let Some(recent) = self.inner.cache.get(&entry.generation).await {
                return recent.to_result();
            }
            return self.join_or_spawn(entry).await.to_result();
        }
        let key = entry.generation;
        let this = self.clone();
        let entry2 = entry.clone();
        let outcome = self.inner.cache.get_with(key, async move { this.join_or_spawn(&entry2).await }).await;
        outcome.to_result()
    }

    /// Like [`resolve`](Self::resolve) but bypassing the cache, at most once per second per
    /// entry (a more recent fetch is returned as it is).
    pub async fn refresh(&self, entry: &Arc<Entry>) -> Result<Resolved, ResolveError> {
        if let SecretSource::Lookup(_) = &entry.source {
            let key = entry.generation;
            let recent = matches!(
                self.inner.cache.get(&key).await.as_deref(),
                Some(Outcome::Fresh { fetched_at, .. }) if fetched_at.elapsed() < MIN_REFRESH_INTERVAL
            );
            if !recent {
                self.inner.cache.invalidate(&key).await;
            }
        }
        self.resolve(entry).await
    }

    /// What is known about `entry` without fetching.
    pub async fn state(&self, entry: &Arc<Entry>) -> EntryState {
        let unresolved =
            EntryState { status: "unresolved", stale: false, age: None, last_error: None, value_len: None };
        let lookup_state = |value: &Option<SecretValue>, fetched_at: Instant| EntryState {
            status: if value.is_some() { "resolved" } else { "no_value" },
            stale: false,
            age: Some(fetched_at.elapsed()),
            last_error: None,
            value_len: value.as_ref().map(SecretValue::len),
        };
        match &entry.source {
            SecretSource::Static(s) => EntryState {
                status: if s.value.is_some() { "resolved" } else { "no_value" },
                value_len: s.value.as_ref().map(SecretValue::len),
                ..unresolved
            },
            SecretSource::Lookup(_) => match self.inner.cache.get(&entry.generation).await.as_deref() {
                Some(Outcome::Fresh { value, fetched_at, .. }) => lookup_state(value, *fetched_at),
                Some(Outcome::Stale { value, fetched_at, error }) => EntryState {
                    status: "stale",
                    stale: true,
                    age: Some(fetched_at.elapsed()),
                    last_error: Some(error.to_string()),
                    value_len: Some(value.len()),
                },
                Some(Outcome::Failed { error }) => {
                    EntryState { status: "failed", last_error: Some(error.to_string()), ..unresolved }
                }
                None => match self.inner.last_good.get(&entry.generation).await {
                    Some(good) => lookup_state(&good.value, good.fetched_at),
                    None => unresolved,
                },
            },
        }
    }

    /// Drops cached values of entries that were replaced, deleted or whose scope was dropped.
    pub async fn forget(&self, entries: &[Arc<Entry>]) {
        for e in entries {
            self.inner.cache.invalidate(&e.generation).await;
            self.inner.last_good.invalidate(&e.generation).await;
        }
    }

    /// GETs a settings list (discovery) through the same guarded client, with the session
    /// key; the body is returned as bytes.
    pub async fn fetch_list(&self, url: &url::Url) -> Result<Vec<u8>, ResolveError> {
        let name = discovery_name();
        let lookup = LookupSecret {
            url: url.clone(),
            origin: super::origin::Origin::of(url)
                .map_err(|e| ResolveError::Refused { name: name.clone(), reason: e.to_string() })?,
            origin_kind: OriginKind::Settings,
            headers: Vec::new(),
            env_headers: Vec::new(),
            ttl_seconds: None,
            description: None,
        };
        let _permit =
            self.inner.upstream.acquire().await.map_err(|_| ResolveError::Internal(name.clone()))?;
        let value = self.fetch_with_key_retry(&name, &lookup).await?;
        Ok(value.map(|v| v.expose().to_vec()).unwrap_or_default())
    }

    /// Joins the in-flight fetch of `entry`, or starts one in its own task.
    async fn join_or_spawn(&self, entry: &Arc<Entry>) -> Arc<Outcome> {
        let key = entry.generation;
        let mut rx = {
            let mut inflight = self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key, rx.clone());
                    let this = self.clone();
                    let entry = entry.clone();
                    tokio::spawn(async move {
                        let outcome = Arc::new(this.fetch_outcome(&entry).await);
                        let is_value = matches!(*outcome, Outcome::Fresh { .. });
                        if !(is_value && matches!(&entry.source, SecretSource::Lookup(l) if never_cached(l)))
                        {
                            this.inner.cache.insert(key, outcome.clone()).await;
                        }
                        let _ = tx.send(Some(outcome));
                        this.inner.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(|| Arc::new(internal(entry))),
            // The task panicked before answering.
            Err(_) => Arc::new(internal(entry)),
        }
    }

    /// One upstream resolution (with the 401 retry), turned into a cacheable outcome.
    async fn fetch_outcome(&self, entry: &Entry) -> Outcome {
        let SecretSource::Lookup(lookup) = &entry.source else { return internal(entry) };
        let Ok(_permit) = self.inner.upstream.acquire().await else { return internal(entry) };
        let started = Instant::now();
        let result = self.fetch_with_key_retry(&entry.name, lookup).await;
        let generation = entry.generation;
        match result {
            Ok(value) => {
                tracing::debug!(name = %entry.name, origin = %lookup.origin, ms = started.elapsed().as_millis() as u64, "secret resolved");
                if let Some(v) = &value {
                    if let Err(error) = self.remember(entry, v).await {
                        return Outcome::Failed { error };
                    }
                }
                let good = Good { value: value.clone(), fetched_at: Instant::now() };
                self.inner.last_good.insert(generation, Arc::new(good)).await;
                let base = lookup.ttl_seconds.map_or(self.inner.cfg.ttl, Duration::from_secs);
                Outcome::Fresh { value, fetched_at: Instant::now(), ttl: jitter(base) }
            }
            Err(error) => {
                let transient = matches!(&error, ResolveError::Fetch(e) if e.is_transient());
                tracing::warn!(name = %entry.name, origin = %lookup.origin, "{error}");
                if !transient {
                    // Revoked or renamed: never serve the old value again.
                    self.inner.last_good.invalidate(&generation).await;
                    return Outcome::Failed { error };
                }
                match self.inner.last_good.get(&generation).await {
                    Some(good) if good.fetched_at.elapsed() < self.inner.cfg.max_stale => match &good.value {
                        Some(v) => Outcome::Stale { value: v.clone(), fetched_at: good.fetched_at, error },
                        None => {
                            Outcome::Fresh { value: None, fetched_at: good.fetched_at, ttl: FAILURE_MEMORY }
                        }
                    },
                    _ => Outcome::Failed { error },
                }
            }
        }
    }

    /// Adds a fetched value to the global mask set; returns once it is masked. A value
    /// shorter than the mask's minimum length cannot be masked and is served anyway (listings
    /// report it `masked: false`); any other failure refuses the value (fail closed).
    async fn remember(&self, entry: &Entry, value: &SecretValue) -> Result<(), ResolveError> {
        let masks = &self.inner.masks;
        if !masks.is_maskable(value.expose()) {
            return Ok(());
        }
        // One history per descriptor: a rotated value joins the previous ones.
        let key = format!("lookup/{}", entry.generation);
        masks.extend_async(vec![(key, Zeroizing::new(value.expose().to_vec()))]).await.map_err(|_| {
            tracing::error!(name = %entry.name, "cannot mask a fetched secret value; refusing to use it");
            ResolveError::Internal(entry.name.clone())
        })
    }

    /// Masks the session key just read from `--session-key-file`, like the keys held at start.
    async fn remember_session_key(&self) {
        let Some(key) = self.inner.session_key.current() else { return };
        let bytes = key.expose_secret().as_bytes();
        if self.inner.masks.is_maskable(bytes) {
            let item = vec![("sidecar/session-key".to_owned(), Zeroizing::new(bytes.to_vec()))];
            if self.inner.masks.extend_async(item).await.is_err() {
                tracing::error!("cannot mask the new session key");
            }
        }
    }

    async fn fetch_with_key_retry(
        &self,
        name: &SecretName,
        lookup: &LookupSecret,
    ) -> Result<Option<SecretValue>, ResolveError> {
        let kind = self
            .inner
            .policy
            .check(&lookup.url)
            .map_err(|e| ResolveError::Refused { name: name.clone(), reason: e.to_string() })?
            .1;
        let headers = self.headers(name, lookup, kind)?;
        match self.inner.fetcher.fetch(name, &lookup.url, headers).await {
            Err(e)
                if e.status() == Some(401)
                    && kind == OriginKind::Settings
                    && self.inner.session_key.reload() =>
            {
                tracing::info!(name = %name, "settings origin answered 401; retrying once with the new session key");
                self.remember_session_key().await;
                let headers = self.headers(name, lookup, kind)?;
                Ok(self.inner.fetcher.fetch(name, &lookup.url, headers).await?)
            }
            other => Ok(other?),
        }
    }

    /// The request headers: the descriptor's, then (toward a settings origin only) the
    /// `env_headers` and the session key, which replace a descriptor's stale copy.
    fn headers(
        &self,
        name: &SecretName,
        l: &LookupSecret,
        kind: OriginKind,
    ) -> Result<HeaderMap, ResolveError> {
        let refused = |reason: &str| ResolveError::Refused { name: name.clone(), reason: reason.to_owned() };
        let mut map = HeaderMap::new();
        let mut put = |header: &str, value: &str| -> Result<(), ResolveError> {
            let n = HeaderName::from_bytes(header.as_bytes()).map_err(|_| refused("invalid header name"))?;
            let mut v = HeaderValue::from_str(value).map_err(|_| refused("invalid header value"))?;
            v.set_sensitive(true);
            map.insert(n, v);
            Ok(())
        };
        for (header, value) in &l.headers {
            put(header, value.expose_secret())?;
        }
        if kind == OriginKind::Settings {
            for (header, var) in &l.env_headers {
                if let Some(value) = self.inner.env_headers.get(var) {
                    put(header, value.expose_secret())?;
                }
            }
            if l.url.path().starts_with(SANDBOX_PATH_PREFIX) {
                if let Some(key) = self.inner.session_key.current() {
                    put(SESSION_KEY_HEADER, key.expose_secret())?;
                }
            }
        }
        Ok(map)
    }
}

/// The name errors carry for a discovery request (it resolves no secret of its own).
const DISCOVERY_NAME: &str = "SECRET_LIST";

fn discovery_name() -> SecretName {
    SecretName::parse(DISCOVERY_NAME).expect("a valid constant name")
}

fn never_cached(lookup: &LookupSecret) -> bool {
    lookup.ttl_seconds == Some(0)
}

fn internal(entry: &Entry) -> Outcome {
    Outcome::Failed { error: ResolveError::Internal(entry.name.clone()) }
}

/// `base` ±10 %, so a fleet started together does not refresh in step.
pub(crate) fn jitter(base: Duration) -> Duration {
    if base.is_zero() {
        return base;
    }
    base.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110), "{d:?}");
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
