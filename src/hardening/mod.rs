//! Process hardening at start, so that a command the agent runs — often as root — cannot take
//! the sidecar's keys or values out of its process (contract §1, "Root commands").
//!
//! Three steps, all taken once in `main`, while the process is still single-threaded and
//! before the PID 1 fork (so the PID 1 parent is covered as well):
//! - [`scrub_environ`] overwrites the values of the key-bearing variables in the process's own
//!   initial environment block, the bytes `/proc/<pid>/environ` shows;
//! - [`harden_process`] turns off core dumps and `ptrace`-style access (`PR_SET_DUMPABLE`),
//!   and removes every capability outside [`ALLOWED`] from the bounding, permitted,
//!   effective, inheritable and ambient sets and sets `no_new_privs`. Children inherit all of
//!   it, so spawning stays on the fast `posix_spawn` path and a root command cannot read
//!   `/proc/<sidecar>/mem` or `environ` (that needs `CAP_SYS_PTRACE`, or `CAP_SYS_ADMIN` /
//!   `CAP_PERFMON` on some kernels), load a module, or use `perf`/BPF against it; and marks
//!   the descriptors the sidecar inherited close-on-exec, so commands do not inherit them.
//!
//! Not here: which variables hold keys (`exec::holds_key` and the configuration decide), and
//! running commands as another user (`--command-user`, the executor).

mod capability;
mod environ;

pub use capability::ALLOWED;
pub use environ::scrub_environ;

/// What [`harden_process`] could not do. Failing is not fatal (some sandboxes forbid a
/// step); each message names the step.
pub type Shortfalls = Vec<String>;

/// Sets `RLIMIT_CORE` to 0 (soft and hard) and `PR_SET_DUMPABLE` to 0, then confines the
/// capabilities children can have (see the module docs) and sets `no_new_privs`.
///
/// Must be called before any thread is started: capabilities and `no_new_privs` are
/// per-thread and only threads created afterwards inherit them. With `memory_locked`
/// (`--mlock`), the sidecar keeps `CAP_IPC_LOCK` for itself (never for commands).
pub fn harden_process(memory_locked: bool) -> Shortfalls {
    let mut short = Vec::new();
    let limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads a valid, initialised struct; no memory is handed over.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } != 0 {
        short.push(format!("setrlimit(RLIMIT_CORE): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: PR_SET_DUMPABLE takes plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        short.push(format!("prctl(PR_SET_DUMPABLE): {}", std::io::Error::last_os_error()));
    }
    short.extend(capability::confine(memory_locked));
    if let Err(e) = close_inherited_on_exec() {
        short.push(format!("marking inherited descriptors close-on-exec: {e}"));
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        short.push(format!("prctl(PR_SET_NO_NEW_PRIVS): {}", std::io::Error::last_os_error()));
    }
    short
}

/// Marks every descriptor above stderr close-on-exec. The sidecar's own are already (Rust
/// opens everything `O_CLOEXEC`); this catches those it inherited from whoever started it,
/// which would otherwise pass on to every command.
fn close_inherited_on_exec() -> std::io::Result<()> {
    // SAFETY: close_range with plain integer arguments changes descriptor flags only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one fcntl per open descriptor.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD on a descriptor number; a closed one just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Locks all current and future memory into RAM, so no secret value is ever swapped out.
/// Needs `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`; call it before
/// [`harden_process`]. The error says what to raise.
pub fn lock_memory() -> Result<(), String> {
    // SAFETY: mlockall takes plain flags and touches no memory of ours.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(format!(
        "--mlock: mlockall failed ({e}); give the sidecar CAP_IPC_LOCK or raise RLIMIT_MEMLOCK \
         (e.g. `--ulimit memlock=-1` in Docker), or run without --mlock"
    ))
}
