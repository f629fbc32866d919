//! Per-command proxy credentials.
//!
//! A command that holds placeholders gets one [`Credential`]; its token goes into the
//! userinfo of the proxy URL the command sees, and the proxy substitutes only the grants
//! issued with it. Dropping the credential (the command ended) revokes it, so a daemon the
//! command left behind, or another conversation, cannot spend its placeholders.
//!
//! Tokens are looked up by their SHA-256 digest: the map never holds a token, and a lookup
//! costs the same whatever prefix of a live token is presented.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::binding::Binding;

/// One substitution a command may have made: `placeholder` becomes `value` in requests to
/// the hosts and places of `binding`.
pub struct Grant {
    /// The secret's name, for audit lines (never a value).
    pub name: String,
    pub placeholder: SecretString,
    pub value: SecretString,
    pub binding: Arc<Binding>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

type Digest32 = [u8; 32];

/// The live credentials. Shared by the command pipeline (which issues them) and the proxy
/// (which looks them up).
#[derive(Default)]
pub struct Grants {
    live: Mutex<HashMap<Digest32, Arc<[Grant]>>>,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants").field("live", &self.live_count()).finish()
    }
}

impl Grants {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Issues a credential for `grants`; it is revoked when the returned value is dropped.
    pub fn issue(self: &Arc<Self>, grants: Vec<Grant>) -> Credential {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = SecretString::from(hex::encode(bytes));
        let digest = digest(token.expose_secret().as_bytes());
        self.lock().insert(digest, grants.into());
        Credential { token, digest, grants: Arc::clone(self) }
    }

    /// The grants of a live credential, given the token presented by a client.
    pub fn lookup(&self, token: &[u8]) -> Option<Arc<[Grant]>> {
        self.lock().get(&digest(token)).cloned()
    }

    /// How many credentials are live (for tests and metrics).
    pub fn live_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest32, Arc<[Grant]>>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn digest(token: &[u8]) -> Digest32 {
    Sha256::digest(token).into()
}

/// A live proxy credential. The proxy URL's userinfo is `cmd:<token>`.
pub struct Credential {
    token: SecretString,
    digest: Digest32,
    grants: Arc<Grants>,
}

impl Credential {
    /// The user name every credential uses in the proxy URL.
    pub const USER: &'static str = "cmd";

    /// The token (the proxy URL's password).
    pub fn token(&self) -> &SecretString {
        &self.token
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        self.grants.lock().remove(&self.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_on_drop() {
        let grants = Grants::new();
        let grant = Grant {
            name: "GITHUB_TOKEN".into(),
            placeholder: SecretString::from("p".repeat(20)),
            value: SecretString::from("v".repeat(20)),
            binding: Arc::new(Binding::default()),
        };
        let cred = grants.issue(vec![grant]);
        let token = cred.token().expose_secret().as_bytes().to_vec();
        assert_eq!(grants.lookup(&token).map(|g| g.len()), Some(1));
        assert!(grants.lookup(b"nope").is_none());
        drop(cred);
        assert!(grants.lookup(&token).is_none());
        assert_eq!(grants.live_count(), 0);
    }
}
