//! The command and discovery families: commands started, commands finished by how they
//! ended (a timeout among them), command durations, and discovery runs by result.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::label::{Ending, RunResult};

/// Upper bounds (seconds) of the command duration buckets, up to an hour.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndingLabels {
    ending: Ending,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: RunResult,
}

/// Counts commands; cheap to clone.
#[derive(Clone)]
pub(crate) struct CommandMetrics {
    started: Counter,
    finished: Family<EndingLabels, Counter>,
    duration: Histogram,
}

impl CommandMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            started: Counter::default(),
            finished: Family::default(),
            duration: Histogram::new(BUCKETS),
        };
        for &ending in Ending::ALL {
            this.finished.get_or_create_owned(&EndingLabels { ending });
        }
        registry.register("commands_started", "Commands handed to the executor", this.started.clone());
        registry.register(
            "commands_finished",
            "Commands that ended, by how (exited, timed_out, cancelled, failed)",
            this.finished.clone(),
        );
        registry.register_with_unit(
            "command_duration",
            "Time a command ran, from its start until its process group was gone",
            Unit::Seconds,
            this.duration.clone(),
        );
        this
    }

    /// A command is about to start.
    pub(crate) fn started(&self) {
        self.started.inc();
    }

    /// A started command ended after `elapsed`.
    pub(crate) fn finished(&self, ending: Ending, elapsed: Duration) {
        self.finished.get_or_create(&EndingLabels { ending }).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Counts discovery runs; cheap to clone.
#[derive(Clone)]
pub(crate) struct DiscoveryMetrics {
    runs: Family<ResultLabels, Counter>,
}

impl DiscoveryMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self { runs: Family::default() };
        for &result in RunResult::ALL {
            this.runs.get_or_create_owned(&ResultLabels { result });
        }
        registry.register("discovery_runs", "Secret discovery runs, by result", this.runs.clone());
        this
    }

    /// One discovery run ended.
    pub(crate) fn run(&self, result: RunResult) {
        self.runs.get_or_create(&ResultLabels { result }).inc();
    }
}
