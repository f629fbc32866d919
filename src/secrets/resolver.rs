//! The resolver: turns a registered descriptor into its value, through a cache.
//!
//! It owns what happens around one fetch: the moka cache with per-entry TTL and jitter, the
//! one duplicate-request guard (`flight`), stale-if-error and the short memory of failures
//! (the rules are pure functions in `outcome`), and the global mask set every fetched value
//! joins. The request itself (policy, headers, session key, 401 retry, the bound on requests
//! in flight) is `upstream`'s, shared with discovery; the HTTP mechanics of one GET are the
//! [`Fetcher`]'s. Resolutions, upstream requests and joined flights are counted in the
//! service's metrics; `measure` says which outcome and status class each one is.
//!
//! Invariants: concurrent misses for one entry make one upstream request, and that request
//! runs in its own task, so it completes and fills the cache even if every caller goes away.
//! Cache keys are entry generations, so a replaced or deleted descriptor can never be served
//! from the cache. Every fetched value enters the global mask set before any caller sees it,
//! whichever route asked for it (resolve, refresh, a command, a bash route).

mod flight;
mod measure;
mod outcome;
mod upstream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use secrecy::SecretString;
use url::Url;
use zeroize::Zeroizing;

use self::flight::Flights;
use self::outcome::{Cached, Good, Outcome, OutcomeExpiry, after_failure, may_bypass, serves_stale};
use self::upstream::{Request, Upstream};
use super::fetch::{FetchError, Fetcher};
use super::origin::OriginPolicy;
use super::registry::Entry;
use super::session_key::SessionKey;
use super::source::{LookupSecret, SecretSource};
use super::target::Target;
use super::value::SecretValue;
use crate::mask::MaskSet;
use crate::metrics::LookupMetrics;

pub(crate) use self::outcome::jitter;
pub(crate) use self::upstream::carries_session_key;

/// Cache and concurrency settings, from configuration.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub capacity: u64,
    pub max_upstream: usize,
    pub max_stale: Duration,
}

/// Why a secret (or the secret list) could not be resolved. Messages name what was looked
/// up and the cause, never a value, header value or URL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("lookup for {target} refused: {reason}")]
    Refused { target: Target, reason: String },
    #[error("lookup for {0} failed unexpectedly")]
    Internal(Target),
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

struct Inner {
    upstream: Upstream,
    /// Storage only: the duplicate-request guard is `flights`.
    cache: Cache<u64, Arc<Cached>>,
    last_good: Cache<u64, Arc<Good>>,
    flights: Arc<Flights<Arc<Cached>>>,
    /// The global mask set, which every fetched value joins.
    masks: Arc<MaskSet>,
    cfg: CacheConfig,
    metrics: LookupMetrics,
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
        Self::with_metrics(fetcher, cfg, policy, session_key, env_headers, masks, LookupMetrics::detached())
    }

    /// [`new`](Self::new), counting lookups, upstream requests and joined flights in
    /// `metrics`.
    pub(crate) fn with_metrics(
        fetcher: Fetcher,
        cfg: CacheConfig,
        policy: OriginPolicy,
        session_key: Arc<SessionKey>,
        env_headers: HashMap<String, SecretString>,
        masks: Arc<MaskSet>,
        metrics: LookupMetrics,
    ) -> Self {
        let cache = Cache::builder().max_capacity(cfg.capacity).expire_after(OutcomeExpiry).build();
        let last_good = Cache::builder().max_capacity(cfg.capacity).time_to_live(cfg.max_stale).build();
        let upstream = Upstream::new(
            fetcher,
            policy,
            session_key,
            env_headers,
            masks.clone(),
            cfg.max_upstream,
            metrics.clone(),
        );
        let flights = Flights::counting(metrics.joins());
        Self { inner: Arc::new(Inner { upstream, cache, last_good, flights, masks, cfg, metrics }) }
    }

    /// The value of `entry`, from the cache when possible.
    pub async fn resolve(&self, entry: &Arc<Entry>) -> Result<Resolved, ResolveError> {
        if let SecretSource::Static(s) = &entry.source {
            return Ok(Resolved { value: s.value.clone(), stale: false });
        }
        // A never-cached value (`ttl_seconds: 0`) is not found here, but a recent failure of
        // it (or the stale value served after one) is, so an outage is no retry storm.
        if let Some(hit) = self.inner.cache.get(&entry.generation).await {
            let result = hit.outcome.to_result();
            self.inner.metrics.lookup(measure::outcome(true, &result));
            return result;
        }
        let result = self.fetch_shared(entry).await;
        self.inner.metrics.lookup(measure::outcome(false, &result));
        result
    }

    /// Like [`resolve`](Self::resolve) but bypassing the cache, at most once per second per
    /// entry (the result of a more recent request is returned as it is).
    pub async fn refresh(&self, entry: &Arc<Entry>) -> Result<Resolved, ResolveError> {
        if let SecretSource::Lookup(_) = &entry.source {
            let key = entry.generation;
            if may_bypass(self.inner.cache.get(&key).await.as_deref(), Instant::now()) {
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
        if let SecretSource::Static(s) = &entry.source {
            return EntryState {
                status: if s.value.is_some() { "resolved" } else { "no_value" },
                value_len: s.value.as_ref().map(SecretValue::len),
                ..unresolved
            };
        }
        match self.inner.cache.get(&entry.generation).await.as_deref().map(|c| &c.outcome) {
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
        }
    }

    /// Drops cached values of entries that were replaced, deleted or whose scope was dropped.
    pub async fn forget(&self, entries: &[Arc<Entry>]) {
        for e in entries {
            self.inner.cache.invalidate(&e.generation).await;
            self.inner.last_good.invalidate(&e.generation).await;
        }
    }

    /// GETs the settings API's list of secrets (discovery) through the same request path as
    /// lookups (policy, session key, 401 retry, the bound on requests in flight); the body
    /// is returned as bytes, empty when there is none. Errors speak of "the secret list".
    pub async fn fetch_list(&self, url: &Url) -> Result<Vec<u8>, ResolveError> {
        let body = self.inner.upstream.get(Request::SecretList { url }).await?;
        Ok(body.map(|v| v.expose().to_vec()).unwrap_or_default())
    }

    /// Joins the request in flight for `entry`, or starts one; see [`flight`] for why this
    /// is the one duplicate-request guard.
    async fn fetch_shared(&self, entry: &Arc<Entry>) -> Result<Resolved, ResolveError> {
        let (this, flying) = (self.clone(), entry.clone());
        let landed =
            self.inner.flights.join(entry.generation, move || async move { this.fly(&flying).await }).await;
        match landed {
            Some(cached) => cached.outcome.to_result(),
            None => Err(ResolveError::Internal(Target::Secret(entry.name.clone()))),
        }
    }

    /// One flight, on its own task: the upstream request and the cache write, which must
    /// both happen before the flight's slot is removed.
    async fn fly(&self, entry: &Entry) -> Arc<Cached> {
        let key = entry.generation;
        // A flight that landed between the caller's cache miss and this one's start has
        // filled the cache already (it writes before its slot goes): use that.
        if let Some(hit) = self.inner.cache.get(&key).await {
            return hit;
        }
        let outcome = match &entry.source {
            SecretSource::Lookup(lookup) => self.fetch_outcome(entry, lookup).await,
            SecretSource::Static(_) => internal(entry),
        };
        let cached = Arc::new(Cached { outcome, settled_at: Instant::now() });
        if cached.outcome.is_cacheable() {
            self.inner.cache.insert(key, cached.clone()).await;
        }
        cached
    }

    /// One upstream resolution, turned into an outcome by the rules in [`outcome`].
    async fn fetch_outcome(&self, entry: &Entry, lookup: &LookupSecret) -> Outcome {
        let started = Instant::now();
        let result = self.inner.upstream.get(Request::Secret { name: &entry.name, lookup }).await;
        let generation = entry.generation;
        match result {
            Ok(value) => {
                tracing::debug!(name = %entry.name, origin = %lookup.origin, ms = started.elapsed().as_millis() as u64, "secret resolved");
                if let Some(v) = &value {
                    if let Err(error) = self.remember(entry, v).await {
                        return Outcome::Failed { error };
                    }
                }
                let fetched_at = Instant::now();
                self.inner
                    .last_good
                    .insert(generation, Arc::new(Good { value: value.clone(), fetched_at }))
                    .await;
                let base = lookup.ttl_seconds.map_or(self.inner.cfg.ttl, Duration::from_secs);
                Outcome::Fresh { value, fetched_at, ttl: jitter(base) }
            }
            Err(error) => {
                tracing::warn!(name = %entry.name, origin = %lookup.origin, "{error}");
                let last_good = if serves_stale(&error) {
                    self.inner.last_good.get(&generation).await
                } else {
                    // Revoked or renamed: never serve the old value again.
                    self.inner.last_good.invalidate(&generation).await;
                    None
                };
                after_failure(error, last_good.as_deref(), self.inner.cfg.max_stale, Instant::now())
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
            ResolveError::Internal(Target::Secret(entry.name.clone()))
        })
    }
}

fn internal(entry: &Entry) -> Outcome {
    Outcome::Failed { error: ResolveError::Internal(Target::Secret(entry.name.clone())) }
}
