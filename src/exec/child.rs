//! One child process: spawning it in its own process group, signalling that group, and
//! making sure the group cannot outlive the handle.
//!
//! Owns the OS side (`fork`/`exec` options, `kill(-pgid, …)`, `/proc` checks, exit statuses).
//! It does not read the pipes or decide when to kill: `supervise` does.
//!
//! Invariant: from the moment [`spawn`] returns, a [`GroupGuard`] is armed for the child's
//! group; dropping it unconfirmed sends `SIGKILL` to the whole group, so even a dropped `run`
//! future leaves nothing behind (grandchildren included; only processes that left the group
//! themselves, e.g. through `setsid`, escape).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::image::ExecImage;
use super::{CommandUser, ExecError};

/// A spawned command: the shell, its pipes, and the guard over its process group.
pub(super) struct Spawned {
    /// The shell (killed on drop; its group is the guard's job).
    pub child: Child,
    /// Read end of the shell's standard output.
    pub stdout: ChildStdout,
    /// Read end of the shell's standard error.
    pub stderr: ChildStderr,
    /// Kills the whole group unless it was seen gone.
    pub guard: GroupGuard,
}

/// Starts `shell -c command` in `cwd` with exactly `env`, stdin closed, stdout and stderr
/// piped, in a new process group whose id is the child's pid; as `user` when given.
///
/// The environment strings are built into an [`ExecImage`] and handed to `execve` from the
/// `pre_exec` hook, so `Command` never holds a copy; the image is wiped before this returns.
pub(super) fn spawn(
    shell: &Path,
    command: &str,
    cwd: &Path,
    env: &BTreeMap<&OsStr, &OsStr>,
    user: Option<&CommandUser>,
) -> Result<Spawned, ExecError> {
    let image = Arc::new(
        ExecImage::new(shell.as_os_str(), command, env.iter().map(|(n, v)| (*n, *v)))
            .map_err(ExecError::Spawn)?,
    );
    let mut cmd = Command::new(shell);
    if let Some(user) = user {
        // Switching ids happens in the child between fork and exec. std clears supplementary
        // groups when root does this.
        cmd.uid(user.uid).gid(user.gid);
    }
    let in_child = Arc::clone(&image);
    // SAFETY: the hook runs in the forked child after std's own setup (pipes, process group,
    // ids, cwd, signal mask) and only calls `execve` on pointers computed before the fork.
    // `Command`'s own argv (the same) and empty environment are never reached on success.
    unsafe {
        cmd.pre_exec(move || Err(in_child.exec()));
    }
    let spawned = cmd
        .arg("-c")
        .arg(command)
        .env_clear()
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    // The hook (and its reference to the image) goes with the Command; the last reference,
    // dropped here, wipes the strings whether or not the spawn worked.
    drop(cmd);
    debug_assert_eq!(Arc::strong_count(&image), 1, "the image outlived the spawn");
    drop(image);
    let mut child = spawned.map_err(ExecError::Spawn)?;
    // Arm the guard before anything else can fail, so every path below kills the group.
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
    let guard = GroupGuard { pgid, armed: pgid > 0 };
    match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), Some(stderr)) if guard.armed => Ok(Spawned { child, stdout, stderr, guard }),
        _ => Err(ExecError::Spawn(std::io::Error::other("child handles missing"))),
    }
}

/// Whether a process group still has a member that can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    /// At least one member is alive (or could not be checked).
    Alive,
    /// No member, or only zombies.
    Gone,
}

/// Kills the child's process group on drop unless the group was seen gone.
pub(super) struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    /// The process group id (the shell's pid).
    pub(super) fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Stops guarding: the group will not be signalled again, not even on drop.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Sends `signal` to every member of the group. Returns [`Group::Gone`] when the group has
    /// no members left (and disarms the guard), so a caller never signals a reused id later.
    pub(super) fn signal(&mut self, signal: i32) -> Group {
        if !self.armed {
            return Group::Gone;
        }
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
        let rc = unsafe { libc::kill(-self.pgid, signal) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            self.armed = false;
            return Group::Gone;
        }
        Group::Alive
    }

    /// Checks whether any member can still run. A group made only of zombies (members that
    /// died and wait for a parent, perhaps a PID 1 that never reaps) counts as gone.
    pub(super) fn check(&mut self) -> Group {
        if self.signal(0) == Group::Gone {
            return Group::Gone;
        }
        if live_member(self.pgid) {
            Group::Alive
        } else {
            self.armed = false;
            Group::Gone
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(libc::SIGKILL);
        }
    }
}

/// Scans `/proc` for a member of `pgid` that is not a zombie; true when unsure.
fn live_member(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return true };
    let mut buf = Vec::with_capacity(512);
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.as_encoded_bytes().first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        buf.clear();
        let path = entry.path().join("stat");
        let Ok(mut f) = std::fs::File::open(path) else { continue };
        if std::io::Read::read_to_end(&mut f, &mut buf).is_err() {
            continue;
        }
        if parse_stat(&buf).is_some_and(|(state, pgrp)| pgrp == pgid && state != b'Z' && state != b'X') {
            return true;
        }
    }
    false
}

/// `(state, pgrp)` from a `/proc/<pid>/stat` line: `pid (comm) S ppid pgrp …`, where `comm`
/// may itself contain spaces and parentheses.
fn parse_stat(stat: &[u8]) -> Option<(u8, i32)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// `(exit_code, signal)`: the code for a normal exit, `128 + n` and `Some(n)` for death by
/// signal `n`.
pub(super) fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (-1, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        assert_eq!(parse_stat(b"42 (a) b) (c) S 1 4242 4242 0"), Some((b'S', 4242)));
        assert_eq!(parse_stat(b"42 (sleep) Z 1 7 7"), Some((b'Z', 7)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn maps_exit_statuses() {
        assert_eq!(exit_code(ExitStatus::from_raw(42 << 8)), (42, None));
        assert_eq!(exit_code(ExitStatus::from_raw(0)), (0, None));
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), (143, Some(15)));
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), (137, Some(9)));
    }
}
