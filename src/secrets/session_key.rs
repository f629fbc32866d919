//! The session key this sandbox was given by the app server, which lookups to a settings
//! origin carry as `X-Session-API-Key`.
//!
//! Sources, first match wins: `--session-key-file` (re-read when a settings origin answers
//! 401, so a rotated key is picked up without a restart), else `OH_SESSION_API_KEYS_0`, else
//! `SESSION_API_KEY`. Every key ever held is remembered, so the command runner can scrub
//! variables that contain one from a child's environment.

use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;

use secrecy::{ExposeSecret, SecretString};

/// Where the key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// Read from this file (trailing newline stripped); re-read on demand.
    File(PathBuf),
    /// A fixed key from the environment, or none.
    Fixed(Option<SecretString>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Fixed(k) => f.debug_tuple("Fixed").field(&k.as_ref().map(|_| "[REDACTED]")).finish(),
        }
    }
}

/// The current session key and every key held before it.
pub struct SessionKey {
    source: KeySource,
    // std lock: read and replaced in a few instructions, never held across `.await`.
    current: RwLock<Option<SecretString>>,
    history: RwLock<Vec<SecretString>>,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey").field("source", &self.source).finish_non_exhaustive()
    }
}

impl SessionKey {
    /// Loads the key from `source` (a missing or unreadable file means "no key yet", logged).
    pub fn new(source: KeySource) -> Self {
        let key = Self { source, current: RwLock::new(None), history: RwLock::new(Vec::new()) };
        key.reload();
        key
    }

    /// The key to send now, if any.
    pub fn current(&self) -> Option<SecretString> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the file source; true when the key changed. A fixed key never changes.
    pub fn reload(&self) -> bool {
        let fresh = match &self.source {
            KeySource::Fixed(k) => k.clone(),
            KeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let key = text.trim_end_matches(['\r', '\n']);
                    (!key.trim().is_empty()).then(|| SecretString::from(key.to_owned()))
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot read the session key file: {e}");
                    None
                }
            },
        };
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let same = match (&*current, &fresh) {
            (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
            (None, None) => true,
            _ => false,
        };
        if same {
            return false;
        }
        if let Some(k) = &fresh {
            self.history.write().unwrap_or_else(|e| e.into_inner()).push(k.clone());
        }
        let first = current.is_none() && fresh.is_some();
        *current = fresh;
        if !first {
            tracing::info!("session key changed");
        }
        true
    }

    /// Every key held since start, current included.
    pub fn held(&self) -> Vec<SecretString> {
        self.history.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_reloads_and_remembers() {
        let path = std::env::temp_dir().join(format!("ss-sk-{}", std::process::id()));
        std::fs::write(&path, "k1\n").unwrap();
        let key = SessionKey::new(KeySource::File(path.clone()));
        assert_eq!(key.current().unwrap().expose_secret(), "k1");
        assert!(!key.reload(), "unchanged file");
        std::fs::write(&path, "k2").unwrap();
        assert!(key.reload());
        assert_eq!(key.current().unwrap().expose_secret(), "k2");
        assert_eq!(key.held().len(), 2);
        assert!(!format!("{key:?}").contains("k2"));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn fixed_source() {
        let key = SessionKey::new(KeySource::Fixed(Some("fixed-canary".to_owned().into())));
        assert!(!key.reload());
        assert_eq!(key.current().unwrap().expose_secret(), "fixed-canary");
        assert!(!format!("{key:?}").contains("canary"));
        assert!(SessionKey::new(KeySource::Fixed(None)).current().is_none());
    }
}
