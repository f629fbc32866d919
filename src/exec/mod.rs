//! Running one agent command with its secrets exported and its output masked (contract §5).
//!
//! [`Executor::run`] builds the child's environment (`env`), spawns `shell -c command` in its
//! own process group (`child`), drives it to the end (`supervise`), masks and caps each
//! stream (`capture`), and reports an [`ExecOutcome`]. The shell path is resolved once, at
//! start, by [`resolve_shell`]; without one (an image with no shell) every run is refused
//! with [`ExecError::NoShell`].
//!
//! Not here: which secrets a command uses and resolving them (`secrets`), validating the
//! request (names, `cwd`, timeout bounds), HTTP and the stream's wire format (`api`).
//!
//! Invariants: nothing the command started outlives `run` (or the drop of its future), except
//! processes that deliberately left its process group; no output byte reaches the caller
//! unmasked, and after a masking error none reaches it at all.

mod capture;
mod child;
mod env;
mod image;
mod posix;
mod process;
mod shell;
mod size;
mod supervise;
#[cfg(test)]
mod tests;
mod user;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::mask::Masker;
use crate::secrets::value::SecretValue;

pub use capture::{HEAD_BYTES, WITHHELD, head_and_tail};
pub use env::{MIN_SCRUB_LEN, holds_key};
pub use shell::resolve_shell;
pub use size::{ArgLimits, Oversize};
pub use supervise::{GRACE, TERM_TO_KILL};
pub use user::{CommandUser, UserError};

/// Default per-stream output cap (`--max-output-bytes`).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Longest timeout honoured; longer ones are clamped (the API bounds them far lower).
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The executor's part of the configuration.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Absolute path of the shell, `None` when there is none; see [`resolve_shell`].
    pub shell: Option<PathBuf>,
    /// Working directory when a request names none.
    pub workdir: PathBuf,
    /// Per-stream cap on collected output: the first [`HEAD_BYTES`] and the last
    /// `max_output_bytes - HEAD_BYTES` bytes are kept.
    pub max_output_bytes: usize,
    /// Pass only `PATH HOME USER LANG LC_* TERM TZ TMPDIR SHELL` from the sidecar's environment.
    pub pristine_env: bool,
    /// Further variable names never passed on (`--strip-env`).
    pub strip_env: Vec<String>,
    /// Run commands as this user and group (`--command-user`) instead of the sidecar's own.
    pub user: Option<CommandUser>,
    /// Largest `timeout` a command may have (`--max-timeout`).
    pub max_timeout: Duration,
    /// Most commands running at once (`--max-concurrent-commands`).
    pub max_concurrent: usize,
    /// Refuse (424) to export a value too short to be masked (`--refuse-unmaskable`).
    pub refuse_unmaskable: bool,
}

/// Runs commands. Cheap to clone: every clone shares one configuration and environment.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ExecConfig,
    /// The sidecar's environment with the static exclusions already applied.
    base_env: Vec<(OsString, OsString)>,
}

/// One command to run, its environment and secrets already decided by the caller.
pub struct ExecRequest {
    /// Shell command text, run as `shell -c command`.
    pub command: String,
    /// Working directory (the caller checked it exists); `None` = the configured `workdir`.
    pub cwd: Option<PathBuf>,
    /// Wall-clock limit; then the group is terminated and the outcome is `timed_out`.
    pub timeout: Duration,
    /// Request variables (validated by the caller), set after the inherited ones.
    pub env: Vec<(String, String)>,
    /// Secrets to export, set last.
    pub secrets: Vec<(String, SecretValue)>,
    /// Keys the sidecar holds or has held: an inherited variable whose value contains one of
    /// at least [`MIN_SCRUB_LEN`] bytes is not passed on.
    pub scrub_values: Vec<SecretString>,
    /// Further inherited variable names not passed on (e.g. the `--allow-env-header` ones).
    pub scrub_names: Vec<String>,
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Command text and env values may carry secrets: only shapes are shown.
        f.debug_struct("ExecRequest")
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("env", &self.env.len())
            .field("secrets", &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"` (the stream line's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// A piece of streamed output: masked, then lossily decoded as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where it was written.
    pub stream: Stream,
    /// The masked text; never splits a character that arrived whole.
    pub text: String,
}

/// How a command ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code; `128 + n` after death by signal `n`; `-1` after a timeout or cancellation.
    pub exit_code: i32,
    /// The signal that killed the shell, if one did (not set on timeout or cancellation).
    pub signal: Option<i32>,
    /// The timeout passed before the shell exited.
    pub timed_out: bool,
    /// The caller cancelled (or the sink's receiver went away) before the shell exited.
    pub cancelled: bool,
    /// From spawn until the process group was gone.
    pub duration: Duration,
    /// Masked, capped standard output; empty when streamed; [`WITHHELD`] if masking failed.
    pub stdout: String,
    /// Masked, capped standard error; as `stdout`.
    pub stderr: String,
    /// Bytes of masked standard output dropped by the cap.
    pub truncated_stdout: u64,
    /// Bytes of masked standard error dropped by the cap.
    pub truncated_stderr: u64,
    /// Masking failed on a stream: its output was withheld (streaming: from that point on).
    pub masking_failed: bool,
}

/// Why a command could not be run. Messages never contain a command, a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Neither `bash` nor `sh` was on `PATH` at start (and no `--shell` was given): the
    /// binary runs where it cannot run commands, e.g. its own shell-less image.
    #[error("no shell: copy the binary into the sandbox image")]
    NoShell,
    /// The configured shell does not exist or is not executable.
    #[error("shell {0} not found or not executable")]
    ShellNotFound(String),
    /// The configured shell is a relative path.
    #[error("shell must be an absolute path or a name found on PATH")]
    ShellNotAbsolute,
    /// The shell could not be started.
    #[error("failed to start the shell")]
    Spawn(#[source] std::io::Error),
    /// The shell's exit status could not be collected.
    #[error("failed to wait for the command")]
    Wait(#[source] std::io::Error),
}

impl Executor {
    /// An executor for `cfg`, passing on `process_env` (the sidecar's environment, captured
    /// once at start) minus the variables contract §5 excludes.
    pub fn new(cfg: ExecConfig, process_env: Vec<(OsString, OsString)>) -> Self {
        let mut base_env = env::base_env(process_env, cfg.pristine_env, &cfg.strip_env);
        if let Some((name, home)) = cfg.user.as_ref().and_then(|u| u.account.as_ref()) {
            // As `runuser` would: the command's identity variables match the user it runs as.
            base_env.retain(|(n, _)| !["HOME", "USER", "LOGNAME"].iter().any(|v| n == v));
            base_env.push(("HOME".into(), home.into()));
            base_env.push(("USER".into(), name.into()));
            base_env.push(("LOGNAME".into(), name.into()));
        }
        Self { inner: Arc::new(Inner { cfg, base_env }) }
    }

    /// The configuration this executor runs with.
    pub fn config(&self) -> &ExecConfig {
        &self.inner.cfg
    }

    /// The value of `name` a command inherits from the sidecar's environment, if any.
    pub fn inherited(&self, name: &str) -> Option<&std::ffi::OsStr> {
        self.inner.base_env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_os_str())
    }

    /// [`ExecError::NoShell`] when commands cannot run at all, so a route can refuse before
    /// it resolves secrets or takes a slot.
    pub fn check_shell(&self) -> Result<(), ExecError> {
        self.inner.cfg.shell.as_ref().map(|_| ()).ok_or(ExecError::NoShell)
    }

    /// Runs `req` to completion, masking its output with `masker`.
    ///
    /// With a `sink`, output is sent there as it arrives (a full channel pauses reading, so
    /// the child blocks instead of memory growing; a closed one counts as a cancellation) and
    /// the outcome's `stdout`/`stderr` are empty. Without one it is collected under the cap.
    /// `cancel` (client gone, shutdown) ends the command like a timeout. Returns only once
    /// the command's process group is gone; dropping the future kills the group.
    pub async fn run(
        &self,
        req: ExecRequest,
        masker: Arc<Masker>,
        sink: Option<Sender<Chunk>>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let started = tokio::time::Instant::now();
        let deadline = started + req.timeout.min(MAX_TIMEOUT);
        let cfg = &self.inner.cfg;
        let shell = cfg.shell.as_deref().ok_or(ExecError::NoShell)?;
        let spawned = {
            let env = env::child_env(&self.inner.base_env, &req);
            let cwd = req.cwd.as_deref().unwrap_or(&cfg.workdir);
            child::spawn(shell, &req.command, cwd, &env, cfg.user.as_ref())?
        };
        drop(req);

        let collect = sink.is_none().then_some(cfg.max_output_bytes);
        let mut out = capture::StreamOutput::new(Stream::Stdout, Arc::clone(&masker), collect);
        let mut err = capture::StreamOutput::new(Stream::Stderr, masker, collect);
        let ending =
            supervise::supervise(spawned, &mut out, &mut err, sink.as_ref(), deadline, &cancel).await?;

        let masking_failed = out.failed() || err.failed();
        let (stdout, truncated_stdout) = out.into_collected();
        let (stderr, truncated_stderr) = err.into_collected();
        let (exit_code, signal, timed_out, cancelled) = match ending {
            supervise::Ending::Exited(status) => {
                let (code, signal) = child::exit_code(status);
                (code, signal, false, false)
            }
            supervise::Ending::TimedOut => (-1, None, true, false),
            supervise::Ending::Cancelled => (-1, None, false, true),
        };
        Ok(ExecOutcome {
            exit_code,
            signal,
            timed_out,
            cancelled,
            duration: started.elapsed(),
            stdout,
            stderr,
            truncated_stdout,
            truncated_stderr,
            masking_failed,
        })
    }
}
