//! Process hardening at start: no core dumps and no ptrace-style reads of our memory by
//! same-user processes (the agent's commands run as the same user), since secret values and
//! keys live in it.

/// Sets `PR_SET_DUMPABLE` to 0 and `RLIMIT_CORE` to 0 (soft and hard). Returns a message
/// naming the step that failed, if any; failing is not fatal (some sandboxes forbid it).
pub fn harden_process() -> Result<(), String> {
    let limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads a valid, initialised struct; no memory is handed over.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } != 0 {
        return Err(format!("setrlimit(RLIMIT_CORE): {}", std::io::Error::last_os_error()));
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes plain integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(format!("prctl(PR_SET_DUMPABLE): {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
