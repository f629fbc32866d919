//! Secret values and secret names: the two types every other module uses to talk about a
//! secret.
//!
//! [`SecretValue`] owns the bytes of a value, zeroizes them on drop, prints as `[REDACTED]`
//! and has no `Display` or `Serialize`: the only way to see the bytes is
//! [`SecretValue::expose`], whose callers are few and on purpose (building a child's
//! environment, building the masker). [`SecretName`] is a validated environment-variable
//! name; names are not secret and may be logged.

use std::fmt;

use secrecy::{ExposeSecret, SecretSlice};

/// The bytes of one secret value.
///
/// Invariant: never empty (an empty value is "no value" and is represented by `None`).
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    /// Wraps `bytes`; `None` when they are a "no value" placeholder (`""`, whitespace only,
    /// or `**********`), which the reference treats as unset.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        if is_placeholder(&bytes) {
            // Drop through zeroize even though the bytes carry no value.
            drop(SecretSlice::from(bytes));
            return None;
        }
        Some(Self(SecretSlice::from(bytes)))
    }

    /// The raw bytes. Call only where the value must be used: the child environment, the
    /// masker, a constant-time comparison.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Length in bytes (lengths are never reported outside the process either, but they
    /// decide whether a value is long enough to mask).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false: an empty value is not a value.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        Self(SecretSlice::from(self.expose().to_vec()))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// True for the values the reference treats as "no value": empty, whitespace only, or the
/// redaction marker `**********`.
pub fn is_placeholder(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace) || bytes == b"**********"
}

/// Names that change how a shell, the dynamic loader or an interpreter loads and runs code; a
/// secret may not take them because exporting one would hand the secret's author control of
/// the child (`PYTHONSTARTUP=/tmp/x.py`, `NODE_OPTIONS=--require …`, `GCONV_PATH`, …).
const RESERVED_NAMES: &[&str] = &[
    // Shells and the C library.
    "PATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "PS4",
    "SHELLOPTS",
    "BASHOPTS",
    "PROMPT_COMMAND",
    "HOME",
    "SHELL",
    "ZDOTDIR",
    "_",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "MALLOC_CHECK_",
    // Interpreters and runtimes.
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONBREAKPOINT",
    "PYTHONWARNINGS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    "TCLLIBPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "GIT_EXEC_PATH",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
];
const RESERVED_PREFIXES: &[&str] =
    &["LD_", "BASH_FUNC_", "DYLD_", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "LUA_INIT_"];

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A validated secret (and environment variable) name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

/// Why a name was refused; the message names the rule, never echoes more than the name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name must match ^[A-Za-z_][A-Za-z0-9_]{{0,127}}$")]
    Invalid,
    #[error("name {0} is reserved (it changes how a shell, loader or interpreter runs code)")]
    Reserved(String),
}

impl SecretName {
    /// Validates `name` as an environment variable name that is safe to export.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if !is_env_name(name) {
            return Err(NameError::Invalid);
        }
        if RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err(NameError::Reserved(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, without a regex engine.
pub fn is_env_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_no_value() {
        for p in ["", "   ", "\t\n", "**********"] {
            assert!(SecretValue::from_bytes(p.as_bytes().to_vec()).is_none(), "{p:?}");
        }
        for v in ["x", "*********", "***********", " a "] {
            assert!(SecretValue::from_bytes(v.as_bytes().to_vec()).is_some(), "{v:?}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::from_bytes(b"hunter2-canary".to_vec()).unwrap();
        let shown = format!("{v:?} {:?}", Some(v.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn names() {
        for ok in ["A", "_X", "GITHUB_TOKEN", "a1_", &"X".repeat(128), "PATHX", "LD", "HOMEDIR"] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", &"X".repeat(129), "a.b"] {
            assert_eq!(SecretName::parse(bad), Err(NameError::Invalid), "{bad}");
        }
        for reserved in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "BASH_ENV",
            "ENV",
            "IFS",
            "PS4",
            "SHELLOPTS",
            "BASHOPTS",
            "PROMPT_COMMAND",
            "BASH_FUNC_foo%%",
            "HOME",
            "SHELL",
            "_",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "PERL5OPT",
            "RUBYOPT",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "JAVA_TOOL_OPTIONS",
            "GIT_CONFIG_KEY_0",
        ] {
            if is_env_name(reserved) {
                assert!(matches!(SecretName::parse(reserved), Err(NameError::Reserved(_))), "{reserved}");
            }
        }
    }
}
