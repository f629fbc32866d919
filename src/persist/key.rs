//! [`StateKey`]: the sidecar's long-lived key, from `OH_SECRET_KEY` or `--state-key-file`,
//! and the subkeys derived from it with HKDF-SHA256, one per purpose.
//!
//! The input key material is never used directly: it is extracted once into a pseudo-random
//! key, and every user (the state file's seal, egress placeholders) expands its own subkey
//! with a distinct purpose label, so no two uses ever share a key. It is never the session
//! key, which the app server rotates on resume: a file sealed with it could not be reopened.
//!
//! Invariant: no key byte is ever formatted; `Debug` prints `[REDACTED]`.

use std::fmt;
use std::sync::Arc;

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// Fewest bytes of input key material accepted.
pub const MIN_KEY_BYTES: usize = 16;

/// The HKDF salt: fixed, so the same input key always gives the same subkeys.
const SALT: &[u8] = b"secret-sidecar/state-key/v1";

/// The purpose label of the state file's sealing key.
pub(crate) const SEAL_PURPOSE: &[u8] = b"secret-sidecar/state-file/seal/v1";
/// The purpose label of the state file's key identifier (tells a wrong key from a damaged file).
pub(crate) const KEY_ID_PURPOSE: &[u8] = b"secret-sidecar/state-file/key-id/v1";
/// The purpose label of the key egress placeholders are derived with.
pub const PLACEHOLDER_PURPOSE: &[u8] = b"secret-sidecar/egress-placeholder/v1";

/// Why input key material was refused. Never holds a key byte.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key must be at least {MIN_KEY_BYTES} bytes")]
    TooShort,
}

/// The extracted state key: cheap to clone, redacted in `Debug`.
#[derive(Clone)]
pub struct StateKey {
    prk: Arc<SecretBox<[u8; 32]>>,
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey([REDACTED])")
    }
}

impl StateKey {
    /// Extracts a key from input key material (surrounding whitespace trimmed, at least
    /// [`MIN_KEY_BYTES`] bytes left).
    pub fn from_material(material: &[u8]) -> Result<Self, KeyError> {
        let material = material.trim_ascii();
        if material.is_empty() {
            return Err(KeyError::Empty);
        }
        if material.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        let (prk, _) = Hkdf::<Sha256>::extract(Some(SALT), material);
        let mut bytes = Box::new([0u8; 32]);
        bytes.copy_from_slice(&prk);
        Ok(Self { prk: Arc::new(SecretBox::new(bytes)) })
    }

    /// The 32-byte subkey for `purpose`: equal purposes give equal keys, distinct purposes
    /// independent ones. Use a label of your own (`secret-sidecar/<part>/<use>/v1`).
    pub fn derive(&self, purpose: &[u8]) -> SecretBox<[u8; 32]> {
        let mut okm = Box::new([0u8; 32]);
        // The PRK is a full SHA-256 output and 32 bytes is far below HKDF's 8160-byte limit,
        // so neither call can fail.
        Hkdf::<Sha256>::from_prk(self.prk.expose_secret())
            .expect("a 32-byte PRK is valid")
            .expand(purpose, okm.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        SecretBox::new(okm)
    }

    /// The key egress placeholders are derived with ([`PLACEHOLDER_PURPOSE`]).
    pub fn placeholder_key(&self) -> SecretBox<[u8; 32]> {
        self.derive(PLACEHOLDER_PURPOSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_keys_are_refused() {
        assert_eq!(StateKey::from_material(b"").unwrap_err(), KeyError::Empty);
        assert_eq!(StateKey::from_material(b" \n\t").unwrap_err(), KeyError::Empty);
        assert_eq!(StateKey::from_material(b"fifteen-bytes!!").unwrap_err(), KeyError::TooShort);
        assert_eq!(StateKey::from_material(b"  fifteen-bytes!!\n").unwrap_err(), KeyError::TooShort);
        assert!(StateKey::from_material(b"sixteen-bytes!!!").is_ok());
    }

    #[test]
    fn subkeys_are_stable_per_purpose_and_distinct_across_purposes() {
        let a = StateKey::from_material(b"key-material-canary-0001").unwrap();
        let same = StateKey::from_material(b"key-material-canary-0001\n").unwrap();
        let other = StateKey::from_material(b"key-material-canary-0002").unwrap();
        let seal = a.derive(SEAL_PURPOSE);
        assert_eq!(seal.expose_secret(), same.derive(SEAL_PURPOSE).expose_secret(), "trimmed");
        assert_ne!(seal.expose_secret(), a.derive(KEY_ID_PURPOSE).expose_secret());
        assert_ne!(seal.expose_secret(), a.placeholder_key().expose_secret());
        assert_ne!(seal.expose_secret(), other.derive(SEAL_PURPOSE).expose_secret());
        assert_ne!(&seal.expose_secret()[..], &b"key-material-canary-0001"[..24]);
        assert_eq!(format!("{a:?}"), "StateKey([REDACTED])");
    }
}
