//! `secret-sidecar install DIR`: copies the running executable to `DIR/secret-sidecar`.
//!
//! The sidecar's image has no shell and no `cp`, so an init container that puts the binary
//! into a volume shared with the sandbox container has only this binary to do it with. It
//! copies `/proc/self/exe` (whatever name it was started under) into a new temporary file in
//! `DIR`, makes it mode 0755, syncs it, renames it over `DIR/secret-sidecar` and syncs `DIR`.
//!
//! Invariant: `DIR/secret-sidecar` is at every moment either absent, the previous file, or
//! the complete new one — never a partial copy (a running copy keeps running: the rename
//! replaces the name, not the file). A failed install leaves no temporary file behind.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The installed file's name.
pub const FILE_NAME: &str = "secret-sidecar";

/// Where this process's executable is read from.
const SELF_EXE: &str = "/proc/self/exe";

/// Why the install failed; names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// `DIR` does not exist or is not a directory (it is never created).
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The running executable could not be opened.
    #[error("cannot read this executable ({SELF_EXE}): {0}")]
    ReadSelf(#[source] io::Error),
    /// Writing, syncing or renaming failed; `path` is the file or directory at fault.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Installs this executable as `dir/secret-sidecar`; returns that path.
pub fn install(dir: &Path) -> Result<PathBuf, InstallError> {
    install_from(Path::new(SELF_EXE), dir)
}

/// Installs the file at `source` as `dir/secret-sidecar`.
pub fn install_from(source: &Path, dir: &Path) -> Result<PathBuf, InstallError> {
    if !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Err(InstallError::NotADirectory(dir.to_owned()));
    }
    let mut from = File::open(source).map_err(InstallError::ReadSelf)?;
    let target = dir.join(FILE_NAME);
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Write { path, source }
    };
    let written = (|| {
        // create_new: O_EXCL, which also refuses to follow a symlink planted at this name.
        let mut to = OpenOptions::new().write(true).create_new(true).mode(0o700).open(&temp)?;
        io::copy(&mut from, &mut to)?;
        // Explicitly, whatever the umask took away at creation.
        to.set_permissions(fs::Permissions::from_mode(0o755))?;
        to.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(write_err(&temp)(e));
    }
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(write_err(&target)(e));
    }
    // The rename itself is durable only once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(write_err(dir))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sidecar-install-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn copies_replaces_and_leaves_nothing_else() {
        let d = temp_dir("ok");
        let src = d.join("src");
        fs::write(&src, b"first").unwrap();
        let dest = d.join("dest");
        fs::create_dir(&dest).unwrap();
        let installed = install_from(&src, &dest).unwrap();
        assert_eq!(installed, dest.join(FILE_NAME));
        assert_eq!(fs::read(&installed).unwrap(), b"first");
        assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o755);
        fs::write(&src, b"second, longer").unwrap();
        install_from(&src, &dest).unwrap();
        assert_eq!(fs::read(&installed).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [FILE_NAME]);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn failures_name_the_path_and_clean_up() {
        let d = temp_dir("bad");
        let src = d.join("src");
        fs::write(&src, b"x").unwrap();
        let missing = d.join("missing");
        let e = install_from(&src, &missing).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: not a directory", missing.display()));
        assert!(matches!(install_from(&d.join("nope"), &d), Err(InstallError::ReadSelf(_))));
        // A directory where the file should go: the rename fails, the temporary file goes.
        let dest = d.join("dest");
        fs::create_dir_all(dest.join(FILE_NAME).join("busy")).unwrap();
        let e = install_from(&src, &dest).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("cannot write {}", dest.join(FILE_NAME).display())),
            "{e}"
        );
        let names: Vec<_> = fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [FILE_NAME]);
        let _ = fs::remove_dir_all(d);
    }
}
