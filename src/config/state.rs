//! `--state-file`, `--state-key-file`, `--state-reset-on-error` and `OH_SECRET_KEY`: where
//! descriptors are kept and the key they are sealed with.
//!
//! `--state-key-file` wins over `OH_SECRET_KEY`. A key file that cannot be read or holds
//! fewer than 16 bytes is always an error; a short `OH_SECRET_KEY` is one only when a state
//! file needs it (the variable has other users). `--state-file` without a key is an error:
//! descriptors are never written unsealed, and never sealed with the session key. Messages
//! never repeat a key.

use zeroize::Zeroizing;

use super::{ConfigError, Env};
use crate::cli::ServeArgs;
use crate::persist::{StateFileConfig, StateKey};

/// `--state-file` and `--state-reset-on-error`.
pub(super) fn state_file(args: &ServeArgs) -> Option<StateFileConfig> {
    args.state_file.clone().map(|path| StateFileConfig { path, reset_on_error: args.state_reset_on_error })
}

/// The state key, from `--state-key-file` or else `OH_SECRET_KEY`.
pub(super) fn state_key(args: &ServeArgs, env: &Env) -> Result<Option<StateKey>, ConfigError> {
    if let Some(path) = &args.state_key_file {
        let invalid = |reason: String| ConfigError::Invalid { option: "--state-key-file", reason };
        let material = std::fs::read(path)
            .map(Zeroizing::new)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        return StateKey::from_material(&material)
            .map(Some)
            .map_err(|e| invalid(format!("{}: {e}", path.display())));
    }
    let from_env = env.get("OH_SECRET_KEY").map(|k| StateKey::from_material(k.as_bytes()));
    match (from_env, &args.state_file) {
        (Some(Ok(key)), _) => Ok(Some(key)),
        (Some(Err(e)), Some(_)) => {
            Err(ConfigError::Invalid { option: "OH_SECRET_KEY", reason: e.to_string() })
        }
        (Some(Err(_)), None) | (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::Invalid {
            option: "--state-file",
            reason: "needs a key to seal it with: set OH_SECRET_KEY or --state-key-file".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::persist::key::PLACEHOLDER_PURPOSE;

    fn key(args: &[&str], env: &[(&str, &str)]) -> Result<Option<StateKey>, ConfigError> {
        let args =
            ServeArgs::parse_from(std::iter::once("secret-sidecar").chain(args.iter().copied())).unwrap();
        state_key(&args, &Env::from_pairs(env.iter().copied()))
    }

    fn key_file(tag: &str, contents: &str) -> String {
        let path = std::env::temp_dir().join(format!("ss-state-key-{tag}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn a_state_file_needs_a_key() {
        let e = key(&["--state-file", "/tmp/x"], &[]).unwrap_err();
        assert_eq!(e.option(), "--state-file");
        assert!(e.to_string().contains("OH_SECRET_KEY") && e.to_string().contains("--state-key-file"));
        assert!(key(&[], &[]).unwrap().is_none());
        let e = key(&["--state-file", "/tmp/x"], &[("OH_SECRET_KEY", "short-canary")]).unwrap_err();
        assert_eq!(e.option(), "OH_SECRET_KEY");
        assert!(!format!("{e} {e:?}").contains("canary"));
        assert!(key(&[], &[("OH_SECRET_KEY", "short-canary")]).unwrap().is_none(), "unused, so not an error");
        assert!(
            key(&["--state-file", "/tmp/x"], &[("OH_SECRET_KEY", "a-long-enough-key-canary")])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn the_key_file_wins_and_is_checked() {
        let good = key_file("good", "  file-key-material-canary\n");
        let from_file = key(&["--state-key-file", &good], &[("OH_SECRET_KEY", "env-key-material-canary")])
            .unwrap()
            .unwrap();
        let direct = StateKey::from_material(b"file-key-material-canary").unwrap();
        assert_eq!(
            from_file.derive(PLACEHOLDER_PURPOSE).expose_secret(),
            direct.derive(PLACEHOLDER_PURPOSE).expose_secret()
        );
        for (tag, contents) in [("empty", ""), ("blank", " \n"), ("short", "short-canary\n")] {
            let path = key_file(tag, contents);
            let e = key(&["--state-key-file", &path], &[]).unwrap_err();
            assert_eq!(e.option(), "--state-key-file", "{tag}");
            assert!(!format!("{e} {e:?}").contains("canary"), "{tag}");
            std::fs::remove_file(path).unwrap();
        }
        let e = key(&["--state-key-file", "/no/such/key"], &[]).unwrap_err();
        assert!(e.to_string().starts_with("--state-key-file: cannot read /no/such/key"), "{e}");
        std::fs::remove_file(good).unwrap();
    }
}
