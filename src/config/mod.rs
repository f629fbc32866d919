//! The validated [`Config`]: parsed flags ([`ServeArgs`]) and the environment snapshot
//! ([`Env`]) turned, once, into typed settings grouped per component.
//!
//! Every option is a flag with a `SECRET_SIDECAR_*` environment variable (clap reads those;
//! see [`crate::cli`]). The OpenHands variables (`OH_SESSION_API_KEYS*`, `SESSION_API_KEY`,
//! `OH_INTERNAL_SERVER_URL`, `OH_WEBHOOKS_0_BASE_URL`, …) are read from the explicit [`Env`]
//! snapshot instead, so tests can build a `Config` without touching the process environment.
//! Components receive only their own part. A bad value is a [`ConfigError`] naming the one
//! option at fault, never repeating a key or a credential-bearing URL.
//!
//! The jobs are split by what they configure: [`env`] (the snapshot and the key rules),
//! `lookup` (origins, fetching, caching, discovery) and `exec` (commands).

mod egress;
mod env;
mod exec;
mod lookup;
mod state;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::cli::ServeArgs;
use crate::secrets::origin::OriginError;
use crate::secrets::registry::Limits;
use crate::secrets::source::ParseContext;

pub use egress::EgressConfig;
pub(crate) use env::current_uid;
pub use env::{Env, default_key_file};
pub use lookup::{DiscoveryConfig, LookupConfig};

/// Validated configuration, grouped per component.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: ListenAddr,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub registry: Limits,
    /// What descriptor parsing needs: allow-list, relative URL base, env_headers.
    pub sources: ParseContext,
    pub lookup: LookupConfig,
    pub discovery: Option<DiscoveryConfig>,
    pub exec: crate::exec::ExecConfig,
    /// The sidecar's environment, which commands inherit (after scrubbing); Debug shows names only.
    pub process_env: ProcessEnv,
    pub mask_min_length: usize,
    pub mask_rate: u32,
    /// Egress mode: bindings, the proxy's settings, the commands' CA bundle.
    pub egress: EgressConfig,
    /// `--state-file`: where descriptors are kept across restarts, if anywhere.
    pub state_file: Option<crate::persist::StateFileConfig>,
    /// The key from `--state-key-file` or `OH_SECRET_KEY`; subkeys are derived from it
    /// ([`crate::persist::StateKey::derive`], e.g. the egress placeholder key).
    pub state_key: Option<crate::persist::StateKey>,
}

/// A configuration that cannot be used. Every message starts with the one option (or
/// environment variable) at fault, `--max-timeout: must be at least 1`, and never repeats a
/// key, a key list or a URL.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A count, size or duration that must be at least 1 was 0.
    #[error("{option}: must be at least 1")]
    NotPositive { option: &'static str },
    /// A value of the wrong form; `reason` may quote it only when it cannot hold a secret.
    #[error("{option}: {reason}")]
    Invalid { option: &'static str, reason: String },
    /// A URL that does not parse (the parser's message does not quote the input).
    #[error("{option}: not a valid url: {source}")]
    Url {
        option: &'static str,
        #[source]
        source: url::ParseError,
    },
    /// A URL whose origin cannot be used for lookups.
    #[error("{option}: {source}")]
    Origin {
        option: &'static str,
        #[source]
        source: OriginError,
    },
    /// No usable shell.
    #[error("--shell: {source}")]
    Shell {
        #[source]
        source: crate::exec::ExecError,
    },
    /// No `--workdir` given and the current directory cannot be read.
    #[error("--workdir: the current directory cannot be read: {source}")]
    Workdir {
        #[source]
        source: std::io::Error,
    },
    /// A `--command-user` that names no known user or group.
    #[error("--command-user: {source}")]
    CommandUser {
        #[source]
        source: crate::exec::UserError,
    },
    /// `OH_SESSION_API_KEYS` is set but not a JSON list of strings. No cause is kept: the JSON
    /// parser's message can quote the keys.
    #[error("OH_SESSION_API_KEYS: must be a JSON list of strings")]
    SessionKeyList,
}

impl ConfigError {
    /// The flag (`--max-timeout`) or environment variable (`OH_SESSION_API_KEYS`) at fault.
    pub fn option(&self) -> &'static str {
        match self {
            Self::NotPositive { option }
            | Self::Invalid { option, .. }
            | Self::Url { option, .. }
            | Self::Origin { option, .. } => option,
            Self::Shell { .. } => "--shell",
            Self::Workdir { .. } => "--workdir",
            Self::CommandUser { .. } => "--command-user",
            Self::SessionKeyList => "OH_SESSION_API_KEYS",
        }
    }
}

/// `value`, unless it is zero: counts, sizes and durations that must be at least 1.
fn positive<T: Copy + Default + PartialEq>(option: &'static str, value: T) -> Result<T, ConfigError> {
    if value == T::default() { Err(ConfigError::NotPositive { option }) } else { Ok(value) }
}

/// Where the service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { option: "--listen", reason };
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("unix: needs a path".into()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        text.parse().map(Self::Tcp).map_err(|_| invalid(format!("{text} is not IP:PORT or unix:/path")))
    }

    /// True for loopback TCP addresses and unix sockets.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Tcp(a) => a.ip().is_loopback(),
            Self::Unix(_) => true,
        }
    }
}

/// Who may call: where accepted keys come from.
#[derive(Clone)]
pub struct AuthConfig {
    /// Keys from the environment (`OH_SESSION_API_KEYS*`, `SESSION_API_KEY`), non-empty.
    pub env_keys: Vec<SecretString>,
    /// `--api-key-file`, if given.
    pub api_key_file: Option<PathBuf>,
    /// Where a generated key goes when `--api-key-file` is not given.
    pub default_key_file: PathBuf,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("env_keys", &self.env_keys.len())
            .field("api_key_file", &self.api_key_file)
            .field("default_key_file", &self.default_key_file)
            .finish()
    }
}

/// HTTP front-door limits.
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    pub shutdown_timeout: Duration,
    /// From a request's first byte (or from accept) to its complete head.
    pub header_timeout: Duration,
    /// From a complete head to the complete body.
    pub body_timeout: Duration,
    /// From the end of a response to the first byte of the next request.
    pub idle_timeout: Duration,
}

impl Config {
    /// Validates `args` against the environment snapshot `env`.
    pub fn new(args: &ServeArgs, env: &Env) -> Result<Self, ConfigError> {
        let secs = |option, value| positive(option, value).map(Duration::from_secs);
        let listen = ListenAddr::parse(&args.listen)?;
        let auth = AuthConfig {
            env_keys: env::session_keys(env)?,
            api_key_file: args.api_key_file.clone(),
            default_key_file: default_key_file(env),
        };
        let http = HttpConfig {
            max_body_bytes: positive("--max-body-bytes", args.max_body_bytes)?,
            max_concurrent_requests: positive("--max-concurrent-requests", args.max_concurrent_requests)?,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            header_timeout: secs("--header-timeout", args.header_timeout)?,
            body_timeout: secs("--body-timeout", args.body_timeout)?,
            idle_timeout: secs("--idle-timeout", args.idle_timeout)?,
        };
        let registry = Limits {
            max_conversations: positive("--max-conversations", args.max_conversations)?,
            max_secrets_per_scope: positive("--max-secrets-per-scope", args.max_secrets_per_scope)?,
        };
        let settings = lookup::settings_origin(args, env)?;
        let lookup = lookup::lookup_config(args, env)?;
        let state_key = state::state_key(args, env)?;
        let mut egress = egress::egress_config(args, env)?;
        // With a state key, placeholders survive a restart (credential stores stay valid).
        egress.placeholder_key = state_key.as_ref().map(|k| std::sync::Arc::new(k.placeholder_key()));
        Ok(Self {
            listen,
            auth,
            http,
            registry,
            sources: lookup::sources(args, env, settings.as_ref(), lookup.fetch.max_value_bytes)?,
            discovery: lookup::discovery(args, env, settings.as_ref())?,
            lookup,
            exec: exec::exec_config(args, env)?,
            process_env: ProcessEnv(env.raw().to_vec()),
            mask_min_length: args.mask_min_length,
            mask_rate: args.mask_rate,
            egress,
            state_file: state::state_file(args),
            state_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    type Flags = &'static [&'static str];
    type Vars = &'static [(&'static str, &'static str)];

    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args =
            ServeArgs::parse_from(std::iter::once("secret-sidecar").chain(args.iter().copied())).unwrap();
        // Commands need a shell found on PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain([("PATH".into(), path)]);
        Config::new(&args, &Env::from_pairs(vars))
    }

    /// Every flag of `serve` and every OpenHands variable an error may name.
    fn option_names() -> Vec<String> {
        let mut names: Vec<String> = crate::cli::Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        names.extend(
            ["OH_SESSION_API_KEYS", "OH_WEBHOOKS_0_BASE_URL", "OH_INTERNAL_SERVER_URL", "SANDBOX_ID"]
                .map(String::from),
        );
        names
    }

    /// The option names a message mentions, as whole words.
    fn mentioned(message: &str, names: &[String]) -> Vec<String> {
        let words: Vec<&str> =
            message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).collect();
        names.iter().filter(|n| words.contains(&n.as_str())).cloned().collect()
    }

    #[test]
    fn defaults() {
        let c = config(&[], &[]).unwrap();
        assert_eq!(c.listen, ListenAddr::Tcp("127.0.0.1:8001".parse().unwrap()));
        assert!(c.auth.env_keys.is_empty());
        assert_eq!(c.http.max_body_bytes, 1 << 20);
        let secs = Duration::from_secs;
        assert_eq!(
            (c.http.header_timeout, c.http.body_timeout, c.http.idle_timeout),
            (secs(10), secs(30), secs(60))
        );
        assert!(c.auth.default_key_file.ends_with("api-key"));
        let c = config(&[], &[("XDG_RUNTIME_DIR", "/run/user/7")]).unwrap();
        assert_eq!(c.auth.default_key_file, PathBuf::from("/run/user/7/secret-sidecar/api-key"));
        assert_eq!(
            config(&["--listen", "unix:/tmp/s.sock"], &[]).unwrap().listen,
            ListenAddr::Unix("/tmp/s.sock".into())
        );
    }

    #[test]
    fn each_zero_count_names_its_own_option() {
        let names = option_names();
        for option in [
            "--max-conversations",
            "--max-secrets-per-scope",
            "--max-body-bytes",
            "--max-concurrent-requests",
            "--header-timeout",
            "--body-timeout",
            "--idle-timeout",
            "--lookup-timeout",
            "--max-value-bytes",
            "--max-upstream",
            "--max-timeout",
            "--max-concurrent-commands",
            "--max-output-bytes",
        ] {
            let e = config(&[option, "0"], &[]).unwrap_err();
            assert!(matches!(e, ConfigError::NotPositive { .. }), "{option}: {e:?}");
            assert_eq!(e.option(), option);
            assert_eq!(e.to_string(), format!("{option}: must be at least 1"));
            assert_eq!(mentioned(&e.to_string(), &names), [option]);
            config(&[option, "1"], &[]).unwrap_or_else(|e| panic!("{option} 1: {e}"));
        }
    }

    #[test]
    fn each_error_names_the_one_option_at_fault() {
        let names = option_names();
        // (flags, environment, the option at fault, another option the message may offer as
        // the remedy)
        let cases: &[(Flags, Vars, &str, Option<&str>)] = &[
            (&["--listen", "nope"], &[], "--listen", None),
            (&["--listen", "unix:"], &[], "--listen", None),
            (
                &["--settings-url", "http://app.example.dev"],
                &[],
                "--settings-url",
                Some("--allow-insecure-settings"),
            ),
            (&["--settings-url", "not a url"], &[], "--settings-url", None),
            (&[], &[("OH_WEBHOOKS_0_BASE_URL", "ftp://app.example.dev")], "OH_WEBHOOKS_0_BASE_URL", None),
            (
                &[],
                &[("OH_WEBHOOKS_0_BASE_URL", "http://app.example.dev")],
                "OH_WEBHOOKS_0_BASE_URL",
                Some("--allow-insecure-settings"),
            ),
            (&["--allow-lookup-origin", "ftp://x"], &[], "--allow-lookup-origin", None),
            (&[], &[("OH_INTERNAL_SERVER_URL", "::")], "OH_INTERNAL_SERVER_URL", None),
            (&["--allow-env-header", "A-B"], &[], "--allow-env-header", None),
            (&["--lookup-proxy", "::"], &[], "--lookup-proxy", None),
            (&["--lookup-resolve", "nope"], &[], "--lookup-resolve", None),
            (&["--shell", "no-such-shell-here"], &[], "--shell", None),
            (&["--workdir", "/no/such/dir"], &[], "--workdir", None),
            (&["--command-user", "no-such-user-here"], &[], "--command-user", None),
            (&[], &[("OH_SESSION_API_KEYS", "{")], "OH_SESSION_API_KEYS", None),
        ];
        for (args, env, option, remedy) in cases {
            let e = config(args, env).unwrap_err();
            let shown = e.to_string();
            assert_eq!(e.option(), *option, "{args:?} {env:?}: {shown}");
            assert!(shown.starts_with(&format!("{option}: ")), "{shown}");
            let mut expected = vec![option.to_string()];
            expected.extend(remedy.map(String::from));
            let mut got = mentioned(&shown, &names);
            got.sort_by_key(|n| n != option);
            assert_eq!(got, expected, "{shown}");
        }
    }

    #[test]
    fn url_errors_keep_their_cause_and_never_repeat_a_credential() {
        let cases: &[(Flags, Vars)] = &[
            (&["--lookup-proxy", "http://user:sekrit-canary@[::1"], &[]),
            (&["--settings-url", "https://user:sekrit-canary@app.example.dev"], &[]),
            (&["--allow-lookup-origin", "https://sekrit-canary@app.example.dev"], &[]),
            (&[], &[("OH_INTERNAL_SERVER_URL", "http://u:sekrit-canary@127.0.0.1:8000")]),
            (&[], &[("OH_WEBHOOKS_0_BASE_URL", "https://u:sekrit-canary@app.example.dev/api/v1/webhooks")]),
        ];
        for (args, env) in cases {
            let e = config(args, env).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("sekrit"), "{shown}");
            assert!(std::error::Error::source(&e).is_some(), "{shown}: the cause is kept");
        }
    }

    #[test]
    fn keys_from_the_environment_stay_out_of_debug() {
        let c =
            config(&[], &[("SESSION_API_KEY", "canary-key"), ("OH_SESSION_API_KEYS_0", "canary-0")]).unwrap();
        assert_eq!(c.auth.env_keys.len(), 2);
        let shown = format!("{c:?}");
        assert!(!shown.contains("canary"), "{shown}");
    }

    #[test]
    fn settings_origins() {
        let c =
            config(&[], &[("OH_WEBHOOKS_0_BASE_URL", "https://app.example.dev/api/v1/webhooks")]).unwrap();
        assert_eq!(c.sources.policy.settings()[0].to_string(), "https://app.example.dev");
        assert!(
            config(&["--settings-url", "http://app.example.dev", "--allow-insecure-settings"], &[]).is_ok()
        );
        assert!(config(&["--settings-url", "http://127.0.0.1:9"], &[]).is_ok());
    }

    #[test]
    fn discovery_and_lookup() {
        let c = config(&["--settings-url", "https://app.example.dev"], &[("SANDBOX_ID", "sb 1/x")]).unwrap();
        let d = c.discovery.unwrap();
        assert_eq!(
            d.list_url.as_str(),
            "https://app.example.dev/api/v1/sandboxes/sb%201%2Fx/settings/secrets"
        );
        assert!(config(&[], &[("SANDBOX_ID", "sb")]).unwrap().discovery.is_none(), "needs a settings origin");
        let c =
            config(&["--lookup-resolve", "meta.test=169.254.169.254"], &[("SESSION_API_KEY", "sk-canary")])
                .unwrap();
        assert_eq!(c.lookup.fetch.resolve_overrides[0].0, "meta.test");
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-canary"), "{shown}");
    }
}

/// The sidecar's environment as commands inherit it (before scrubbing). Its `Debug` shows
/// variable names only: values include session keys.
#[derive(Clone, Default)]
pub struct ProcessEnv(pub Vec<(std::ffi::OsString, std::ffi::OsString)>);

impl fmt::Debug for ProcessEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k.to_string_lossy())).finish()
    }
}
