//! [`RunError`]: why a command could not be prepared or run. Variants carry names, bounds and
//! causes, never a value, an `env` value or the command text; the HTTP layer maps them to
//! statuses in one place (`crate::error`).

use crate::exec::ExecError;
use crate::mask::MaskError;
use crate::secrets::export::MissingSecret;

use super::fit::TooLarge;

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// `timeout` is 0 or over the bound, where the route refuses rather than clamps.
    #[error("timeout: must be a whole number of seconds from 1 to {max}")]
    Timeout { max: u64 },
    /// `cwd` is not an existing directory.
    #[error("cwd: must be an existing directory")]
    Cwd,
    /// No shell was found at start, so no command can run here (the standalone image).
    #[error("{}", ExecError::NoShell)]
    NoShell,
    /// Every command slot is taken.
    #[error("too many commands running")]
    Busy,
    /// Explicit secrets that cannot be exported, with `on_missing: "fail"`.
    #[error("secrets needed by the command could not be resolved")]
    Missing(Vec<MissingSecret>),
    /// The command, its `env` or an explicit secret does not fit what `execve` accepts.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The values could not be added to the mask set, so they are not used (fail closed).
    #[error("secret values could not be masked")]
    Mask(#[source] MaskError),
    /// The shell could not be started or waited for.
    #[error("the command could not be run")]
    Exec(#[source] ExecError),
}
