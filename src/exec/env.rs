//! The child's environment, computed without side effects.
//!
//! Owns the rule of contract §5: the sidecar's environment (or its pristine subset) minus the
//! variables that carry keys, then `AI_AGENT`, then the request's `env`, then the secrets. It
//! does not validate request names (the caller did) and does not touch the process.
//!
//! Invariant: no variable the sidecar uses for its own keys, and no inherited variable whose
//! value contains a key the sidecar holds or has held, reaches a command. The work is split so
//! the static part ([`base_env`]) runs once at start and the per-request part ([`child_env`])
//! only borrows: it copies no value, secret or not.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use secrecy::ExposeSecret;

use super::ExecRequest;

/// Variables kept with `--pristine-env`, besides every `LC_*`.
const PRISTINE: &[&str] = &["PATH", "HOME", "USER", "LANG", "TERM", "TZ", "TMPDIR", "SHELL"];

/// Variables that hold the sidecar's keys: never passed on, and scrubbed from the sidecar's
/// own environment block at start.
const KEY_VARIABLES: &[&str] = &["SESSION_API_KEY", "OH_SECRET_KEY", "OPENHANDS_API_KEY"];
const KEY_PREFIXES: &[&str] = &["OH_SESSION_API_KEYS"];
/// The sidecar's own configuration, never passed on either. These variables carry settings
/// and paths, not keys, so they are not scrubbed; a future one that holds a secret belongs in
/// [`KEY_VARIABLES`].
const CONFIG_PREFIX: &str = "SECRET_SIDECAR_";

/// Keys shorter than this are not looked for in values: a short one would match by accident.
pub const MIN_SCRUB_LEN: usize = 8;

/// Set when inherited `AI_AGENT` is unset or blank *(ref)*.
const AI_AGENT: (&str, &str) = ("AI_AGENT", "openhands");

/// The static part: `process_env` (or its pristine subset) minus the forbidden variables and
/// every `strip_env` name. Order is kept; later duplicates win in [`child_env`].
pub(super) fn base_env(
    process_env: Vec<(OsString, OsString)>,
    pristine: bool,
    strip_env: &[String],
) -> Vec<(OsString, OsString)> {
    process_env
        .into_iter()
        .filter(|(name, _)| !pristine || is_pristine(name))
        .filter(|(name, _)| !is_forbidden(name) && !strip_env.iter().any(|s| name.as_bytes() == s.as_bytes()))
        .collect()
}

/// The per-request part: `base` minus `req.scrub_names` and every variable whose value contains
/// one of `req.scrub_values` (those of at least [`MIN_SCRUB_LEN`] bytes), then `AI_AGENT` if
/// unset or blank, then `req.env`, then `req.secrets`; a later entry replaces an earlier one.
pub(super) fn child_env<'a>(
    base: &'a [(OsString, OsString)],
    req: &'a ExecRequest,
) -> BTreeMap<&'a OsStr, &'a OsStr> {
    let keys: Vec<&[u8]> = req
        .scrub_values
        .iter()
        .map(|k| k.expose_secret().as_bytes())
        .filter(|k| k.len() >= MIN_SCRUB_LEN)
        .collect();
    let mut env: BTreeMap<&OsStr, &OsStr> = base
        .iter()
        .filter(|(name, _)| !req.scrub_names.iter().any(|s| name.as_bytes() == s.as_bytes()))
        .filter(|(_, value)| !keys.iter().any(|k| contains(value.as_bytes(), k)))
        .map(|(n, v)| (n.as_os_str(), v.as_os_str()))
        .collect();
    let name = OsStr::new(AI_AGENT.0);
    if env.get(name).is_none_or(|v| v.as_bytes().iter().all(u8::is_ascii_whitespace)) {
        env.insert(name, OsStr::new(AI_AGENT.1));
    }
    for (name, value) in &req.env {
        env.insert(OsStr::new(name), OsStr::new(value));
    }
    for (name, value) in &req.secrets {
        env.insert(OsStr::new(name), OsStr::from_bytes(value.expose()));
    }
    env
}

fn is_pristine(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"LC_") || PRISTINE.iter().any(|p| name == p.as_bytes())
}

/// Whether the variable `name` holds one of the sidecar's keys (`SESSION_API_KEY`,
/// `OH_SESSION_API_KEYS*`, `OH_SECRET_KEY`, `OPENHANDS_API_KEY`).
pub fn holds_key(name: &[u8]) -> bool {
    KEY_VARIABLES.iter().any(|f| name == f.as_bytes())
        || KEY_PREFIXES.iter().any(|p| name.starts_with(p.as_bytes()))
}

fn is_forbidden(name: &OsStr) -> bool {
    holds_key(name.as_bytes()) || name.as_bytes().starts_with(CONFIG_PREFIX.as_bytes())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::secrets::value::SecretValue;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(n, v)| (OsString::from(n), OsString::from(v))).collect()
    }

    fn req() -> ExecRequest {
        ExecRequest {
            command: String::new(),
            cwd: None,
            timeout: Duration::from_secs(1),
            env: Vec::new(),
            secrets: Vec::new(),
            scrub_values: Vec::new(),
            scrub_names: Vec::new(),
        }
    }

    fn get<'a>(env: &BTreeMap<&'a OsStr, &'a OsStr>, name: &str) -> Option<&'a str> {
        env.get(OsStr::new(name)).map(|v| v.to_str().expect("utf-8"))
    }

    fn process_env() -> Vec<(OsString, OsString)> {
        os(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/agent"),
            ("LC_ALL", "C.UTF-8"),
            ("EDITOR", "vi"),
            ("SESSION_API_KEY", "session-key-1"),
            ("OH_SESSION_API_KEYS_0", "session-key-2"),
            ("OH_SESSION_API_KEYS", "[\"session-key-3\"]"),
            ("OH_SECRET_KEY", "state-key"),
            ("OPENHANDS_API_KEY", "oh-key"),
            ("SECRET_SIDECAR_API_KEY_FILE", "/run/key"),
            ("SECRET_SIDECAR_LISTEN", "127.0.0.1:8001"),
            ("STRIP_ME", "x"),
        ])
    }

    #[test]
    fn forbidden_and_stripped_names_are_absent() {
        let base = base_env(process_env(), false, &["STRIP_ME".to_owned()]);
        let r = req();
        let env = child_env(&base, &r);
        for gone in [
            "SESSION_API_KEY",
            "OH_SESSION_API_KEYS_0",
            "OH_SESSION_API_KEYS",
            "OH_SECRET_KEY",
            "OPENHANDS_API_KEY",
            "SECRET_SIDECAR_API_KEY_FILE",
            "SECRET_SIDECAR_LISTEN",
            "STRIP_ME",
        ] {
            assert_eq!(get(&env, gone), None, "{gone}");
        }
        assert_eq!(get(&env, "EDITOR"), Some("vi"));
        assert_eq!(get(&env, "PATH"), Some("/usr/bin:/bin"));
    }

    #[test]
    fn scrub_names_and_values_holding_a_key_are_dropped() {
        let base = base_env(
            os(&[
                ("GH_HEADER_KEY", "whatever"),
                ("COPIED", "prefix-held-key-123456-suffix"),
                ("SHORT_MATCH", "has abc in it"),
                ("KEPT", "plain"),
            ]),
            false,
            &[],
        );
        let mut r = req();
        r.scrub_names = vec!["GH_HEADER_KEY".into()];
        r.scrub_values = vec![SecretString::from("held-key-123456"), SecretString::from("abc")];
        let env = child_env(&base, &r);
        assert_eq!(get(&env, "GH_HEADER_KEY"), None);
        assert_eq!(get(&env, "COPIED"), None);
        // Keys under 8 bytes are not searched for.
        assert_eq!(get(&env, "SHORT_MATCH"), Some("has abc in it"));
        assert_eq!(get(&env, "KEPT"), Some("plain"));
    }

    #[test]
    fn ai_agent_set_when_unset_or_blank_and_kept_otherwise() {
        for (inherited, want) in [
            (None, "openhands"),
            (Some(""), "openhands"),
            (Some("  "), "openhands"),
            (Some("custom"), "custom"),
        ] {
            let mut pe = os(&[("PATH", "/bin")]);
            if let Some(v) = inherited {
                pe.push(("AI_AGENT".into(), v.into()));
            }
            let base = base_env(pe, false, &[]);
            let r = req();
            assert_eq!(get(&child_env(&base, &r), "AI_AGENT"), Some(want), "{inherited:?}");
        }
    }

    #[test]
    fn request_env_then_secrets_override_in_order() {
        let base = base_env(os(&[("A", "inherited"), ("B", "inherited"), ("C", "inherited")]), false, &[]);
        let mut r = req();
        r.env = vec![
            ("B".into(), "request".into()),
            ("C".into(), "request".into()),
            ("AI_AGENT".into(), "req".into()),
        ];
        r.secrets = vec![("C".into(), SecretValue::from_bytes(b"secret".to_vec()).expect("value"))];
        let env = child_env(&base, &r);
        assert_eq!(get(&env, "A"), Some("inherited"));
        assert_eq!(get(&env, "B"), Some("request"));
        assert_eq!(get(&env, "C"), Some("secret"));
        assert_eq!(get(&env, "AI_AGENT"), Some("req"));
    }

    #[test]
    fn pristine_keeps_only_the_short_list() {
        let mut pe = process_env();
        pe.extend(os(&[("LC_CTYPE", "C"), ("TERM", "xterm"), ("TMPDIR", "/tmp"), ("LD_PRELOAD", "/x.so")]));
        let base = base_env(pe, true, &["HOME".to_owned()]);
        let names: Vec<&str> = base.iter().map(|(n, _)| n.to_str().expect("utf-8")).collect();
        assert_eq!(names, ["PATH", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR"]);
        let r = req();
        assert_eq!(get(&child_env(&base, &r), "AI_AGENT"), Some("openhands"));
    }

    #[test]
    fn later_duplicates_win_and_non_utf8_survives() {
        use std::os::unix::ffi::OsStringExt;
        let mut pe = os(&[("X", "first"), ("X", "second")]);
        pe.push((OsString::from("RAW"), OsString::from_vec(vec![0xff, 0xfe])));
        let base = base_env(pe, false, &[]);
        let r = req();
        let env = child_env(&base, &r);
        assert_eq!(get(&env, "X"), Some("second"));
        assert_eq!(env.get(OsStr::new("RAW")).map(|v| v.as_bytes()), Some(&[0xff, 0xfe][..]));
    }
}
