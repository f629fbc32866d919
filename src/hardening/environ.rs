//! Overwriting key-bearing variables in the process's initial environment block.
//!
//! `/proc/<pid>/environ` shows the bytes the kernel placed on the stack at `execve`, not the
//! current `environ` array, so `unsetenv` alone would leave every key readable there for the
//! process's life. [`scrub_environ`] zeroes the value bytes in place (their length stays
//! visible, not their content), then unsets the variable so nothing later reads the zeros.
//!
//! Invariant: called once, single-threaded, before anything could have called `setenv`, so
//! every `environ` entry still points into that initial block. The caller has already taken
//! its snapshot of the environment (`config::Env`).

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;

use zeroize::Zeroize;

unsafe extern "C" {
    /// The C library's environment array (`environ(7)`).
    static mut environ: *const *mut libc::c_char;
}

/// Zeroes the value of every variable whose name satisfies `holds_key`, in place, and unsets
/// it; returns the names scrubbed (for one log line).
///
/// # Safety
/// No other thread may be running, and nothing may hold a pointer into the environment.
pub unsafe fn scrub_environ(holds_key: impl Fn(&[u8]) -> bool) -> Vec<String> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    // SAFETY: single-threaded (the caller's contract); `environ` is a NULL-terminated array of
    // NUL-terminated strings owned by the C library, which we only read and overwrite within
    // each string's own length. `addr_of!` avoids a reference to the mutable static.
    unsafe {
        let mut entry = std::ptr::addr_of!(environ).read();
        while !entry.is_null() && !(*entry).is_null() {
            let text = *entry;
            let len = CStr::from_ptr(text).to_bytes().len();
            let bytes = std::slice::from_raw_parts_mut(text.cast::<u8>(), len);
            if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
                let (name, value) = bytes.split_at_mut(eq + 1);
                let name = &name[..eq];
                if holds_key(name) {
                    value.zeroize();
                    names.push(name.to_vec());
                }
            }
            entry = entry.add(1);
        }
        names.sort();
        names.dedup();
        for name in &names {
            // SAFETY: single-threaded, as above; glibc's unsetenv only moves pointers.
            std::env::remove_var(OsStr::from_bytes(name));
        }
    }
    names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect()
}
