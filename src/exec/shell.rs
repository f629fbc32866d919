//! Which shell runs commands: resolved once, at start, to an absolute path.
//!
//! Owns the lookup rule only (`--shell` if given, else `bash` on `PATH`, else `sh`, else
//! none); it does not spawn anything. Invariant: what it returns is an absolute path to an
//! executable regular file, so a later change of `PATH` (or of the child's `PATH`) cannot swap
//! the shell. Finding no shell is not an error here: a standalone image has none, and the
//! sidecar still serves everything but commands there (the executor refuses those).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ExecError;

/// Resolves the shell that runs commands.
///
/// `override_` (the `--shell` flag) wins: an absolute path must name an executable file; a bare
/// name (no `/`) is looked up on `path_var`; anything else (a relative path) is refused.
/// Without it: `bash` if found on `path_var`, else `sh`, else `None` (no shell: commands
/// cannot run, the rest of the service can). Empty `PATH` entries (the current directory) are
/// ignored. An explicit `--shell` that cannot be found stays an error.
pub fn resolve_shell(
    override_: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<Option<PathBuf>, ExecError> {
    match override_ {
        Some(p) if p.is_absolute() => {
            if is_executable(p) {
                Ok(Some(p.to_path_buf()))
            } else {
                Err(ExecError::ShellNotFound(p.display().to_string()))
            }
        }
        Some(p) if p.components().count() == 1 && !p.as_os_str().is_empty() => {
            find_on_path(p.as_os_str(), path_var)
                .map(Some)
                .ok_or_else(|| ExecError::ShellNotFound(p.display().to_string()))
        }
        Some(_) => Err(ExecError::ShellNotAbsolute),
        None => {
            Ok(find_on_path(OsStr::new("bash"), path_var)
                .or_else(|| find_on_path(OsStr::new("sh"), path_var)))
        }
    }
}

/// The first executable `name` in the absolute directories of `path_var`.
fn find_on_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_exe(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sidecar-shell-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn prefers_bash_then_sh() {
        let only_sh = temp_dir("sh");
        let with_bash = temp_dir("bash");
        let sh = write_exe(&only_sh, "sh", 0o755);
        let bash = write_exe(&with_bash, "bash", 0o755);
        let path = std::env::join_paths([&only_sh, &with_bash]).expect("join");
        assert_eq!(resolve_shell(None, Some(&path)).expect("bash"), Some(bash));
        assert_eq!(resolve_shell(None, Some(only_sh.as_os_str())).expect("sh"), Some(sh));
        let _ = std::fs::remove_dir_all(only_sh);
        let _ = std::fs::remove_dir_all(with_bash);
    }

    #[test]
    fn skips_non_executable_and_relative_entries() {
        let d = temp_dir("noexec");
        write_exe(&d, "bash", 0o644);
        let path = std::env::join_paths([PathBuf::from("relative"), d.clone()]).expect("join");
        assert!(matches!(resolve_shell(None, Some(&path)), Ok(None)));
        assert!(matches!(resolve_shell(None, None), Ok(None)));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn override_must_be_absolute_or_found() {
        let d = temp_dir("override");
        let zsh = write_exe(&d, "zsh", 0o755);
        assert_eq!(resolve_shell(Some(&zsh), None).expect("absolute"), Some(zsh.clone()));
        assert_eq!(resolve_shell(Some(Path::new("zsh")), Some(d.as_os_str())).expect("found"), Some(zsh));
        assert!(matches!(
            resolve_shell(Some(Path::new("fish")), Some(d.as_os_str())),
            Err(ExecError::ShellNotFound(_))
        ));
        assert!(matches!(resolve_shell(Some(&d.join("fish")), None), Err(ExecError::ShellNotFound(_))));
        // Named explicitly, a shell that is missing stays an error even with an empty PATH.
        assert!(matches!(resolve_shell(Some(Path::new("sh")), None), Err(ExecError::ShellNotFound(_))));
        assert!(matches!(resolve_shell(Some(Path::new("./zsh")), None), Err(ExecError::ShellNotAbsolute)));
        assert!(matches!(resolve_shell(Some(Path::new("bin/zsh")), None), Err(ExecError::ShellNotAbsolute)));
        // A directory is not a shell.
        assert!(matches!(resolve_shell(Some(&d), None), Err(ExecError::ShellNotFound(_))));
        let _ = std::fs::remove_dir_all(d);
    }
}
