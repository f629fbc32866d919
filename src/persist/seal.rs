//! Sealing the state file's bytes: XChaCha20-Poly1305 under a key derived from [`StateKey`],
//! a fresh random nonce per write, and the file header as associated data.
//!
//! Layout: `MAGIC` (8) · version (1) · key id (8) · nonce (24) · ciphertext and tag. The
//! header is authenticated, so a changed version, key id or nonce fails like a changed
//! ciphertext. The key id (an HKDF output of its own, not the key) lets an error say "sealed
//! with another key" rather than "damaged". This module does no I/O and knows nothing of
//! what the plaintext means.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::key::{KEY_ID_PURPOSE, SEAL_PURPOSE, StateKey};

/// Identifies a secret-sidecar state file.
const MAGIC: &[u8; 8] = b"SSCSTATE";
/// The layout version this build writes and reads.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
/// Length of the header (the associated data).
const HEADER_LEN: usize = MAGIC.len() + 1 + KEY_ID_LEN + NONCE_LEN;
/// Length of the Poly1305 tag.
const TAG_LEN: usize = 16;

/// Why sealed bytes could not be opened. Never holds plaintext or key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not a secret-sidecar state file (no header)")]
    NotStateFile,
    #[error("truncated: {0} bytes is shorter than an empty sealed state")]
    Truncated(usize),
    #[error("written in layout version {0}, which this build cannot read")]
    Version(u8),
    #[error("sealed with a different key (OH_SECRET_KEY or --state-key-file changed)")]
    WrongKey,
    #[error("damaged or altered: authentication failed")]
    Damaged,
}

/// The two subkeys sealing needs, derived once.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: [u8; KEY_ID_LEN],
}

impl Sealer {
    /// Derives the sealing key and key id from `key`.
    pub(crate) fn new(key: &StateKey) -> Self {
        let seal = key.derive(SEAL_PURPOSE);
        let cipher = XChaCha20Poly1305::new(seal.expose_secret().into());
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&key.derive(KEY_ID_PURPOSE).expose_secret()[..KEY_ID_LEN]);
        Self { cipher, key_id }
    }

    /// Seals `plaintext` with a fresh random nonce.
    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        // Encryption of an in-memory buffer with a valid key and nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &out })
            .unwrap_or_default();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens bytes written by [`Sealer::seal`] under the same key.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < MAGIC.len() || &sealed[..MAGIC.len()] != MAGIC {
            return Err(OpenError::NotStateFile);
        }
        if sealed.len() < MAGIC.len() + 1 {
            return Err(OpenError::Truncated(sealed.len()));
        }
        let version = sealed[MAGIC.len()];
        if version != VERSION {
            return Err(OpenError::Version(version));
        }
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated(sealed.len()));
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let key_id = &header[MAGIC.len() + 1..MAGIC.len() + 1 + KEY_ID_LEN];
        if key_id != self.key_id {
            return Err(OpenError::WrongKey);
        }
        let nonce = XNonce::from_slice(&header[HEADER_LEN - NONCE_LEN..]);
        self.cipher
            .decrypt(nonce, Payload { msg: body, aad: header })
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(material: &[u8]) -> Sealer {
        Sealer::new(&StateKey::from_material(material).unwrap())
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let s = sealer(b"state-key-material-0001");
        let a = s.seal(b"plaintext-canary");
        let b = s.seal(b"plaintext-canary");
        assert_ne!(a, b, "a fresh nonce per write");
        assert_eq!(&s.open(&a).unwrap()[..], b"plaintext-canary");
        assert_eq!(&s.open(&b).unwrap()[..], b"plaintext-canary");
        assert!(!a.windows(9).any(|w| w == b"plaintext"));
        assert_eq!(&s.open(&s.seal(b"")).unwrap()[..], b"");
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let s = sealer(b"state-key-material-0001");
        let sealed = s.seal(b"{\"version\":1}");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let e = s.open(&bad).unwrap_err();
            let expected = match i {
                0..8 => OpenError::NotStateFile,
                8 => OpenError::Version(VERSION ^ 1),
                9..17 => OpenError::WrongKey,
                _ => OpenError::Damaged,
            };
            assert_eq!(e, expected, "byte {i}");
        }
        for len in 0..sealed.len() {
            assert!(s.open(&sealed[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn another_key_is_named_as_such() {
        let sealed = sealer(b"state-key-material-0001").seal(b"x");
        assert_eq!(sealer(b"state-key-material-0002").open(&sealed).unwrap_err(), OpenError::WrongKey);
    }
}
