//! Prometheus metrics: the families the service counts, and their text exposition for
//! `GET /metrics`.
//!
//! The registry is a value ([`Metrics`], held by the state and handed to each component that
//! counts), not a global recorder: two services in one process (tests) count apart. Every
//! label is typed (see `label`): a fixed vocabulary, or a route template from the router, so a
//! secret name or value, a host name, a key or a raw path cannot become a label by
//! construction. Counting is an atomic add or two per event, never a lock held across work.
//!
//! What this module does not do: decide what an event means (the components map their own
//! outcomes onto the vocabularies) or read other components' state, except through the
//! scrape-time sources the state hands it (`scrape`). It depends on no other module of the
//! crate, so anything may depend on it.

mod command;
mod http;
mod label;
mod lookup;
mod scrape;

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

pub(crate) use self::command::{CommandMetrics, DiscoveryMetrics};
pub(crate) use self::http::HttpMetrics;
pub(crate) use self::label::{Ending, LookupOutcome, Method, Route, RunResult, StatusClass, UpstreamTarget};
pub(crate) use self::lookup::LookupMetrics;
pub(crate) use self::scrape::{MaskedTotals, Observed, SecretCounts};

/// The `Content-Type` of the exposition: Prometheus text format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Prefix of every family name.
const PREFIX: &str = "secret_sidecar";

/// Every metric family of one service, and the registry that exposes them. Cheap to clone:
/// each part is a set of shared counters.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    pub(crate) http: HttpMetrics,
    pub(crate) lookups: LookupMetrics,
    pub(crate) commands: CommandMetrics,
    pub(crate) discovery: DiscoveryMetrics,
}

impl Metrics {
    /// A registry with every family at zero, `observed` read at each scrape, and the further
    /// families `extra` registers (counters a component keeps itself, such as the egress
    /// proxy's).
    pub(crate) fn with(observed: Observed, extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        extra(&mut registry);
        let http = HttpMetrics::register(&mut registry);
        let lookups = LookupMetrics::register(&mut registry);
        let commands = CommandMetrics::register(&mut registry);
        let discovery = DiscoveryMetrics::register(&mut registry);
        registry.register_collector(Box::new(observed));
        Self { registry: Arc::new(registry), http, lookups, commands, discovery }
    }

    /// The exposition in Prometheus text format ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn metrics() -> Metrics {
        Metrics::with(
            Observed {
                secrets: Box::new(|| SecretCounts { sandbox: 3, conversations: 4 }),
                masked: Box::new(|| MaskedTotals { bytes: 1000, replacements: 7 }),
            },
            |_| {},
        )
    }

    /// The value of the sample line that starts with `series ` (name and labels).
    fn sample(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"));
        line[series.len()..].trim().parse().unwrap()
    }

    #[test]
    fn every_family_is_shown_from_the_start() {
        let text = metrics().encode().unwrap();
        for series in [
            "secret_sidecar_lookups_total{outcome=\"hit\"}",
            "secret_sidecar_lookups_total{outcome=\"error\"}",
            "secret_sidecar_lookup_flight_joins_total",
            "secret_sidecar_upstream_requests_total{target=\"secret_list\",status_class=\"none\"}",
            "secret_sidecar_upstream_request_duration_seconds_count{target=\"secret\"}",
            "secret_sidecar_commands_started_total",
            "secret_sidecar_commands_finished_total{ending=\"timed_out\"}",
            "secret_sidecar_command_duration_seconds_count",
            "secret_sidecar_discovery_runs_total{result=\"ok\"}",
            "secret_sidecar_discovery_runs_total{result=\"error\"}",
        ] {
            assert_eq!(sample(&text, series), 0.0, "{series}");
        }
        assert_eq!(sample(&text, "secret_sidecar_secrets_registered{scope=\"sandbox\"}"), 3.0);
        assert_eq!(sample(&text, "secret_sidecar_secrets_registered{scope=\"conversation\"}"), 4.0);
        assert_eq!(sample(&text, "secret_sidecar_masked_bytes_total"), 1000.0);
        assert_eq!(sample(&text, "secret_sidecar_mask_replacements_total"), 7.0);
        assert!(text.contains("# TYPE secret_sidecar_secrets_registered gauge"), "{text}");
    }

    #[test]
    fn counts_move() {
        let m = metrics();
        let route = Route::of(None);
        m.http.observe(Method::Get, &route, 404, Duration::from_millis(3));
        m.http.observe(Method::Get, &route, 404, Duration::from_millis(3));
        m.lookups.lookup(LookupOutcome::Stale);
        m.lookups.upstream(UpstreamTarget::Secret, StatusClass::ServerError, Duration::from_millis(20));
        m.lookups.joins().inc();
        m.commands.started();
        m.commands.finished(Ending::TimedOut, Duration::from_secs(2));
        m.discovery.run(RunResult::Error);
        let text = m.encode().unwrap();
        let req = "secret_sidecar_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}";
        assert_eq!(sample(&text, req), 2.0);
        assert_eq!(
            sample(&text, "secret_sidecar_http_request_duration_seconds_count{route=\"unmatched\"}"),
            2.0
        );
        assert_eq!(sample(&text, "secret_sidecar_lookups_total{outcome=\"stale\"}"), 1.0);
        let up = "secret_sidecar_upstream_requests_total{target=\"secret\",status_class=\"5xx\"}";
        assert_eq!(sample(&text, up), 1.0);
        let up_time = "secret_sidecar_upstream_request_duration_seconds_count{target=\"secret\"}";
        assert_eq!(sample(&text, up_time), 1.0);
        assert_eq!(sample(&text, "secret_sidecar_lookup_flight_joins_total"), 1.0);
        assert_eq!(sample(&text, "secret_sidecar_commands_started_total"), 1.0);
        assert_eq!(sample(&text, "secret_sidecar_commands_finished_total{ending=\"timed_out\"}"), 1.0);
        assert_eq!(sample(&text, "secret_sidecar_command_duration_seconds_count"), 1.0);
        assert_eq!(sample(&text, "secret_sidecar_discovery_runs_total{result=\"error\"}"), 1.0);
    }

    #[test]
    fn two_registries_count_apart() {
        let (a, b) = (metrics(), metrics());
        a.commands.started();
        assert_eq!(sample(&a.encode().unwrap(), "secret_sidecar_commands_started_total"), 1.0);
        assert_eq!(sample(&b.encode().unwrap(), "secret_sidecar_commands_started_total"), 0.0);
    }
}
