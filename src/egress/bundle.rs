//! The CA bundle commands that hold placeholders trust: the bundle they would otherwise use
//! (`SSL_CERT_FILE`, else the system bundle) followed by the egress CA, so intercepted
//! connections to bound hosts verify and every other host still does.
//!
//! Written once, when egress mode first needs it (`super::runtime`), atomically (a temporary file renamed into place), mode 0644: it
//! holds only public certificates, and a command run as another user must read it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Why the bundle could not be written (paths are configuration, not secrets).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the egress CA bundle {path}")]
pub struct BundleError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

/// Writes `inherited` (if it exists and is not `path` itself) and then `ca_pem` to `path`.
pub fn write_bundle(path: &Path, inherited: Option<&Path>, ca_pem: Option<&str>) -> Result<(), BundleError> {
    let err = |source| BundleError { path: path.display().to_string(), source };
    let mut text = Vec::new();
    if let Some(from) = inherited.filter(|p| *p != path) {
        match fs::read(from) {
            Ok(bytes) => text.extend_from_slice(&bytes),
            // A missing bundle is nothing to copy; the command would not have had one either.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
    }
    if let Some(pem) = ca_pem {
        text.extend_from_slice(b"# secret-sidecar egress CA\n");
        text.extend_from_slice(pem.as_bytes());
        if !pem.ends_with('\n') {
            text.push(b'\n');
        }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    // A name of its own per write: two writers (two services in one test process) must not
    // rename each other's file away.
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        // No fsync: the rename keeps readers from seeing half a file, and the bundle is
        // written again at every start, so one lost to a crash costs nothing. Syncing it took
        // a few milliseconds of every start-up.
        f.write_all(&text)?;
        // The mode given at creation is reduced by the umask; the bundle must be readable.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn inherited_then_ca_mode_0644() {
        let dir = std::env::temp_dir().join(format!("sidecar-bundle-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let inherited = dir.join("system.pem");
        fs::write(&inherited, "SYSTEM").unwrap();
        let out = dir.join("sub/bundle.pem");
        write_bundle(&out, Some(&inherited), Some("CA-PEM\n")).unwrap();
        let text = fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("SYSTEM\n") && text.ends_with("CA-PEM\n"), "{text}");
        assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644);
        // Rewriting over itself never reads itself; a missing inherited bundle is skipped.
        write_bundle(&out, Some(&out), Some("CA-PEM")).unwrap();
        write_bundle(&out, Some(&dir.join("missing")), Some("CA-PEM")).unwrap();
        assert!(fs::read_to_string(&out).unwrap().ends_with("CA-PEM\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
