//! Starting the shell with `posix_spawn`, so the service is never forked.
//!
//! A `fork` of the service copies its page tables, makes every page it then writes take a
//! copy-on-write fault (with TLB shootdowns across its threads), and has the child tear that
//! copy down again at `execve`: a measurable part of every command's round trip. `posix_spawn`
//! (a `CLONE_VM | CLONE_VFORK` child in glibc and musl) shares the memory until `execve`, so
//! none of that happens. std cannot be used for this: its `posix_spawn` path builds the
//! environment strings itself and frees them unwiped (see `image`).
//!
//! Everything the fork path did between `fork` and `exec` is expressed as spawn attributes:
//! stdin from `/dev/null`, stdout and stderr to fresh pipes, `cwd`, a new process group, an
//! empty signal mask and `SIGPIPE` back to its default. Switching user ids has no attribute,
//! so commands run as another user keep the fork path (`child`).

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::image::ExecImage;

/// A started shell: its pid and the read ends of its output pipes.
pub(super) struct Started {
    pub pid: libc::pid_t,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Spawns `image` in `cwd`. The pipes' write ends are closed here once the child holds them.
pub(super) fn spawn(image: &ExecImage, cwd: &Path) -> io::Result<Started> {
    let cwd = CString::new(cwd.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte in the working directory"))?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut actions = Actions::new()?;
    actions.open_null(0)?;
    actions.dup2(&out_w, 1)?;
    actions.dup2(&err_w, 2)?;
    actions.chdir(&cwd)?;
    let attrs = Attrs::new()?;
    let (path, argv, envp) = image.raw();
    let mut pid: libc::pid_t = 0;
    // SAFETY: `path`, `argv` and `envp` are valid, NUL-terminated and null-terminated for as
    // long as `image` lives (its invariant); `actions` and `attrs` are initialised.
    let rc = unsafe { libc::posix_spawn(&mut pid, path, &actions.0, &attrs.0, argv, envp) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    drop((out_w, err_w));
    Ok(Started { pid, stdout: out_r, stderr: err_r })
}

/// A pipe, both ends close-on-exec, both above the standard descriptors (a `dup2` onto the
/// same number would not clear close-on-exec, so a pipe end must never *be* 0, 1 or 2).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one (or -1).
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Maps a `posix_spawn*` return code (an errno value, not -1) to a result.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct Actions(libc::posix_spawn_file_actions_t);

impl Actions {
    fn new() -> io::Result<Self> {
        let mut raw = MaybeUninit::uninit();
        // SAFETY: init writes a valid object into `raw` when it returns 0.
        check(unsafe { libc::posix_spawn_file_actions_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Self(unsafe { raw.assume_init() }))
    }

    fn open_null(&mut self, fd: libc::c_int) -> io::Result<()> {
        // SAFETY: the path is a static C string; glibc and musl copy it.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, fd, c"/dev/null".as_ptr(), libc::O_RDONLY, 0)
        })
    }

    fn dup2(&mut self, from: &OwnedFd, to: libc::c_int) -> io::Result<()> {
        // SAFETY: `from` is a valid descriptor that outlives the spawn.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from.as_raw_fd(), to) })
    }

    fn chdir(&mut self, dir: &CString) -> io::Result<()> {
        // SAFETY: `dir` is NUL-terminated; glibc and musl copy it.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
    }
}

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawnattr_t` for a new process group, an empty signal mask and default `SIGPIPE`.
struct Attrs(libc::posix_spawnattr_t);

impl Attrs {
    fn new() -> io::Result<Self> {
        let mut raw = MaybeUninit::uninit();
        // SAFETY: init writes a valid object into `raw` when it returns 0.
        check(unsafe { libc::posix_spawnattr_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let mut attrs = Self(unsafe { raw.assume_init() });
        // SAFETY: plain set manipulation on stack-owned sets and the initialised attributes.
        unsafe {
            let mut empty = MaybeUninit::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            let empty = empty.assume_init();
            let mut pipe = empty;
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigmask(&mut attrs.0, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(&mut attrs.0, &pipe))?;
            check(libc::posix_spawnattr_setpgroup(&mut attrs.0, 0))?;
            let flags =
                libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(&mut attrs.0, flags as libc::c_short))?;
        }
        Ok(attrs)
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}
