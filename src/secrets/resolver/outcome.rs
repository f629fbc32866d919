//! The cache rules, as pure functions over what a fetch returned and what is known from
//! before: how long a result is kept (TTL with jitter, failures 5 s), which failures serve
//! the last good value stale and for how long, and when a refresh may go upstream again.
//!
//! Nothing here does I/O or reads a clock: callers pass `now`, so every rule is testable
//! without a server or a sleep. The resolver applies these rules; moka stores their results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use rand::Rng;

use super::{ResolveError, Resolved};
use crate::secrets::value::SecretValue;

/// How long a failure (or a stale value served after one) is remembered before the next try.
pub(super) const FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// A refresh of an entry whose last request ended more recently than this is answered
/// from the cache: refresh bypasses the cache at most once per second per entry.
pub(super) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// What one finished upstream request leaves behind.
pub(super) enum Outcome {
    /// A value (or "no value") to serve until `ttl` passes.
    Fresh { value: Option<SecretValue>, fetched_at: Instant, ttl: Duration },
    /// The last good value, served after a transient failure.
    Stale { value: SecretValue, fetched_at: Instant, error: ResolveError },
    /// Nothing to serve.
    Failed { error: ResolveError },
}

impl Outcome {
    /// How long the cache keeps it: its TTL when fresh, [`FAILURE_MEMORY`] otherwise.
    pub(super) fn ttl(&self) -> Duration {
        match self {
            Self::Fresh { ttl, .. } => *ttl,
            Self::Stale { .. } | Self::Failed { .. } => FAILURE_MEMORY,
        }
    }

    /// False for a value that must never be cached (`ttl_seconds: 0`). Failures and stale
    /// values always are, briefly, so an outage does not become a retry storm.
    pub(super) fn is_cacheable(&self) -> bool {
        !self.ttl().is_zero()
    }

    pub(super) fn to_result(&self) -> Result<Resolved, ResolveError> {
        match self {
            Self::Fresh { value, .. } => Ok(Resolved { value: value.clone(), stale: false }),
            Self::Stale { value, .. } => Ok(Resolved { value: Some(value.clone()), stale: true }),
            Self::Failed { error } => Err(error.clone()),
        }
    }
}

/// An outcome as the cache holds it.
pub(super) struct Cached {
    pub(super) outcome: Outcome,
    /// When the request that produced it ended (what the refresh limit counts from).
    pub(super) settled_at: Instant,
}

/// The last successful fetch of an entry, kept for stale-if-error.
pub(super) struct Good {
    pub(super) value: Option<SecretValue>,
    pub(super) fetched_at: Instant,
}

/// True for the failures after which the last good value may be served stale: connect
/// errors, timeouts, 5xx and 429. Never after 401, 403, 404 or another 4xx (the secret was
/// revoked or renamed), a refusal, or an internal failure.
pub(super) fn serves_stale(error: &ResolveError) -> bool {
    matches!(error, ResolveError::Fetch(e) if e.is_transient())
}

/// The outcome of a failed request, given the last good fetch: that value, stale, when the
/// failure is transient and it was fetched less than `max_stale` before `now`; else the
/// failure. A last good "no value" is served as no value again, for [`FAILURE_MEMORY`].
pub(super) fn after_failure(
    error: ResolveError,
    last_good: Option<&Good>,
    max_stale: Duration,
    now: Instant,
) -> Outcome {
    let usable =
        last_good.filter(|g| serves_stale(&error) && now.saturating_duration_since(g.fetched_at) < max_stale);
    match usable {
        Some(Good { value: Some(value), fetched_at }) => {
            Outcome::Stale { value: value.clone(), fetched_at: *fetched_at, error }
        }
        Some(Good { value: None, fetched_at }) => {
            Outcome::Fresh { value: None, fetched_at: *fetched_at, ttl: FAILURE_MEMORY }
        }
        None => Outcome::Failed { error },
    }
}

/// Whether a refresh may go upstream, given what the cache holds: yes unless the last
/// request for the entry ended less than [`MIN_REFRESH_INTERVAL`] before `now`.
pub(super) fn may_bypass(cached: Option<&Cached>, now: Instant) -> bool {
    cached.is_none_or(|c| now.saturating_duration_since(c.settled_at) >= MIN_REFRESH_INTERVAL)
}

/// `base` ±10 %, so a fleet started together does not refresh in step.
pub(crate) fn jitter(base: Duration) -> Duration {
    if base.is_zero() {
        return base;
    }
    base.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

/// Per-outcome expiry for moka: fresh values live for their (jittered) TTL, failures
/// briefly.
pub(super) struct OutcomeExpiry;

impl Expiry<u64, Arc<Cached>> for OutcomeExpiry {
    fn expire_after_create(&self, _: &u64, value: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(value.outcome.ttl())
    }

    fn expire_after_update(
        &self,
        _: &u64,
        value: &Arc<Cached>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.outcome.ttl())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::fetch::FetchError;
    use crate::secrets::target::Target;
    use crate::secrets::value::SecretName;

    /// A `now` far enough from boot that subtracting ages from it cannot underflow.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(100_000)
    }

    fn target() -> Target {
        Target::Secret(SecretName::parse("TOKEN").unwrap())
    }

    fn status(status: u16) -> ResolveError {
        ResolveError::Fetch(FetchError::Status { target: target(), status })
    }

    fn value(v: &str) -> SecretValue {
        SecretValue::from_bytes(v.as_bytes().to_vec()).unwrap()
    }

    fn good(v: Option<&str>, age: Duration, now: Instant) -> Good {
        Good { value: v.map(value), fetched_at: now - age }
    }

    /// Transient failures, after which a recent good value is served stale.
    fn transient() -> Vec<ResolveError> {
        let t = target;
        vec![
            ResolveError::Fetch(FetchError::Connect { target: t(), cause: "connection refused".into() }),
            ResolveError::Fetch(FetchError::Transport { target: t(), cause: "connection reset".into() }),
            ResolveError::Fetch(FetchError::Timeout { target: t(), after: Duration::from_secs(10) }),
            status(500),
            status(502),
            status(503),
            status(504),
            status(429),
        ]
    }

    /// Failures that mean the value is gone or must not be used: never served stale.
    fn permanent() -> Vec<ResolveError> {
        let t = target;
        vec![
            status(400),
            status(401),
            status(403),
            status(404),
            status(410),
            status(418),
            status(302),
            ResolveError::Fetch(FetchError::Blocked { target: t() }),
            ResolveError::Fetch(FetchError::TooLarge { target: t(), limit: 65536 }),
            ResolveError::Fetch(FetchError::NulByte { target: t() }),
            ResolveError::Fetch(FetchError::InvalidUrl { target: t(), reason: "url has no host".into() }),
            ResolveError::Refused {
                target: t(),
                reason: "url origin is not on the lookup allow-list".into(),
            },
            ResolveError::Internal(t()),
        ]
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110), "{d:?}");
            (low, high) = (low.min(d), high.max(d));
        }
        assert!(high - low > Duration::from_secs(5), "jittered, not constant: {low:?}..{high:?}");
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn which_failures_serve_stale() {
        for e in transient() {
            assert!(serves_stale(&e), "{e}");
        }
        for e in permanent() {
            assert!(!serves_stale(&e), "{e}");
        }
    }

    #[test]
    fn transient_failures_serve_the_last_good_value_within_max_stale() {
        let now = later();
        let max_stale = Duration::from_secs(3600);
        for e in transient() {
            let last = good(Some("last-good"), Duration::from_secs(60), now);
            let outcome = after_failure(e.clone(), Some(&last), max_stale, now);
            let Outcome::Stale { value: v, fetched_at, error } = &outcome else { panic!("{e}: not stale") };
            assert_eq!(v.len(), "last-good".len(), "the last good value");
            assert_eq!(*fetched_at, last.fetched_at, "age counts from the good fetch");
            assert_eq!(error.to_string(), e.to_string());
            let served = outcome.to_result().unwrap();
            assert!(served.stale);
            assert_eq!(outcome.ttl(), FAILURE_MEMORY);
        }
    }

    #[test]
    fn permanent_failures_never_serve_stale() {
        let now = later();
        for e in permanent() {
            let last = good(Some("revoked"), Duration::from_secs(1), now);
            let outcome = after_failure(e.clone(), Some(&last), Duration::from_secs(3600), now);
            assert!(matches!(outcome, Outcome::Failed { .. }), "{e}");
            assert_eq!(outcome.to_result().unwrap_err().to_string(), e.to_string());
        }
    }

    #[test]
    fn the_max_stale_window() {
        let now = later();
        let max_stale = Duration::from_secs(3600);
        let at = |age: Duration| after_failure(status(503), Some(&good(Some("v"), age, now)), max_stale, now);
        assert!(matches!(at(Duration::ZERO), Outcome::Stale { .. }));
        assert!(matches!(at(max_stale - Duration::from_millis(1)), Outcome::Stale { .. }));
        assert!(matches!(at(max_stale), Outcome::Failed { .. }), "the window is open at its end");
        assert!(matches!(at(max_stale * 2), Outcome::Failed { .. }));
        // `--max-stale 0` serves nothing stale.
        let zero =
            after_failure(status(503), Some(&good(Some("v"), Duration::ZERO, now)), Duration::ZERO, now);
        assert!(matches!(zero, Outcome::Failed { .. }));
        // Nothing good yet: the failure itself.
        assert!(matches!(after_failure(status(503), None, max_stale, now), Outcome::Failed { .. }));
    }

    #[test]
    fn a_last_good_no_value_is_served_as_no_value() {
        let now = later();
        let last = good(None, Duration::from_secs(10), now);
        let outcome = after_failure(status(502), Some(&last), Duration::from_secs(3600), now);
        let served = outcome.to_result().unwrap();
        assert!(served.value.is_none() && !served.stale);
        assert_eq!(outcome.ttl(), FAILURE_MEMORY);
    }

    #[test]
    fn failures_are_remembered_for_five_seconds_and_values_for_their_ttl() {
        assert_eq!(FAILURE_MEMORY, Duration::from_secs(5));
        let failed = Outcome::Failed { error: status(404) };
        assert_eq!(failed.ttl(), FAILURE_MEMORY);
        assert!(failed.is_cacheable());
        let now = later();
        let fresh = |ttl| Outcome::Fresh { value: Some(value("v")), fetched_at: now, ttl };
        assert_eq!(fresh(Duration::from_secs(300)).ttl(), Duration::from_secs(300));
        assert!(fresh(Duration::from_secs(300)).is_cacheable());
        assert!(!fresh(Duration::ZERO).is_cacheable(), "ttl_seconds 0: never cached");
        // A failure of a never-cached secret is still remembered.
        assert!(after_failure(status(503), None, Duration::ZERO, now).is_cacheable());
    }

    #[test]
    fn refresh_goes_upstream_at_most_once_per_second() {
        let now = later();
        let cached = |age: Duration, outcome: Outcome| Cached { outcome, settled_at: now - age };
        let fresh =
            || Outcome::Fresh { value: Some(value("v")), fetched_at: now, ttl: Duration::from_secs(300) };
        assert!(may_bypass(None, now), "nothing cached");
        assert!(!may_bypass(Some(&cached(Duration::ZERO, fresh())), now));
        assert!(!may_bypass(Some(&cached(Duration::from_millis(999), fresh())), now));
        assert!(may_bypass(Some(&cached(Duration::from_secs(1), fresh())), now));
        // A failure or a stale answer counts as a request too: no refresh storm in an outage.
        let failed = cached(Duration::from_millis(500), Outcome::Failed { error: status(503) });
        assert!(!may_bypass(Some(&failed), now));
        let stale = Outcome::Stale {
            value: value("v"),
            fetched_at: now - Duration::from_secs(600),
            error: status(503),
        };
        assert!(!may_bypass(Some(&cached(Duration::from_millis(500), stale)), now));
    }
}
