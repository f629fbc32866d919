//! The environment snapshot ([`Env`]) and the OpenHands rules read from it: which keys callers
//! may present (`OH_SESSION_API_KEYS*`, `SESSION_API_KEY`) and where a generated key goes.
//!
//! The snapshot is taken once, before the key-bearing variables are scrubbed from the
//! process, and passed explicitly, so tests build a `Config` without touching the process
//! environment. Nothing here reads `std::env` except [`Env::from_process`]. Values are
//! secrets: `Debug` shows names only, and no error repeats a value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

use super::ConfigError;

/// A snapshot of the process environment, taken before [`crate::hardening::scrub_environ`]
/// overwrites the key-bearing variables. Lookups by name see UTF-8 variables only; commands
/// inherit every variable, bytes as they were.
#[derive(Clone, Default)]
pub struct Env {
    utf8: BTreeMap<String, String>,
    raw: Vec<(OsString, OsString)>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values include session keys.
        f.debug_set().entries(self.raw.iter().map(|(k, _)| k)).finish()
    }
}

impl Env {
    /// The current process environment.
    pub fn from_process() -> Self {
        Self::from_raw(std::env::vars_os().collect())
    }

    /// A given set of variables (tests).
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::from_raw(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    fn from_raw(raw: Vec<(OsString, OsString)>) -> Self {
        let utf8 =
            raw.iter().filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v.to_str()?.to_owned()))).collect();
        Self { utf8, raw }
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.utf8.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether `name` is set at all, even to an empty value.
    fn is_set(&self, name: &str) -> bool {
        self.utf8.contains_key(name)
    }

    /// Every variable, bytes as they were (what commands inherit, after scrubbing).
    pub(super) fn raw(&self) -> &[(OsString, OsString)] {
        &self.raw
    }
}

/// Where a generated API key is kept by default: `$XDG_RUNTIME_DIR/secret-sidecar/api-key`,
/// else `$TMPDIR/secret-sidecar-<uid>/api-key`.
pub fn default_key_file(env: &Env) -> PathBuf {
    match env.get("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("secret-sidecar").join("api-key"),
        None => PathBuf::from(env.get("TMPDIR").unwrap_or("/tmp"))
            .join(format!("secret-sidecar-{}", current_uid()))
            .join("api-key"),
    }
}

/// This process's effective user id.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The keys callers may present: `OH_SESSION_API_KEYS_0..n` (sequential), the JSON list in
/// `OH_SESSION_API_KEYS`, and `SESSION_API_KEY` — all of them, unlike the reference, which
/// ignores `SESSION_API_KEY` when the others are set. Empty keys are ignored.
pub(super) fn session_keys(env: &Env) -> Result<Vec<SecretString>, ConfigError> {
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        let name = format!("OH_SESSION_API_KEYS_{i}");
        if !env.is_set(&name) {
            break;
        }
        keys.extend(env.get(&name).map(str::to_owned));
    }
    if let Some(list) = env.get("OH_SESSION_API_KEYS") {
        // serde_json's message may quote the input (`invalid type: string "…"`): drop it.
        let parsed: Vec<String> = serde_json::from_str(list).map_err(|_| ConfigError::SessionKeyList)?;
        keys.extend(parsed);
    }
    keys.extend(env.get("SESSION_API_KEY").map(str::to_owned));
    keys.retain(|k| !k.trim().is_empty());
    keys.sort();
    keys.dedup();
    Ok(keys.into_iter().map(SecretString::from).collect())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn keys(vars: &[(&str, &str)]) -> Result<Vec<String>, ConfigError> {
        let keys = session_keys(&Env::from_pairs(vars.iter().copied()))?;
        Ok(keys.iter().map(|k| k.expose_secret().to_owned()).collect())
    }

    #[test]
    fn keys_are_the_union() {
        let got = keys(&[
            ("OH_SESSION_API_KEYS_0", "a"),
            ("OH_SESSION_API_KEYS_1", "b"),
            ("OH_SESSION_API_KEYS_3", "gap-ignored"),
            ("OH_SESSION_API_KEYS", r#"["c", ""]"#),
            ("SESSION_API_KEY", "d"),
        ])
        .unwrap();
        assert_eq!(got, ["a", "b", "c", "d"]);
        // An empty _0 still counts in the sequence.
        assert_eq!(keys(&[("OH_SESSION_API_KEYS_0", ""), ("OH_SESSION_API_KEYS_1", "b")]).unwrap(), ["b"]);
    }

    #[test]
    fn a_malformed_key_list_names_the_variable_and_never_a_key() {
        for list in [
            "[not json sekrit-canary",
            r#""sekrit-canary""#,
            r#"{"k": "sekrit-canary"}"#,
            r#"["ok", 7, "sekrit-canary"]"#,
        ] {
            let e = keys(&[("OH_SESSION_API_KEYS", list)]).unwrap_err();
            assert_eq!(e.option(), "OH_SESSION_API_KEYS", "{list}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("sekrit") && !shown.contains("not json"), "{list}: {shown}");
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let env = Env::from_pairs([("SESSION_API_KEY", "sk-canary")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("SESSION_API_KEY") && !shown.contains("canary"), "{shown}");
    }
}
