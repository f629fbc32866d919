//! One child process: spawning it in its own process group, signalling that group, and
//! making sure the group cannot outlive the handle.
//!
//! Owns the OS side (how the shell is started, `kill(-pgid, …)`, `/proc` checks, exit
//! statuses).
//! It does not read the pipes or decide when to kill: `supervise` does.
//!
//! Invariant: from the moment [`spawn`] returns, a [`GroupGuard`] is armed for the child's
//! group; dropping it unconfirmed sends `SIGKILL` to the whole group, so even a dropped `run`
//! future leaves nothing behind (grandchildren included; only processes that left the group
//! themselves, e.g. through `setsid`, escape).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

use tokio::net::unix::pipe::Receiver;

use super::image::ExecImage;
use super::process::Process;
use super::{CommandUser, ExecError, posix};

/// A spawned command: the shell, its pipes, and the guard over its process group.
pub(super) struct Spawned {
    /// The shell (killed and reaped on drop; its group is the guard's job).
    pub child: Process,
    /// Read end of the shell's standard output.
    pub stdout: Receiver,
    /// Read end of the shell's standard error.
    pub stderr: Receiver,
    /// Kills the whole group unless it was seen gone.
    pub guard: GroupGuard,
}

/// Starts `shell -c command` in `cwd` with exactly `env`, stdin closed, stdout and stderr
/// piped, in a new process group whose id is the child's pid; as `user` when given.
///
/// The environment strings are built into an [`ExecImage`], which is wiped before this
/// returns. Without a user the shell is started with `posix_spawn` (`posix`); switching ids
/// needs code between `fork` and `exec`, so with one std forks and the `pre_exec` hook calls
/// `execve` with the image (std's own copy of the environment stays empty).
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
    let started = match user {
        None => posix::spawn(&image, cwd),
        Some(user) => fork(shell, command, cwd, user, &image),
    };
    // The last reference, dropped here, wipes the strings whether or not the spawn worked.
    debug_assert_eq!(Arc::strong_count(&image), 1, "the image outlived the spawn");
    drop(image);
    let posix::Started { pid, stdout, stderr } = started.map_err(ExecError::Spawn)?;
    // Owned (killed and reaped on drop) and its group guarded before anything else can fail.
    let child = Process::adopt(pid);
    let guard = GroupGuard { pgid: pid, armed: pid > 0 };
    let pipe = |fd: OwnedFd| Receiver::from_owned_fd(fd).map_err(ExecError::Spawn);
    Ok(Spawned { child, stdout: pipe(stdout)?, stderr: pipe(stderr)?, guard })
}

/// The fork path, for a command run as `user`: std sets the ids, pipes, group and `cwd` in
/// the child, then the hook `execve`s the image. The std `Child` is only read for its pid
/// and pipes; dropping it neither waits nor kills, [`Process`] does both.
fn fork(
    shell: &Path,
    command: &str,
    cwd: &Path,
    user: &CommandUser,
    image: &Arc<ExecImage>,
) -> std::io::Result<posix::Started> {
    let mut cmd = Command::new(shell);
    // Switching ids happens in the child between fork and exec. std clears supplementary
    // groups when root does this.
    cmd.uid(user.uid).gid(user.gid);
    let in_child = Arc::clone(image);
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
        .spawn();
    // The hook (and its reference to the image) goes with the Command.
    drop(cmd);
    let mut child = spawned?;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), Some(stderr)) => {
            Ok(posix::Started { pid, stdout: stdout.into(), stderr: stderr.into() })
        }
        _ => {
            // Not adopted yet: kill and reap it here.
            let _ = child.kill();
            let _ = child.wait();
            Err(std::io::Error::other("child handles missing"))
        }
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
