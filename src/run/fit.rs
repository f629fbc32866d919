//! Making a command fit what `execve(2)` accepts before it is started, so that a value too
//! large to export is a clear answer instead of a failed spawn.
//!
//! Policy (contract §5): an implicit secret that cannot be exported is skipped — the
//! largest first, until the rest fit — and so is an explicit one under `on_missing: "skip"`.
//! What cannot be dropped (an explicit secret otherwise, the request's `env`, the command
//! text) is a [`TooLarge`] that names it.
//!
//! The HTTP layer answers [`TooLarge`] with 422, not 413: the request body may be small — the
//! registered secrets are what does not fit — and 413 is the answer to a body over
//! `--max-body-bytes`, which a client may meet by shrinking the body. 422 says "well-formed,
//! but cannot be run as asked", with the names.

use std::fmt;

use crate::exec::{ArgLimits, ExecError, ExecRequest, Executor, Oversize};

/// Most secret names listed in one error (the rest are counted).
const MAX_NAMES: usize = 32;

/// What does not fit; names only, never a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TooLarge {
    #[error(
        "secret {name} cannot be exported: it is longer than the system allows for one environment variable ({limit} bytes)"
    )]
    Secret { name: String, limit: usize },
    #[error("env: {name} is longer than the system allows for one environment variable ({limit} bytes)")]
    Env { name: String, limit: usize },
    #[error("command: longer than the system allows for one argument ({limit} bytes)")]
    Command { limit: usize },
    #[error("the command's arguments and environment are larger than the system allows; {0}")]
    Total(Exported),
}

/// The secrets a too-large environment held, for the message.
#[derive(Debug)]
pub(crate) struct Exported(Vec<String>);

impl fmt::Display for Exported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no secrets are exported");
        }
        let more = self.0.len().saturating_sub(MAX_NAMES);
        let listed: Vec<&str> = self.0.iter().take(MAX_NAMES).map(String::as_str).collect();
        write!(f, "secrets exported: {}", listed.join(", "))?;
        if more > 0 {
            write!(f, " and {more} more")?;
        }
        Ok(())
    }
}

/// Drops secrets named in `optional` (the implicit ones; every one with `on_missing: "skip"`)
/// from `req` until it can be started, adding their names to `skipped` (kept sorted); an
/// error names what is too large and cannot be dropped.
pub(super) fn fit(
    executor: &Executor,
    req: &mut ExecRequest,
    optional: &[String],
    skipped: &mut Vec<String>,
) -> Result<(), TooLarge> {
    let limits = ArgLimits::current();
    let droppable = |req: &ExecRequest, name: &str| {
        optional.iter().any(|i| i == name) && req.secrets.iter().any(|(n, _)| n == name)
    };
    loop {
        let oversize = match executor.check_size(req, limits) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let drop = match &oversize {
            Oversize::Variable { name, .. } if droppable(req, name) => Some(name.clone()),
            Oversize::Total { .. } => req
                .secrets
                .iter()
                .filter(|(n, _)| droppable(req, n))
                .max_by_key(|(_, v)| v.len())
                .map(|(n, _)| n.clone()),
            _ => None,
        };
        let Some(name) = drop else { return Err(refusal(oversize, req)) };
        req.secrets.retain(|(n, _)| *n != name);
        skipped.push(name);
        skipped.sort();
    }
}

/// What could not be made to fit.
fn refusal(oversize: Oversize, req: &ExecRequest) -> TooLarge {
    match oversize {
        Oversize::Variable { name, limit } if req.secrets.iter().any(|(n, _)| *n == name) => {
            TooLarge::Secret { name, limit }
        }
        Oversize::Variable { name, limit } if req.env.iter().any(|(n, _)| *n == name) => {
            TooLarge::Env { name, limit }
        }
        Oversize::Command { limit } => TooLarge::Command { limit },
        _ => TooLarge::Total(exported(req.secrets.iter().map(|(n, _)| n.clone()).collect())),
    }
}

fn exported(names: Vec<String>) -> Exported {
    Exported(names)
}

/// `E2BIG` at spawn (the limits changed since [`fit`], or the estimate missed) is a
/// [`TooLarge`] naming the `exported` secrets; anything else stays an [`ExecError`].
pub(super) fn spawn_too_large(e: ExecError, exported_names: &[String]) -> Result<TooLarge, ExecError> {
    match &e {
        ExecError::Spawn(io) if io.raw_os_error() == Some(libc::E2BIG) => {
            Ok(TooLarge::Total(exported(exported_names.to_vec())))
        }
        _ => Err(e),
    }
}
