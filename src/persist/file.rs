//! The state file on disk: read it (refusing a symlink or anything but a regular file),
//! replace it atomically, and move a bad one aside.
//!
//! A replacement is a temporary file in the same directory (created exclusively, mode 0600,
//! never following a link), written and fsynced, renamed over the file, and then the
//! directory is fsynced so the rename itself survives a crash. A reader therefore sees the
//! old file or the new one, never a mix. This module moves bytes; it does not know they are
//! sealed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest state file read (a registry at its bounds is far smaller).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Why the state file could not be read or written. Names the path; never holds content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: is a symbolic link; refusing to follow it")]
    Symlink { path: PathBuf },
    #[error("{path}: is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path}: is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> FileError + use<> {
    let path = path.to_owned();
    move |source| FileError::Io { path, action, source }
}

/// Reads the file at `path`; `None` when there is none. A symlink at `path` is refused.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FileError::Symlink { path: path.to_owned() });
        }
        Err(e) => return Err(io_err(path, "cannot open")(e)),
    };
    let meta = file.metadata().map_err(io_err(path, "cannot stat"))?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular { path: path.to_owned() });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { path: path.to_owned() });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.mode() & 0o777),
            "state file is readable by others; the next write makes it 0600"
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_err(path, "cannot read"))?;
    Ok(Some(bytes))
}

/// Refuses a symlink or a non-regular file at `path` (nothing there is fine).
pub(crate) fn check_target(path: &Path) -> Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "cannot stat")(e)),
        Ok(m) if m.file_type().is_symlink() => Err(FileError::Symlink { path: path.to_owned() }),
        Ok(m) if !m.file_type().is_file() => Err(FileError::NotRegular { path: path.to_owned() }),
        Ok(_) => Ok(()),
    }
}

/// The directory `path` lives in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces the file at `path` with `bytes`, atomically and durably (see the module docs).
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err(&tmp, "cannot create"))?;
        file.write_all(bytes).map_err(io_err(&tmp, "cannot write"))?;
        file.sync_all().map_err(io_err(&tmp, "cannot fsync"))?;
        std::fs::rename(&tmp, path).map_err(io_err(path, "cannot rename the new file into place"))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "cannot fsync the directory"))
}

/// Renames the file at `path` to `PATH.bad-<unix seconds>` (with a counter if that exists)
/// and returns the new path.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, FileError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let base = format!("{}.bad-{secs}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while std::fs::symlink_metadata(&target).is_ok() {
        target = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(io_err(path, "cannot move the file aside"))?;
    let _ = File::open(parent(path)).and_then(|d| d.sync_all());
    Ok(target)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ss-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replace_is_0600_and_leaves_no_temporary_file() {
        let d = dir("replace");
        let path = d.join("state");
        assert!(read(&path).unwrap().is_none());
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let aside = move_aside(&path).unwrap();
        assert!(aside.to_string_lossy().contains("state.bad-"));
        assert!(read(&path).unwrap().is_none());
        replace(&path, b"three").unwrap();
        let again = move_aside(&path).unwrap();
        assert_ne!(aside, again);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_symlink_is_refused() {
        let d = dir("symlink");
        let real = d.join("real");
        std::fs::write(&real, b"x").unwrap();
        let link = d.join("state");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(read(&link), Err(FileError::Symlink { .. })));
        assert!(matches!(check_target(&link), Err(FileError::Symlink { .. })));
        assert!(matches!(read(&d), Err(FileError::NotRegular { .. })));
        std::fs::remove_dir_all(d).unwrap();
    }
}
