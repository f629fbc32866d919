//! Counting commands in the metrics: one start, and exactly one end however the run ends —
//! an exit, a timeout, a cancellation, a failure to spawn, or the caller dropping the run's
//! future (counted as cancelled), so "started minus finished" is always what is running.

use std::time::Instant;

use crate::exec::{ExecError, ExecOutcome};
use crate::metrics::{CommandMetrics, Ending};

/// A command's run, from its start until it is counted as finished.
pub(super) struct Measured<'a> {
    metrics: &'a CommandMetrics,
    started: Instant,
    ended: bool,
}

impl<'a> Measured<'a> {
    /// Counts a command as started.
    pub(super) fn start(metrics: &'a CommandMetrics) -> Self {
        metrics.started();
        Self { metrics, started: Instant::now(), ended: false }
    }

    /// Counts the command as finished, as `result` says it ended.
    pub(super) fn end(mut self, result: &Result<ExecOutcome, ExecError>) {
        let (ending, duration) = match result {
            Ok(outcome) => (ending(outcome), outcome.duration),
            Err(_) => (Ending::Failed, self.started.elapsed()),
        };
        self.metrics.finished(ending, duration);
        self.ended = true;
    }
}

impl Drop for Measured<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.metrics.finished(Ending::Cancelled, self.started.elapsed());
        }
    }
}

/// How a command that ran ended.
fn ending(outcome: &ExecOutcome) -> Ending {
    if outcome.timed_out {
        Ending::TimedOut
    } else if outcome.cancelled {
        Ending::Cancelled
    } else {
        Ending::Exited
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn outcome(timed_out: bool, cancelled: bool) -> ExecOutcome {
        ExecOutcome {
            exit_code: if timed_out || cancelled { -1 } else { 3 },
            signal: None,
            timed_out,
            cancelled,
            duration: Duration::from_millis(5),
            stdout: String::new(),
            stderr: String::new(),
            truncated_stdout: 0,
            truncated_stderr: 0,
            masking_failed: false,
        }
    }

    #[test]
    fn endings() {
        assert_eq!(ending(&outcome(false, false)), Ending::Exited);
        assert_eq!(ending(&outcome(true, false)), Ending::TimedOut);
        assert_eq!(ending(&outcome(false, true)), Ending::Cancelled);
    }
}
