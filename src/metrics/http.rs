//! The HTTP families: requests by method, route template and status, and request latency by
//! route template. Counted once per request, where the front door writes its log line.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::label::{Method, Route};

/// Upper bounds (seconds) of the request latency buckets: from a probe to a long command.
const BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: Method,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

/// Counts requests; cheap to clone.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            this.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer, by route template",
            Unit::Seconds,
            this.duration.clone(),
        );
        this
    }

    /// One answered request.
    pub(crate) fn observe(&self, method: Method, route: &Route, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
        self.duration.get_or_create(&RouteLabels { route: route.clone() }).observe(elapsed.as_secs_f64());
    }
}
