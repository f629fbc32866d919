//! Command line, environment and the validated [`Config`] built from them.
//!
//! Every option is a flag with a `SECRET_SIDECAR_*` environment variable (clap reads those).
//! The OpenHands variables (`OH_SESSION_API_KEYS*`, `SESSION_API_KEY`,
//! `OH_INTERNAL_SERVER_URL`, `OH_WEBHOOKS_0_BASE_URL`, …) are read from an explicit [`Env`]
//! snapshot instead, so tests can build a `Config` without touching the process
//! environment. Parsing happens once; components receive only their own part.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

use crate::secrets::origin::{Origin, OriginPolicy};
use crate::secrets::registry::Limits;
use crate::secrets::source::ParseContext;

/// `secret-sidecar`: resolves secret references on demand, runs commands with them and masks
/// them in output.
#[derive(Debug, Parser)]
#[command(name = "secret-sidecar", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(ServeArgs),
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Options of the service. Durations are whole seconds, sizes bytes.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: `IP:PORT`, or `unix:/path/to.sock` (mode 0600).
    #[arg(long, env = "SECRET_SIDECAR_LISTEN", default_value = "127.0.0.1:8001")]
    pub listen: String,

    /// File holding an accepted API key; if no key is configured anywhere, a new one is
    /// generated into it [default: $XDG_RUNTIME_DIR/secret-sidecar/api-key, else
    /// $TMPDIR/secret-sidecar-<uid>/api-key].
    #[arg(long, env = "SECRET_SIDECAR_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Most conversation scopes held at once.
    #[arg(long, env = "SECRET_SIDECAR_MAX_CONVERSATIONS", default_value_t = 1024)]
    pub max_conversations: usize,

    /// Most secrets in one scope.
    #[arg(long, env = "SECRET_SIDECAR_MAX_SECRETS_PER_SCOPE", default_value_t = 1024)]
    pub max_secrets_per_scope: usize,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SECRET_SIDECAR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most requests handled at once; more get 429.
    #[arg(long, env = "SECRET_SIDECAR_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,

    /// Settings API origin (receives the session key); default: the origin of
    /// OH_WEBHOOKS_0_BASE_URL.
    #[arg(long, env = "SECRET_SIDECAR_SETTINGS_URL")]
    pub settings_url: Option<String>,

    /// Allow plain http to a settings origin that is not loopback.
    #[arg(long, env = "SECRET_SIDECAR_ALLOW_INSECURE_SETTINGS")]
    pub allow_insecure_settings: bool,

    /// Another origin lookups may go to (never given the session key); repeatable.
    #[arg(long = "allow-lookup-origin", env = "SECRET_SIDECAR_ALLOW_LOOKUP_ORIGIN", value_delimiter = ',')]
    pub allow_lookup_origins: Vec<String>,

    /// Environment variable a LookupSecret's `env_headers` may read; repeatable.
    #[arg(
        long = "allow-env-header",
        env = "SECRET_SIDECAR_ALLOW_ENV_HEADER",
        value_delimiter = ',',
        default_values_t = ["SESSION_API_KEY".to_owned(), "OH_SESSION_API_KEYS_0".to_owned()]
    )]
    pub allow_env_headers: Vec<String>,

    /// Values shorter than this many bytes (and derived patterns shorter than it) are not
    /// masked.
    #[arg(long, env = "SECRET_SIDECAR_MASK_MIN_LENGTH", default_value_t = 4)]
    pub mask_min_length: usize,

    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    #[arg(long, env = "SECRET_SIDECAR_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,

    /// Log filter (tracing directives, e.g. `info` or `secret_sidecar=debug`).
    #[arg(long, env = "SECRET_SIDECAR_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "SECRET_SIDECAR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// Parses serve options from an argument list (first item is the program name).
    pub fn parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::try_parse_from(args).map(|o| o.serve)
    }
}

/// A snapshot of the process environment (UTF-8 variables only).
#[derive(Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values include session keys.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Env {
    /// The current process environment.
    pub fn from_process() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// A given set of variables (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Where the service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ConfigError::Invalid("--listen unix: needs a path".into()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        text.parse()
            .map(Self::Tcp)
            .map_err(|_| ConfigError::Invalid(format!("--listen {text}: expected IP:PORT or unix:/path")))
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
}

/// Validated configuration, grouped per component.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: ListenAddr,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub registry: Limits,
    /// What descriptor parsing needs: allow-list, relative URL base, env_headers.
    pub sources: ParseContext,
    pub mask_min_length: usize,
}

/// A configuration that cannot be used; the message names the option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Validates `args` against the environment snapshot `env`.
    pub fn new(args: &ServeArgs, env: &Env) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let listen = ListenAddr::parse(&args.listen)?;
        let env_keys = session_keys(env)?;
        let uid = current_uid();
        let default_key_file = match env.get("XDG_RUNTIME_DIR") {
            Some(dir) => PathBuf::from(dir).join("secret-sidecar").join("api-key"),
            None => PathBuf::from(env.get("TMPDIR").unwrap_or("/tmp"))
                .join(format!("secret-sidecar-{uid}"))
                .join("api-key"),
        };
        if args.max_conversations == 0 || args.max_secrets_per_scope == 0 {
            return Err(invalid("--max-conversations and --max-secrets-per-scope must be at least 1".into()));
        }
        if args.max_body_bytes == 0 || args.max_concurrent_requests == 0 {
            return Err(invalid("--max-body-bytes and --max-concurrent-requests must be at least 1".into()));
        }

        let settings_raw = match &args.settings_url {
            Some(u) => Some(("--settings-url", u.clone())),
            None => env.get("OH_WEBHOOKS_0_BASE_URL").map(|u| ("OH_WEBHOOKS_0_BASE_URL", u.to_owned())),
        };
        let mut settings = Vec::new();
        if let Some((what, raw)) = settings_raw {
            let origin = Origin::parse(&raw).map_err(|e| invalid(format!("{what}: {e}")))?;
            if origin.scheme() == "http" && !origin.is_loopback() && !args.allow_insecure_settings {
                return Err(invalid(format!(
                    "{what}: plain http to a non-loopback settings origin needs --allow-insecure-settings"
                )));
            }
            settings.push(origin);
        }
        let mut others = Vec::new();
        for raw in &args.allow_lookup_origins {
            others.push(Origin::parse(raw).map_err(|e| invalid(format!("--allow-lookup-origin: {e}")))?);
        }
        let internal_base = match env.get("OH_INTERNAL_SERVER_URL") {
            Some(raw) => {
                let url = Url::parse(raw).map_err(|e| invalid(format!("OH_INTERNAL_SERVER_URL: {e}")))?;
                others.push(Origin::of(&url).map_err(|e| invalid(format!("OH_INTERNAL_SERVER_URL: {e}")))?);
                Some(url)
            }
            None => None,
        };
        for var in &args.allow_env_headers {
            if !crate::secrets::value::is_env_name(var) {
                return Err(invalid(format!("--allow-env-header {var}: not an environment variable name")));
            }
        }
        Ok(Self {
            listen,
            auth: AuthConfig { env_keys, api_key_file: args.api_key_file.clone(), default_key_file },
            http: HttpConfig {
                max_body_bytes: args.max_body_bytes,
                max_concurrent_requests: args.max_concurrent_requests,
                shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            },
            registry: Limits {
                max_conversations: args.max_conversations,
                max_secrets_per_scope: args.max_secrets_per_scope,
            },
            sources: ParseContext {
                policy: OriginPolicy::new(settings, others),
                internal_base,
                allowed_env_headers: args.allow_env_headers.clone(),
            },
            mask_min_length: args.mask_min_length,
        })
    }
}

pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The keys callers may present: `OH_SESSION_API_KEYS_0..n` (sequential), the JSON list in
/// `OH_SESSION_API_KEYS`, and `SESSION_API_KEY` — all of them, unlike the reference, which
/// ignores `SESSION_API_KEY` when the others are set. Empty keys are ignored.
fn session_keys(env: &Env) -> Result<Vec<SecretString>, ConfigError> {
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        match env.0.get(&format!("OH_SESSION_API_KEYS_{i}")) {
            Some(k) => keys.push(k.clone()),
            None => break,
        }
    }
    if let Some(list) = env.get("OH_SESSION_API_KEYS") {
        let parsed: Vec<String> = serde_json::from_str(list)
            .map_err(|_| ConfigError::Invalid("OH_SESSION_API_KEYS must be a JSON list of strings".into()))?;
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

    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args =
            ServeArgs::parse_from(std::iter::once("secret-sidecar").chain(args.iter().copied())).unwrap();
        Config::new(&args, &Env::from_pairs(env.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = config(&[], &[]).unwrap();
        assert_eq!(c.listen, ListenAddr::Tcp("127.0.0.1:8001".parse().unwrap()));
        assert!(c.auth.env_keys.is_empty());
        assert_eq!(c.http.max_body_bytes, 1 << 20);
        assert!(c.auth.default_key_file.ends_with("api-key"));
        let c = config(&[], &[("XDG_RUNTIME_DIR", "/run/user/7")]).unwrap();
        assert_eq!(c.auth.default_key_file, PathBuf::from("/run/user/7/secret-sidecar/api-key"));
        assert_eq!(
            config(&["--listen", "unix:/tmp/s.sock"], &[]).unwrap().listen,
            ListenAddr::Unix("/tmp/s.sock".into())
        );
        assert!(config(&["--listen", "nope"], &[]).is_err());
    }

    #[test]
    fn keys_are_the_union() {
        let c = config(
            &[],
            &[
                ("OH_SESSION_API_KEYS_0", "a"),
                ("OH_SESSION_API_KEYS_1", "b"),
                ("OH_SESSION_API_KEYS_3", "gap-ignored"),
                ("OH_SESSION_API_KEYS", r#"["c", ""]"#),
                ("SESSION_API_KEY", "d"),
            ],
        )
        .unwrap();
        let keys: Vec<_> = c.auth.env_keys.iter().map(|k| k.expose_secret().to_owned()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        let err = config(&[], &[("OH_SESSION_API_KEYS", "[not json")]).unwrap_err().to_string();
        assert!(!err.contains("not json"), "{err}");
        assert!(
            format!("{:?}", config(&[], &[("SESSION_API_KEY", "canary-key")]).unwrap())
                .find("canary")
                .is_none()
        );
    }

    #[test]
    fn settings_origins() {
        let c =
            config(&[], &[("OH_WEBHOOKS_0_BASE_URL", "https://app.example.dev/api/v1/webhooks")]).unwrap();
        assert_eq!(c.sources.policy.settings()[0].to_string(), "https://app.example.dev");
        assert!(config(&["--settings-url", "http://app.example.dev"], &[]).is_err());
        assert!(
            config(&["--settings-url", "http://app.example.dev", "--allow-insecure-settings"], &[]).is_ok()
        );
        assert!(config(&["--settings-url", "http://127.0.0.1:9"], &[]).is_ok());
        assert!(config(&["--allow-lookup-origin", "ftp://x"], &[]).is_err());
        assert!(config(&["--allow-env-header", "A-B"], &[]).is_err());
    }
}
