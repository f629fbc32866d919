//! Whether `execve(2)` will accept a command: the kernel copies the program path, the
//! arguments and the environment onto the new program's stack and refuses (`E2BIG`) a single
//! string over `MAX_ARG_STRLEN` (32 pages) or a total over a quarter of the stack limit
//! (capped at 6 MiB, never under 32 pages), pointers included.
//!
//! Checking before spawning lets the caller say *which* variable is at fault (and drop an
//! implicit secret instead of failing), which a bare `E2BIG` from `spawn` cannot. The check
//! follows `fs/exec.c` and keeps [`HEADROOM`] spare, so a command accepted here also leaves
//! the shell room to start its own programs; the caller still maps a late `E2BIG`.
//!
//! Not here: which variables to drop or how to answer (the caller's policy).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::{ExecRequest, Executor, env};

/// Kept free below the kernel's total: the shell adds `PWD`, `SHLVL`, `_` and the like when
/// it starts a program, and an environment filled to the last byte would make that fail.
const HEADROOM: usize = 4096;

/// `_STK_LIM / 4 * 3`: the kernel's cap on argument space whatever the stack limit.
const MAX_TOTAL: usize = 6 * 1024 * 1024;

/// Pages of `MAX_ARG_STRLEN` and of the smallest total (`ARG_MAX`) the kernel allows.
const ARG_PAGES: usize = 32;

/// The kernel's limits for a program started now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgLimits {
    /// Longest single argument or `NAME=value` string, its NUL included.
    pub per_string: usize,
    /// Most bytes of strings and pointers together, less `HEADROOM`.
    pub total: usize,
}

impl ArgLimits {
    /// The limits for this process's current `RLIMIT_STACK` (a child inherits it).
    pub fn current() -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        let mut rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: getrlimit writes into the struct we own; on failure it is left unlimited.
        unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut rlim) };
        Self::for_stack(page, rlim.rlim_cur)
    }

    /// The limits for a page size and a stack limit (`RLIM_INFINITY` = unlimited).
    pub fn for_stack(page: usize, stack: libc::rlim_t) -> Self {
        let quarter = if stack == libc::RLIM_INFINITY { usize::MAX } else { (stack / 4) as usize };
        let total = quarter.min(MAX_TOTAL).max(ARG_PAGES * page);
        Self { per_string: ARG_PAGES * page, total: total.saturating_sub(HEADROOM) }
    }
}

/// What makes a command too large to start. Names only: never a value or the command text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Oversize {
    /// The command text alone is longer than one argument may be.
    #[error("the command is longer than the system allows for one argument ({limit} bytes)")]
    Command { limit: usize },
    /// One variable (`NAME=value`) is longer than one environment string may be.
    #[error("variable {name} is longer than the system allows for one environment variable ({limit} bytes)")]
    Variable { name: String, limit: usize },
    /// Arguments and environment together are over the system's limit.
    #[error("the command's arguments and environment are larger than the system allows ({limit} bytes)")]
    Total { limit: usize },
}

impl Executor {
    /// Checks that `req` can be started under `limits`: the first variable found too long, or
    /// the total. Secrets are checked first, so a caller can drop them one at a time.
    pub fn check_size(&self, req: &ExecRequest, limits: ArgLimits) -> Result<(), Oversize> {
        let env = env::child_env(&self.inner.base_env, req);
        let own = req.secrets.iter().map(|(n, v)| (n.as_str(), v.len()));
        let own = own.chain(req.env.iter().map(|(n, v)| (n.as_str(), v.len())));
        let shell = self.inner.cfg.shell.as_deref().map_or(OsStr::new(""), |s| s.as_os_str());
        check(shell, &req.command, own, &env, limits)
    }
}

/// `own` are the request's own variables (secrets, then `env`) as name and value length,
/// checked one by one first so the error names one of them when it can; `env` is the whole
/// environment the child gets.
fn check<'a>(
    shell: &OsStr,
    command: &str,
    own: impl Iterator<Item = (&'a str, usize)>,
    env: &BTreeMap<&OsStr, &OsStr>,
    limits: ArgLimits,
) -> Result<(), Oversize> {
    let entry = |name: &[u8], value: &[u8]| name.len() + 1 + value.len() + 1;
    let too_long = |name: &str| Oversize::Variable { name: name.to_owned(), limit: limits.per_string };
    for (name, len) in own {
        if name.len() + 1 + len + 1 > limits.per_string {
            return Err(too_long(name));
        }
    }
    if command.len() + 1 > limits.per_string {
        return Err(Oversize::Command { limit: limits.per_string });
    }
    let mut total = 0usize;
    for (name, value) in env {
        let len = entry(name.as_bytes(), value.as_bytes());
        if len > limits.per_string {
            return Err(too_long(&name.to_string_lossy()));
        }
        total += len;
    }
    // The path is copied once as the file name and once as argv[0]; then "-c" and the command.
    let args = [shell.len() + 1, shell.len() + 1, 3, command.len() + 1];
    total += args.iter().sum::<usize>();
    total += (args.len() - 1 + env.len()) * std::mem::size_of::<usize>();
    if total > limits.total { Err(Oversize::Total { limit: limits.total }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn limits_follow_the_kernel() {
        let l = ArgLimits::for_stack(4096, 8 * 1024 * 1024);
        assert_eq!(l, ArgLimits { per_string: 128 * 1024, total: 2 * 1024 * 1024 - HEADROOM });
        let l = ArgLimits::for_stack(4096, libc::RLIM_INFINITY);
        assert_eq!(l.total, MAX_TOTAL - HEADROOM);
        let l = ArgLimits::for_stack(4096, 64 * 1024);
        assert_eq!(l.total, 128 * 1024 - HEADROOM, "never under 32 pages");
        assert_eq!(ArgLimits::for_stack(65536, 8 << 20).per_string, 2 << 20);
    }

    /// Runs [`check`] on variables of the given value lengths; the first `own` are the request's.
    fn run(command: &str, vars: &[(&str, usize)], own: usize) -> Result<(), Oversize> {
        let values: Vec<(OsString, Vec<u8>)> =
            vars.iter().map(|(n, len)| ((*n).into(), vec![b'v'; *len])).collect();
        let env: BTreeMap<&OsStr, &OsStr> =
            values.iter().map(|(n, v)| (n.as_os_str(), OsStr::from_bytes(v))).collect();
        let mine = values[..own].iter().map(|(n, v)| (n.to_str().unwrap(), v.len()));
        check(OsStr::new("/bin/sh"), command, mine, &env, ArgLimits { per_string: 1000, total: 5000 })
    }

    #[test]
    fn finds_what_is_too_large() {
        assert_eq!(run("true", &[("S", 900), ("E", 900)], 2), Ok(()));
        // "S=" + value + NUL = 1000 fits; one more byte does not.
        assert_eq!(run("true", &[("S", 997)], 1), Ok(()));
        let named = |r: Result<(), Oversize>| match r {
            Err(Oversize::Variable { name, limit: 1000 }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(named(run("true", &[("S", 998)], 1)), "S");
        assert_eq!(named(run("true", &[("INHERITED", 1), ("S", 998)], 2)), "S");
        assert_eq!(named(run("true", &[("INHERITED", 998)], 0)), "INHERITED");
        assert_eq!(run(&"x".repeat(1000), &[], 0), Err(Oversize::Command { limit: 1000 }));
        let many = [("A", 990), ("B", 990), ("C", 990), ("D", 990), ("E", 990)];
        assert_eq!(run("true", &many, 5), Err(Oversize::Total { limit: 5000 }));
        assert_eq!(run("true", &many[..4], 4), Ok(()));
    }
}
