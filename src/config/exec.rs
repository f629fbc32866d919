//! How commands run: the shell, the working directory, the caps, and `--command-user`
//! (whose names are read from `/etc/passwd` and `/etc/group`, and which needs root).
//!
//! Checked here, once, at start: a shell that is missing, a working directory that is not a
//! directory or a user the sidecar cannot switch to is a start-up error naming its option,
//! never a failure of every later command.

use std::ffi::OsStr;
use std::time::Duration;

use super::env::current_uid;
use super::{ConfigError, Env, positive};
use crate::cli::ServeArgs;
use crate::exec::{CommandUser, ExecConfig};

/// The one configuration of commands: how they run and the pipeline's bounds.
pub(super) fn exec_config(args: &ServeArgs, env: &Env) -> Result<ExecConfig, ConfigError> {
    let max_timeout = positive("--max-timeout", args.max_timeout)?;
    let max_concurrent = positive("--max-concurrent-commands", args.max_concurrent_commands)?;
    let max_output_bytes = positive("--max-output-bytes", args.max_output_bytes)?;
    let shell = crate::exec::resolve_shell(args.shell.as_deref(), env.get("PATH").map(OsStr::new))
        .map_err(|source| ConfigError::Shell { source })?;
    let workdir = match &args.workdir {
        Some(w) => w.clone(),
        None => std::env::current_dir().map_err(|source| ConfigError::Workdir { source })?,
    };
    if !workdir.is_dir() {
        return Err(ConfigError::Invalid {
            option: "--workdir",
            reason: format!("{} is not a directory", workdir.display()),
        });
    }
    let user = match &args.command_user {
        Some(spec) => Some(command_user(spec)?),
        None => None,
    };
    Ok(ExecConfig {
        shell,
        workdir,
        max_output_bytes,
        pristine_env: args.pristine_env,
        strip_env: args.strip_env.clone(),
        user,
        max_timeout: Duration::from_secs(max_timeout),
        max_concurrent,
        refuse_unmaskable: args.refuse_unmaskable,
    })
}

/// `--command-user`, checked against this process: switching ids needs root.
fn command_user(spec: &str) -> Result<CommandUser, ConfigError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let user = CommandUser::parse(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|source| ConfigError::CommandUser { source })?;
    if current_uid() != 0 && user.uid != current_uid() {
        return Err(ConfigError::Invalid {
            option: "--command-user",
            reason: format!("running commands as {spec} needs the sidecar to run as root"),
        });
    }
    Ok(user)
}
