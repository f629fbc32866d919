//! The command line: clap's types for `serve` (the default), `exec`, `health` and `install`,
//! with their `SECRET_SIDECAR_*` environment variables, help texts and defaults.
//!
//! This module only describes what can be typed; it checks nothing beyond what clap checks
//! (types, one of `exec -c` and `exec -- ARGV`). Turning [`ServeArgs`] into a validated
//! configuration is [`crate::config`]'s job; running `exec` is [`crate::client`]'s, `health`
//! [`crate::probe`]'s and `install` [`crate::install`]'s.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

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
    /// Run a command through a running sidecar: `exec [OPTIONS] -- ARGV…` or
    /// `exec [OPTIONS] -c 'SHELL TEXT'`.
    Exec(ExecArgs),
    /// Exit 0 when a running sidecar's `/ready` answers 200 within 2 seconds, 1 otherwise
    /// (for container health checks and probes in images without curl).
    Health(HealthArgs),
    /// Copy this executable to DIR/secret-sidecar (mode 0755, atomically), e.g. from the
    /// sidecar's shell-less image into a volume shared with the sandbox container.
    Install(InstallArgs),
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
    /// $TMPDIR/secret-sidecar-UID/api-key].
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

    /// Proxy for lookups (environment proxy variables are always ignored); may carry
    /// credentials, so its environment value is not shown in help.
    #[arg(long, env = "SECRET_SIDECAR_LOOKUP_PROXY", hide_env_values = true)]
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

    /// Lock the sidecar's memory into RAM (`mlockall`), so secret values are never written to
    /// swap; start-up fails with a clear error when the sandbox does not permit it.
    #[arg(long, env = "SECRET_SIDECAR_MLOCK")]
    pub mlock: bool,

    /// Egress mode: commands get placeholders for bound secrets and the egress proxy puts the
    /// real values into requests to the bound hosts only [default: on; it acts only on bound
    /// secrets].
    #[arg(long, env = "SECRET_SIDECAR_EGRESS", value_enum)]
    pub egress: Option<EgressSwitch>,

    /// Address of the egress proxy (`IP:PORT`).
    #[arg(long, env = "SECRET_SIDECAR_EGRESS_LISTEN", default_value = "127.0.0.1:8002")]
    pub egress_listen: String,

    /// Bind a secret by name for descriptors that carry no binding:
    /// `NAME=HOST[,HOST…][;header=H][;query=Q]`; repeatable (several in the environment
    /// variable are separated by spaces).
    #[arg(long = "egress-bind", env = "SECRET_SIDECAR_EGRESS_BIND", value_delimiter = ' ')]
    pub egress_bind: Vec<String>,

    /// Turn on the built-in bindings for well-known names (GITHUB_TOKEN, OPENAI_API_KEY, …;
    /// see the README); `--egress-bind` wins for a name it binds.
    #[arg(long, env = "SECRET_SIDECAR_EGRESS_DEFAULTS")]
    pub egress_defaults: bool,

    /// PEM file with extra CA certificates the egress proxy trusts upstream (besides the
    /// compiled-in web roots; the system store is never used).
    #[arg(long, env = "SECRET_SIDECAR_EGRESS_EXTRA_CA_FILE")]
    pub egress_extra_ca_file: Option<PathBuf>,

    /// Resolve HOST to IP for the egress proxy's upstream connections (`HOST=IP`); repeatable.
    #[arg(long = "egress-resolve", env = "SECRET_SIDECAR_EGRESS_RESOLVE", value_delimiter = ',')]
    pub egress_resolve: Vec<String>,

    /// Proxy the egress proxy connects through (http://, may carry credentials, so its
    /// environment value is not shown in help).
    #[arg(long, env = "SECRET_SIDECAR_EGRESS_UPSTREAM_PROXY", hide_env_values = true)]
    pub egress_upstream_proxy: Option<String>,

    /// Where the CA bundle for commands is written at start (the bundle they would otherwise
    /// use plus the egress CA) [default: egress-ca-bundle.pem beside the generated api-key file].
    #[arg(long, env = "SECRET_SIDECAR_EGRESS_CA_BUNDLE")]
    pub egress_ca_bundle: Option<PathBuf>,

    /// Keep registered descriptors (static values and lookup headers included, never looked-up
    /// values) in this file, sealed, so they survive a restart; every update is written before
    /// it is acknowledged. Needs OH_SECRET_KEY or --state-key-file.
    #[arg(long, env = "SECRET_SIDECAR_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// File holding the key the state file is sealed with (at least 16 bytes, surrounding
    /// whitespace ignored) [default: OH_SECRET_KEY]. Never the session key, which rotates.
    #[arg(long, env = "SECRET_SIDECAR_STATE_KEY_FILE", hide_env_values = true)]
    pub state_key_file: Option<PathBuf>,

    /// When the state file cannot be opened with the key or is damaged, move it aside
    /// (PATH.bad-<unix seconds>) and start empty instead of refusing to start.
    #[arg(long, env = "SECRET_SIDECAR_STATE_RESET_ON_ERROR")]
    pub state_reset_on_error: bool,
}

/// `--egress on|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EgressSwitch {
    On,
    Off,
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

/// Options of `exec`. The command is either an argv (`-- ARGV…`, every word shell-quoted, so
/// it runs exactly those words) or shell text (`-c TEXT`, sent as is); exactly one is given.
#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["shell_text", "argv"])))]
pub struct ExecArgs {
    /// Base URL of the sidecar.
    #[arg(long, env = "SECRET_SIDECAR_URL", default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// Run in this conversation's scope (sandbox-wide otherwise).
    #[arg(long)]
    pub conversation: Option<String>,
    /// Seconds the command may run.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// File with the API key [default: SESSION_API_KEY, OH_SESSION_API_KEYS_0, else the
    /// generated key file].
    #[arg(long, env = "SECRET_SIDECAR_API_KEY_FILE", hide_env_values = true)]
    pub api_key_file: Option<PathBuf>,
    /// Shell text to run as is, e.g. `-c 'make && make test'`.
    #[arg(short = 'c', value_name = "SHELL_TEXT")]
    pub shell_text: Option<String>,
    /// The command and its arguments, each kept as one word (never shell code).
    #[arg(last = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}

/// Options of `health`.
#[derive(Clone, Debug, Args)]
pub struct HealthArgs {
    /// Base URL of the sidecar (`http://HOST:PORT`, or `unix:/path/to.sock`) [default: from
    /// the listen address, a wildcard one probed on loopback].
    #[arg(long)]
    pub url: Option<String>,
    /// The sidecar's listen address, from which the default URL is derived.
    #[arg(long, env = "SECRET_SIDECAR_LISTEN", default_value = "127.0.0.1:8001")]
    pub listen: String,
}

/// Options of `install`.
#[derive(Clone, Debug, Args)]
pub struct InstallArgs {
    /// Existing directory to install `secret-sidecar` into.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}
