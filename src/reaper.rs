//! Running as PID 1 (a container's init): orphans are re-parented to us, and nobody else
//! will reap them. Before anything else starts, the process forks: the parent stays PID 1,
//! reaps every child and forwards SIGTERM/SIGINT/SIGHUP to the service, which runs in the
//! child as usual; the parent exits with the service's status.

/// If this process is PID 1, fork; returns only in the service process. Must be called
/// before any thread is started.
pub fn reap_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    // SAFETY: called while the process is single-threaded, so fork is sound; the parent
    // only calls async-signal-safe functions afterwards.
    let child = unsafe { libc::fork() };
    match child {
        -1 => eprintln!("secret-sidecar: fork failed; running as PID 1 without reaping orphans"),
        0 => {}
        pid => supervise(pid),
    }
}

/// The PID-1 loop: wait for signals, reap, forward; exit like the service did.
fn supervise(service: libc::pid_t) -> ! {
    // SAFETY: plain libc signal-set manipulation on stack-owned sets; waitpid/kill/_exit with
    // valid arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                libc::kill(service, sig);
                continue;
            }
            loop {
                let mut status: libc::c_int = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == service {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
            }
        }
    }
}
