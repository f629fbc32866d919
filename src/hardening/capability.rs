//! The capabilities commands may have: Docker's default set minus `NET_RAW` (it could sniff the
//! API key on `lo`), `MKNOD` and `SETFCAP`. That keeps what ordinary root work needs
//! (`apt-get` drops to its `_apt` user, `pip` and `chown` change owners and modes) and nothing
//! that reads another process (`SYS_PTRACE`, `SYS_ADMIN`, `PERFMON`, `BPF`, `SYS_RAWIO`, …).
//!
//! Invariant after [`confine`]: every set of this thread (bounding where permitted, and always
//! permitted, effective, inheritable and ambient) is within [`ALLOWED`]. With `no_new_privs`
//! set, an `execve` can only narrow the permitted set, so a child's capabilities stay within
//! ours even where the bounding set could not be changed (no `CAP_SETPCAP`).

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities the sidecar and its commands keep.
pub const ALLOWED: &[Capability] = &[
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

/// Narrows this thread's capability sets to [`ALLOWED`]; returns what could not be done.
/// `keep_ipc_lock` keeps `CAP_IPC_LOCK` in the sidecar's own permitted and effective sets
/// (`--mlock` locks future allocations too, thread stacks included), never in the bounding
/// or inheritable set, so no command gets it.
pub(super) fn confine(keep_ipc_lock: bool) -> Vec<String> {
    let mut short = Vec::new();
    let allowed: CapsHashSet = ALLOWED.iter().copied().collect();
    let mut own = allowed.clone();
    if keep_ipc_lock {
        own.insert(Capability::CAP_IPC_LOCK);
    }
    // The bounding set first: dropping from it needs CAP_SETPCAP in the effective set, which
    // is still intact here. A process without it (any non-root user) has nothing to drop
    // that matters: the permitted set below and `no_new_privs` bound its children.
    match caps::read(None, CapSet::Bounding) {
        Ok(bounding) => {
            let extra: Vec<_> = bounding.difference(&allowed).copied().collect();
            let mut failed = 0;
            for cap in &extra {
                if caps::drop(None, CapSet::Bounding, *cap).is_err() {
                    failed += 1;
                }
            }
            let privileged = caps::has_cap(None, CapSet::Permitted, Capability::CAP_SETPCAP).unwrap_or(false);
            if failed > 0 && privileged {
                short.push(format!("dropping {failed} capabilities from the bounding set failed"));
            }
        }
        Err(e) => short.push(format!("reading the bounding set: {e}")),
    }
    if let Err(e) = caps::clear(None, CapSet::Ambient) {
        short.push(format!("clearing the ambient set: {e}"));
    }
    // Effective must stay a subset of permitted, so it is narrowed first.
    for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
        let keep = if matches!(set, CapSet::Inheritable) { &allowed } else { &own };
        let narrowed = caps::read(None, set).map(|have| have.intersection(keep).copied().collect());
        if let Err(e) = narrowed.and_then(|keep: CapsHashSet| caps::set(None, set, &keep)) {
            short.push(format!("narrowing the {set:?} set: {e}"));
        }
    }
    short
}
