//! [`Process`]: waiting for a shell the executor started itself, by pid.
//!
//! `tokio::process::Child` only exists for children tokio spawned; a shell started with
//! `posix_spawn` (`posix`) or adopted from std's fork path is waited for here instead,
//! through a pidfd (readable once the process has exited), so waiting needs no thread and no
//! `SIGCHLD` handler. Where pidfds are unavailable (kernels before 5.3, some seccomp
//! profiles) one blocking `waitpid` runs on tokio's blocking pool.
//!
//! Invariant: a `Process` dropped before its exit status was collected kills the shell and
//! still reaps it, so no zombie is left behind.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

/// A child of this process, waited for asynchronously and reaped exactly once.
pub(super) struct Process {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// The blocking `waitpid` when there is no pidfd, kept across cancelled waits.
    waiter: Option<JoinHandle<io::Result<ExitStatus>>>,
    status: Option<ExitStatus>,
}

impl Process {
    /// Takes over waiting for `pid` (which must be a child of this process not yet reaped).
    pub(super) fn adopt(pid: libc::pid_t) -> Self {
        Self { pid, pidfd: pidfd(pid), waiter: None, status: None }
    }

    /// Waits for the child to exit and reaps it. Cancel-safe: a dropped wait loses nothing,
    /// and the next call picks up where it left.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if let Some(fd) = &self.pidfd {
            loop {
                let mut ready = fd.readable().await?;
                if let Some(status) = reap(self.pid, libc::WNOHANG)? {
                    self.status = Some(status);
                    return Ok(status);
                }
                ready.clear_ready();
            }
        }
        let pid = self.pid;
        let waiter = self.waiter.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || {
                reap(pid, 0)?.ok_or_else(|| io::Error::other("waitpid returned no status"))
            })
        });
        let status = waiter.await.map_err(io::Error::other)??;
        self.waiter = None;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: kill(2) on our own unreaped child's pid; it touches no memory.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if self.waiter.is_some() {
            // The blocking wait already running reaps it.
            return;
        }
        let pid = self.pid;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || reap(pid, 0))),
            Err(_) => drop(reap(pid, 0)),
        }
    }
}

/// `waitpid(pid, flags)`, retried on `EINTR`; `None` when `WNOHANG` found it still running.
fn reap(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        match rc {
            0 => return Ok(None),
            rc if rc == pid => return Ok(Some(ExitStatus::from_raw(status))),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// A pidfd for `pid`, registered with the runtime; `None` when the kernel has none (or
/// there is no runtime to register it with).
fn pidfd(pid: libc::pid_t) -> Option<AsyncFd<OwnedFd>> {
    tokio::runtime::Handle::try_current().ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_NONBLOCK) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which keeps it open, unchanged,
    // until it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[expect(clippy::zombie_processes, reason = "the pid is handed to a Process, which reaps it")]
    fn start(script: &str) -> libc::pid_t {
        let child = std::process::Command::new("/bin/sh").args(["-c", script]).spawn().unwrap();
        // std's Child neither waits nor kills on drop: the pid is ours to reap.
        libc::pid_t::try_from(child.id()).unwrap()
    }

    /// True once `pid` is gone altogether (`/proc` keeps a zombie's entry until it is
    /// reaped), polled for up to 10 s.
    async fn reaped(pid: libc::pid_t) -> bool {
        for _ in 0..1000 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn waits_through_the_pidfd_and_keeps_the_status() {
        let mut p = Process::adopt(start("exit 7"));
        assert!(p.pidfd.is_some(), "this kernel has pidfds");
        assert_eq!(p.wait().await.unwrap().code(), Some(7));
        assert_eq!(p.wait().await.unwrap().code(), Some(7), "asked again");
    }

    #[tokio::test]
    async fn waits_without_a_pidfd_and_survives_a_cancelled_wait() {
        let pid = start("sleep 0.2; exit 3");
        let mut p = Process { pid, pidfd: None, waiter: None, status: None };
        assert!(tokio::time::timeout(Duration::from_millis(20), p.wait()).await.is_err(), "still running");
        assert_eq!(p.wait().await.unwrap().code(), Some(3), "the cancelled wait lost nothing");
    }

    #[tokio::test]
    async fn a_dropped_process_is_killed_and_reaped() {
        for pidfd in [true, false] {
            let pid = start("sleep 100");
            let mut p = Process::adopt(pid);
            if !pidfd {
                p.pidfd = None;
            }
            drop(p);
            assert!(reaped(pid).await, "pidfd {pidfd}: killed and reaped");
        }
    }
}
