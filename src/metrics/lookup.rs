//! The lookup families: resolutions by outcome, upstream requests by what they were for and
//! the class of the answer, upstream latency, and callers that joined a request in flight
//! instead of starting one.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::label::{LookupOutcome, StatusClass, UpstreamTarget};

/// Upper bounds (seconds) of the upstream latency buckets, up to the longest lookup deadline.
const BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: LookupOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    target: UpstreamTarget,
    status_class: StatusClass,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: UpstreamTarget,
}

/// Counts lookups; cheap to clone.
#[derive(Clone)]
pub(crate) struct LookupMetrics {
    lookups: Family<OutcomeLabels, Counter>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_duration: Family<TargetLabels, Histogram, fn() -> Histogram>,
    joins: Counter,
}

impl LookupMetrics {
    /// Counters no registry shows: for a resolver built outside a service (benches, tools).
    pub(crate) fn detached() -> Self {
        Self {
            lookups: Family::default(),
            upstream: Family::default(),
            upstream_duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            joins: Counter::default(),
        }
    }

    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self::detached();
        for &outcome in LookupOutcome::ALL {
            this.lookups.get_or_create_owned(&OutcomeLabels { outcome });
        }
        for &target in UpstreamTarget::ALL {
            for &status_class in StatusClass::ALL {
                this.upstream.get_or_create_owned(&UpstreamLabels { target, status_class });
            }
            this.upstream_duration.get_or_create_owned(&TargetLabels { target });
        }
        registry.register(
            "lookups",
            "Resolutions of LookupSecrets, by outcome (hit, miss, stale, error)",
            this.lookups.clone(),
        );
        registry.register(
            "upstream_requests",
            "Upstream requests, by what they were for and the class of the answer (none: no answer)",
            this.upstream.clone(),
        );
        registry.register_with_unit(
            "upstream_request_duration",
            "Time an upstream request took, retries included",
            Unit::Seconds,
            this.upstream_duration.clone(),
        );
        registry.register(
            "lookup_flight_joins",
            "Lookups that joined an upstream request already in flight instead of starting one",
            this.joins.clone(),
        );
        this
    }

    /// One resolution, as its caller saw it.
    pub(crate) fn lookup(&self, outcome: LookupOutcome) {
        self.lookups.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One upstream request that ended after `elapsed`.
    pub(crate) fn upstream(&self, target: UpstreamTarget, status_class: StatusClass, elapsed: Duration) {
        self.upstream.get_or_create(&UpstreamLabels { target, status_class }).inc();
        self.upstream_duration.get_or_create(&TargetLabels { target }).observe(elapsed.as_secs_f64());
    }

    /// The counter of joined flights (the duplicate-request guard adds to it).
    pub(crate) fn joins(&self) -> Counter {
        self.joins.clone()
    }
}
