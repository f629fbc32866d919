//! Making a command fit what `execve(2)` accepts before it is started, so that a value too
//! large to export is a clear answer instead of a failed spawn.
//!
//! Policy (contract §5): an implicit secret that cannot be exported is skipped — the
//! largest first, until the rest fit — and so is an explicit one under `on_missing: "skip"`.
//! What cannot be dropped (an explicit secret otherwise, the request's `env`, the command
//! text) makes the request a 422 that names it.
//!
//! Why 422 and not 413: the request body may be small — the registered secrets are what does
//! not fit — and 413 is the answer to a body over `--max-body-bytes`, which a client may meet
//! by shrinking the body. 422 says "well-formed, but cannot be run as asked", with the names.

use crate::error::ApiError;
use crate::exec::{ArgLimits, ExecError, ExecRequest, Executor, Oversize};

/// Most secret names listed in one error (the rest are counted).
const MAX_NAMES: usize = 32;

/// Drops secrets named in `optional` (the implicit ones; every one with `on_missing: "skip"`)
/// from `req` until it can be started, adding their names to `skipped` (kept sorted); an
/// error names what is too large and cannot be dropped.
pub fn fit(
    executor: &Executor,
    req: &mut ExecRequest,
    optional: &[String],
    skipped: &mut Vec<String>,
) -> Result<(), ApiError> {
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
        let Some(name) = drop else { return Err(refusal(&oversize, req)) };
        req.secrets.retain(|(n, _)| *n != name);
        skipped.push(name);
        skipped.sort();
    }
}

/// The 422 for what could not be made to fit.
fn refusal(oversize: &Oversize, req: &ExecRequest) -> ApiError {
    let message = match oversize {
        Oversize::Variable { name, limit } if req.secrets.iter().any(|(n, _)| n == name) => format!(
            "secret {name} cannot be exported: it is longer than the system allows for one environment variable ({limit} bytes)"
        ),
        Oversize::Variable { name, limit } if req.env.iter().any(|(n, _)| n == name) => {
            format!(
                "env: {name} is longer than the system allows for one environment variable ({limit} bytes)"
            )
        }
        Oversize::Command { limit } => {
            format!("command: longer than the system allows for one argument ({limit} bytes)")
        }
        other => format!("{other}; {}", exported(req)),
    };
    ApiError::Unprocessable(message)
}

fn exported(req: &ExecRequest) -> String {
    if req.secrets.is_empty() {
        return "no secrets are exported (the request's env is too large)".into();
    }
    format!("secrets exported: {}", names(req.secrets.iter().map(|(n, _)| n.as_str())))
}

/// At most [`MAX_NAMES`] names, comma-separated, then how many more.
fn names<'a>(all: impl ExactSizeIterator<Item = &'a str>) -> String {
    let more = all.len().saturating_sub(MAX_NAMES);
    let listed: Vec<&str> = all.take(MAX_NAMES).collect();
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("{}{more}", listed.join(", "))
}

/// The answer for a run that failed: `E2BIG` at spawn (the limits changed since [`fit`], or
/// the estimate missed) is a 422 naming the `exported` secrets; anything else is as usual.
pub fn run_error(e: ExecError, exported: &[String]) -> ApiError {
    if let ExecError::Spawn(io) = &e {
        if io.raw_os_error() == Some(libc::E2BIG) {
            let listed = if exported.is_empty() {
                "none".to_owned()
            } else {
                names(exported.iter().map(String::as_str))
            };
            return ApiError::Unprocessable(format!(
                "the command's arguments and environment are larger than the system allows; secrets exported: {listed}"
            ));
        }
    }
    ApiError::from(e)
}
