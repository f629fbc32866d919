//! Command line, environment and the validated [`Config`] built from them.
//!
//! Every option is a flag with a `SECRET_SIDECAR_*` environment variable (clap reads those).
//! The OpenHands variables (`OH_SESSION_API_KEYS*`, `SESSION_API_KEY`,
//! `OH_INTERNAL_SERVER_URL`, `OH_WEBHOOKS_0_BASE_URL`, …) are read from an explicit [`Env`]
//! snapshot instead, so tests can build a `Config` without touching the process
//! environment. Parsing happens once; components receive only their own part.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

use crate::secrets::fetch::FetchConfig;
use crate::secrets::origin::{Origin, OriginPolicy};
use crate::secrets::registry::Limits;
use crate::secrets::resolver::CacheConfig;
use crate::secrets::session_key::KeySource;
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
    Serve(Box<ServeArgs>),
    /// Run a command through a running sidecar: `exec [--url URL] [--conversation ID] -- CMD ARGS…`.
    Exec(crate::client::ExecArgs),
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

    /// Most requests handled at once (counted once their body is read); more get 429.
    #[arg(long, env = "SECRET_SIDECAR_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,

    /// Seconds a client has to send a request's head, from its first byte (or from connecting);
    /// then the connection is closed.
    #[arg(long, env = "SECRET_SIDECAR_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,

    /// Seconds a client has to send a request's body once its head is in; then 408 and the
    /// connection is closed.
    #[arg(long, env = "SECRET_SIDECAR_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,

    /// Seconds a kept-alive connection may wait for its next request; then it is closed.
    #[arg(long, env = "SECRET_SIDECAR_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,

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

    /// File holding the session key for settings lookups (re-read when the settings API
    /// answers 401); default: OH_SESSION_API_KEYS_0, else SESSION_API_KEY.
    #[arg(long, env = "SECRET_SIDECAR_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,

    /// Proxy for lookups (environment proxy variables are always ignored).
    #[arg(long, env = "SECRET_SIDECAR_LOOKUP_PROXY")]
    pub lookup_proxy: Option<String>,

    /// PEM file with extra CA certificates for lookups.
    #[arg(long, env = "SECRET_SIDECAR_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// Resolve HOST to IP for lookups, like curl --resolve (`HOST=IP`); repeatable.
    #[arg(long = "lookup-resolve", env = "SECRET_SIDECAR_LOOKUP_RESOLVE", value_delimiter = ',')]
    pub lookup_resolve: Vec<String>,

    /// Deadline for one lookup, retries included, in seconds.
    #[arg(long, env = "SECRET_SIDECAR_LOOKUP_TIMEOUT", default_value_t = 10)]
    pub lookup_timeout: u64,

    /// Largest accepted secret value (a lookup body or a static value), in bytes.
    #[arg(long, env = "SECRET_SIDECAR_MAX_VALUE_BYTES", default_value_t = 65536)]
    pub max_value_bytes: usize,

    /// Seconds a resolved value is cached (per-descriptor `ttl_seconds` overrides; ±10 % jitter).
    #[arg(long, env = "SECRET_SIDECAR_CACHE_TTL", default_value_t = 300)]
    pub cache_ttl: u64,

    /// Most cached values.
    #[arg(long, env = "SECRET_SIDECAR_CACHE_CAPACITY", default_value_t = 10_000)]
    pub cache_capacity: u64,

    /// Most lookups in flight at once.
    #[arg(long, env = "SECRET_SIDECAR_MAX_UPSTREAM", default_value_t = 16)]
    pub max_upstream: usize,

    /// Seconds after the last good fetch during which a value may be served stale when a
    /// refresh fails with a connect error, timeout, 5xx or 429.
    #[arg(long, env = "SECRET_SIDECAR_MAX_STALE", default_value_t = 3600)]
    pub max_stale: u64,

    /// Sandbox id for secret discovery (default: SANDBOX_ID); needs a settings origin.
    #[arg(long, env = "SECRET_SIDECAR_SANDBOX_ID")]
    pub sandbox_id: Option<String>,

    /// Seconds between discovery runs (±10 % jitter).
    #[arg(long, env = "SECRET_SIDECAR_DISCOVERY_INTERVAL", default_value_t = 300)]
    pub discovery_interval: u64,

    /// Shell that runs commands (absolute or on PATH) [default: bash if on PATH, else sh].
    #[arg(long, env = "SECRET_SIDECAR_SHELL")]
    pub shell: Option<PathBuf>,

    /// Default working directory of commands [default: the sidecar's working directory].
    #[arg(long, env = "SECRET_SIDECAR_WORKDIR")]
    pub workdir: Option<PathBuf>,

    /// Largest `timeout` a command may ask for, in seconds.
    #[arg(long, env = "SECRET_SIDECAR_MAX_TIMEOUT", default_value_t = 3600)]
    pub max_timeout: u64,

    /// Output kept per stream of a command, in bytes (the first 64 KiB and the rest from the end).
    #[arg(long, env = "SECRET_SIDECAR_MAX_OUTPUT_BYTES", default_value_t = 1024 * 1024)]
    pub max_output_bytes: usize,

    /// Give commands only PATH HOME USER LANG LC_* TERM TZ TMPDIR SHELL from the sidecar's environment.
    #[arg(long, env = "SECRET_SIDECAR_PRISTINE_ENV")]
    pub pristine_env: bool,

    /// Another variable to remove from commands' environment; repeatable.
    #[arg(long = "strip-env", env = "SECRET_SIDECAR_STRIP_ENV", value_delimiter = ',')]
    pub strip_env: Vec<String>,

    /// Run commands as this user: `USER[:GROUP]`, names from /etc/passwd and /etc/group or
    /// numeric ids (the strongest setup: commands can then neither read the sidecar's process
    /// nor its key files). Needs a sidecar running as root.
    #[arg(long, env = "SECRET_SIDECAR_COMMAND_USER")]
    pub command_user: Option<String>,

    /// Most commands running at once; more get 429.
    #[arg(long, env = "SECRET_SIDECAR_MAX_CONCURRENT_COMMANDS", default_value_t = 16)]
    pub max_concurrent_commands: usize,

    /// Refuse (424) to export a value too short to be masked, instead of exporting it unmasked.
    #[arg(long, env = "SECRET_SIDECAR_REFUSE_UNMASKABLE")]
    pub refuse_unmaskable: bool,

    /// Requests per second the mask routes accept (bursts of twice that).
    #[arg(long, env = "SECRET_SIDECAR_MASK_RATE", default_value_t = 20)]
    pub mask_rate: u32,

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
    /// From a request's first byte (or from accept) to its complete head.
    pub header_timeout: Duration,
    /// From a complete head to the complete body.
    pub body_timeout: Duration,
    /// From the end of a response to the first byte of the next request.
    pub idle_timeout: Duration,
}

/// How lookups are made and cached.
#[derive(Clone)]
pub struct LookupConfig {
    pub fetch: FetchConfig,
    pub cache: CacheConfig,
    pub session_key: KeySource,
    /// Values of the `--allow-env-header` variables, captured at start.
    pub env_headers: HashMap<String, SecretString>,
}

impl fmt::Debug for LookupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupConfig")
            .field("fetch", &self.fetch)
            .field("cache", &self.cache)
            .field("session_key", &self.session_key)
            .field("env_headers", &self.env_headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Periodic discovery of the user's secrets from the settings API.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// `{settings}/api/v1/sandboxes/{sid}/settings/secrets`.
    pub list_url: Url,
    pub interval: Duration,
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
    pub exec: ExecSettings,
    pub mask_min_length: usize,
    pub mask_rate: u32,
}

/// How commands run.
#[derive(Clone)]
pub struct ExecSettings {
    pub runner: crate::exec::ExecConfig,
    pub max_timeout: Duration,
    pub max_concurrent: usize,
    pub refuse_unmaskable: bool,
    /// The sidecar's environment, which commands inherit (after scrubbing).
    pub process_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
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
        let default_key_file = default_key_file(env);
        if args.max_conversations == 0 || args.max_secrets_per_scope == 0 {
            return Err(invalid("--max-conversations and --max-secrets-per-scope must be at least 1".into()));
        }
        if args.max_body_bytes == 0 || args.max_concurrent_requests == 0 {
            return Err(invalid("--max-body-bytes and --max-concurrent-requests must be at least 1".into()));
        }
        if args.header_timeout == 0 || args.body_timeout == 0 || args.idle_timeout == 0 {
            return Err(invalid(
                "--header-timeout, --body-timeout and --idle-timeout must be at least 1".into(),
            ));
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
        let lookup = lookup_config(args, env)?;
        let discovery = match (args.sandbox_id.as_deref().or(env.get("SANDBOX_ID")), settings.first()) {
            (Some(sid), Some(origin)) => {
                let mut list_url =
                    Url::parse(&origin.to_string()).map_err(|e| invalid(format!("settings origin: {e}")))?;
                list_url
                    .path_segments_mut()
                    .map_err(|()| invalid("settings origin cannot take a path".into()))?
                    .extend(["api", "v1", "sandboxes", sid, "settings", "secrets"]);
                Some(DiscoveryConfig {
                    list_url,
                    interval: Duration::from_secs(args.discovery_interval.max(1)),
                })
            }
            _ => None,
        };
        Ok(Self {
            listen,
            auth: AuthConfig { env_keys, api_key_file: args.api_key_file.clone(), default_key_file },
            http: HttpConfig {
                max_body_bytes: args.max_body_bytes,
                max_concurrent_requests: args.max_concurrent_requests,
                shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
                header_timeout: Duration::from_secs(args.header_timeout),
                body_timeout: Duration::from_secs(args.body_timeout),
                idle_timeout: Duration::from_secs(args.idle_timeout),
            },
            registry: Limits {
                max_conversations: args.max_conversations,
                max_secrets_per_scope: args.max_secrets_per_scope,
            },
            sources: ParseContext {
                policy: OriginPolicy::new(settings, others),
                internal_base,
                allowed_env_headers: args.allow_env_headers.clone(),
                max_value_bytes: args.max_value_bytes,
            },
            lookup,
            discovery,
            exec: exec_settings(args, env)?,
            mask_min_length: args.mask_min_length,
            mask_rate: args.mask_rate,
        })
    }
}

impl fmt::Debug for ExecSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Variable names only: the environment holds session keys.
        let names: Vec<_> = self.process_env.iter().map(|(k, _)| k.to_string_lossy()).collect();
        f.debug_struct("ExecSettings")
            .field("runner", &self.runner)
            .field("max_timeout", &self.max_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("refuse_unmaskable", &self.refuse_unmaskable)
            .field("process_env", &names)
            .finish()
    }
}

fn exec_settings(args: &ServeArgs, env: &Env) -> Result<ExecSettings, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    let path = env.get("PATH").map(std::ffi::OsStr::new);
    let shell = crate::exec::resolve_shell(args.shell.as_deref(), path)
        .map_err(|e| invalid(format!("--shell: {e}")))?;
    let workdir = match &args.workdir {
        Some(w) => w.clone(),
        None => std::env::current_dir().map_err(|e| invalid(format!("--workdir: {e}")))?,
    };
    if !workdir.is_dir() {
        return Err(invalid(format!("--workdir {}: not a directory", workdir.display())));
    }
    if args.max_timeout == 0 || args.max_concurrent_commands == 0 || args.max_output_bytes == 0 {
        return Err(invalid(
            "--max-timeout, --max-concurrent-commands and --max-output-bytes must be at least 1".into(),
        ));
    }
    let process_env = env.raw.clone();
    let user = match &args.command_user {
        Some(spec) => Some(command_user(spec)?),
        None => None,
    };
    Ok(ExecSettings {
        runner: crate::exec::ExecConfig {
            shell,
            workdir,
            max_output_bytes: args.max_output_bytes,
            pristine_env: args.pristine_env,
            strip_env: args.strip_env.clone(),
            user,
        },
        max_timeout: Duration::from_secs(args.max_timeout),
        max_concurrent: args.max_concurrent_commands,
        refuse_unmaskable: args.refuse_unmaskable,
        process_env,
    })
}

/// `--command-user`, checked against this process: switching ids needs root.
fn command_user(spec: &str) -> Result<crate::exec::CommandUser, ConfigError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let user = crate::exec::CommandUser::parse(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| ConfigError::Invalid(format!("--command-user {spec}: {e}")))?;
    if current_uid() != 0 && user.uid != current_uid() {
        return Err(ConfigError::Invalid(format!(
            "--command-user {spec}: running commands as another user needs the sidecar to run as root"
        )));
    }
    Ok(user)
}

fn lookup_config(args: &ServeArgs, env: &Env) -> Result<LookupConfig, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    let proxy = match &args.lookup_proxy {
        Some(p) => Some(Url::parse(p).map_err(|e| invalid(format!("--lookup-proxy: {e}")))?),
        None => None,
    };
    let mut resolve_overrides = Vec::new();
    for item in &args.lookup_resolve {
        let (host, ip) = item
            .split_once('=')
            .and_then(|(h, ip)| Some((h.to_ascii_lowercase(), ip.parse::<IpAddr>().ok()?)))
            .ok_or_else(|| invalid(format!("--lookup-resolve {item}: expected HOST=IP")))?;
        resolve_overrides.push((host, ip));
    }
    if args.lookup_timeout == 0 || args.max_value_bytes == 0 || args.max_upstream == 0 {
        return Err(invalid(
            "--lookup-timeout, --max-value-bytes and --max-upstream must be at least 1".into(),
        ));
    }
    let session_key = match &args.session_key_file {
        Some(path) => KeySource::File(path.clone()),
        None => KeySource::Fixed(
            env.get("OH_SESSION_API_KEYS_0")
                .or_else(|| env.get("SESSION_API_KEY"))
                .map(|k| SecretString::from(k.to_owned())),
        ),
    };
    let env_headers = args
        .allow_env_headers
        .iter()
        .filter_map(|var| Some((var.clone(), SecretString::from(env.get(var)?.to_owned()))))
        .collect();
    Ok(LookupConfig {
        fetch: FetchConfig {
            timeout: Duration::from_secs(args.lookup_timeout),
            max_value_bytes: args.max_value_bytes,
            proxy,
            extra_ca_file: args.extra_ca_file.clone(),
            resolve_overrides,
            ..FetchConfig::default()
        },
        cache: CacheConfig {
            ttl: Duration::from_secs(args.cache_ttl),
            capacity: args.cache_capacity,
            max_upstream: args.max_upstream,
            max_stale: Duration::from_secs(args.max_stale),
        },
        session_key,
        env_headers,
    })
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
        let name = format!("OH_SESSION_API_KEYS_{i}");
        if !env.is_set(&name) {
            break;
        }
        keys.extend(env.get(&name).map(str::to_owned));
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
        // Commands need a shell found on PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain([("PATH".into(), path)]);
        Config::new(&args, &Env::from_pairs(vars))
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
        assert!(config(&["--header-timeout", "0"], &[]).is_err());
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
        assert!(config(&["--lookup-resolve", "nope"], &[]).is_err());
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-canary"), "{shown}");
    }
}
