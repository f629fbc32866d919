//! The exact `argv` and `envp` a child is started with, built by the sidecar itself so the
//! copies of secret values they hold are wiped once the child has been started.
//!
//! `std::process::Command` copies every variable into `NAME=value` C strings of its own and
//! frees them without wiping, so each exported secret would linger in the sidecar's freed heap
//! after every command. Here the strings are laid out in one buffer per array, owned by an
//! [`ExecImage`] that zeroes them on drop. The shell is started from it with `posix_spawn`
//! (`posix`), or, when it must run as another user, by std's fork with an empty environment
//! and a `pre_exec` hook that calls `execve` with this image (in the forked child, with
//! pointers computed before the fork, so nothing is allocated there).
//!
//! What this does not cover, honestly: the forked child's copy of the buffers is the child's
//! (replaced by the new program image at `execve`); the kernel copies the strings onto the new
//! program's stack, where they belong to the command; and the values also live, on purpose,
//! in the resolver's cache and in the masker, which wipe them on their own terms.

use std::ffi::{OsStr, c_char};
use std::io;
use std::os::unix::ffi::OsStrExt;

use zeroize::{Zeroize, Zeroizing};

/// `path -c command` with the environment `env`, ready for `execve`.
///
/// Invariant: every pointer in `argv`/`envp` points into `args`/`env`, whose heap blocks are
/// never reallocated after construction; both arrays end with a null pointer.
pub(super) struct ExecImage {
    /// `path\0-c\0command\0`: the command text may hold a secret typed inline, so it is wiped too.
    args: Zeroizing<Vec<u8>>,
    /// `NAME=value\0` entries back to back.
    env: Zeroizing<Vec<u8>>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

// SAFETY: the raw pointers only point into the two buffers the same value owns, which are
// never written after construction except by `wipe` (which needs `&mut self`); sharing or
// sending the value shares or sends those buffers with them.
unsafe impl Send for ExecImage {}
// SAFETY: as above; `&self` gives read-only access to immutable buffers.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    /// Lays out `shell -c command` and `env` (`NAME=value` per entry, in iteration order).
    /// Fails with `InvalidInput` when any of them contains a NUL byte, as `Command` would.
    pub(super) fn new<'a>(
        shell: &OsStr,
        command: &str,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)> + Clone,
    ) -> io::Result<Self> {
        let args: [&[u8]; 3] = [shell.as_bytes(), b"-c", command.as_bytes()];
        let args_len = args.iter().map(|a| a.len() + 1).sum();
        let env_len = env.clone().into_iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        // Capacity reserved up front: the buffers never grow, so no unwiped copy is left
        // behind by a reallocation and the pointers computed below stay valid.
        let mut arg_buf = Zeroizing::new(Vec::with_capacity(args_len));
        let mut env_buf = Zeroizing::new(Vec::with_capacity(env_len));
        let mut arg_starts = Vec::with_capacity(args.len());
        for a in args {
            arg_starts.push(arg_buf.len());
            push_c_str(&mut arg_buf, &[a])?;
        }
        let mut env_starts = Vec::new();
        for (name, value) in env {
            env_starts.push(env_buf.len());
            push_c_str(&mut env_buf, &[name.as_bytes(), b"=", value.as_bytes()])?;
        }
        debug_assert_eq!((arg_buf.len(), env_buf.len()), (args_len, env_len));
        let argv = pointers(&arg_buf, &arg_starts);
        let envp = pointers(&env_buf, &env_starts);
        Ok(Self { args: arg_buf, env: env_buf, argv, envp })
    }

    /// Replaces the calling process with the image. Only returns on failure.
    ///
    /// Meant for the child between `fork` and `exec`: it allocates nothing and calls only
    /// `execve`, which is async-signal-safe.
    pub(super) fn exec(&self) -> io::Error {
        // SAFETY: both arrays are null-terminated and point at NUL-terminated strings inside
        // buffers `self` owns and keeps alive for the duration of the call (the invariant).
        unsafe { libc::execve(self.argv[0], self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }

    /// The path, `argv` and `envp` for `posix_spawn`, valid while `self` lives.
    pub(super) fn raw(&self) -> (*const c_char, *const *mut c_char, *const *mut c_char) {
        (self.argv[0], self.argv.as_ptr().cast(), self.envp.as_ptr().cast())
    }

    /// Zeroes both buffers in place (their length kept) and forgets the pointers into them.
    fn wipe(&mut self) {
        self.argv.clear();
        self.envp.clear();
        self.args.as_mut_slice().zeroize();
        self.env.as_mut_slice().zeroize();
    }

    #[cfg(test)]
    fn env_entries(&self) -> Vec<&[u8]> {
        self.env.split(|&b| b == 0).filter(|e| !e.is_empty()).collect()
    }
}

impl Drop for ExecImage {
    fn drop(&mut self) {
        // `Zeroizing` then wipes the spare capacity too (there is none) as the buffers drop.
        self.wipe();
    }
}

/// Appends the concatenation of `parts` and a NUL, refusing an interior NUL.
fn push_c_str(buf: &mut Vec<u8>, parts: &[&[u8]]) -> io::Result<()> {
    if parts.iter().any(|p| p.contains(&0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte in a command argument or variable",
        ));
    }
    for p in parts {
        buf.extend_from_slice(p);
    }
    buf.push(0);
    Ok(())
}

/// Pointers to the strings starting at `starts` in `buf`, then a null pointer.
fn pointers(buf: &[u8], starts: &[usize]) -> Vec<*const c_char> {
    let base = buf.as_ptr().cast::<c_char>();
    // `wrapping_add` keeps this safe code: every start is an index inside `buf`.
    let mut v: Vec<*const c_char> = starts.iter().map(|&s| base.wrapping_add(s)).collect();
    v.push(std::ptr::null());
    v
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn image(env: &[(&str, &str)]) -> io::Result<ExecImage> {
        ExecImage::new(
            OsStr::new("/bin/sh"),
            "echo hi",
            env.iter().map(|(n, v)| (OsStr::new(*n), OsStr::new(*v))),
        )
    }

    fn strings(ptrs: &[*const c_char]) -> Vec<String> {
        assert!(ptrs.last().is_some_and(|p| p.is_null()), "null-terminated");
        ptrs[..ptrs.len() - 1]
            .iter()
            // SAFETY: the image under test is alive and its pointers are valid C strings.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_str().expect("utf-8").to_owned())
            .collect()
    }

    #[test]
    fn lays_out_argv_and_envp() {
        let img = image(&[("A", "1"), ("SECRET", "s3cr3t-value"), ("EMPTY", "")]).unwrap();
        assert_eq!(strings(&img.argv), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(strings(&img.envp), ["A=1", "SECRET=s3cr3t-value", "EMPTY="]);
        assert_eq!(img.env_entries(), [&b"A=1"[..], b"SECRET=s3cr3t-value", b"EMPTY="]);
        assert_eq!(img.env.len(), img.env.capacity(), "no spare capacity, no reallocation");
    }

    #[test]
    fn empty_environment_is_just_the_terminator() {
        let img = image(&[]).unwrap();
        assert_eq!(img.envp, [std::ptr::null()]);
    }

    #[test]
    fn refuses_nul_bytes() {
        for env in [[("A\0B", "v")], [("A", "v\0w")]] {
            assert_eq!(image(&env).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
        }
        let err = ExecImage::new(OsStr::new("/bin/sh"), "echo\0hi", std::iter::empty()).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn wipe_zeroes_every_byte_and_forgets_the_pointers() {
        let mut img = image(&[("SECRET", "s3cr3t-value"), ("OTHER", "x")]).unwrap();
        let (args_len, env_len) = (img.args.len(), img.env.len());
        img.wipe();
        assert_eq!((img.args.len(), img.env.len()), (args_len, env_len), "wiped in place");
        assert!(img.args.iter().chain(img.env.iter()).all(|&b| b == 0));
        assert!(img.argv.is_empty() && img.envp.is_empty());
    }
}
