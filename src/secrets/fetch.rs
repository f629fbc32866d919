//! [`Fetcher`]: performs one lookup of a LookupSecret, "GET this URL; the body is the value",
//! with the transport rules of the contract (§4): no redirects, no environment proxies, no
//! way to skip TLS verification, the connect-time address guard, one deadline per lookup,
//! bounded retries with jittered backoff and `Retry-After`, a body cap.
//!
//! It does not decide *whether* a lookup may happen or which headers it carries (origin
//! policy, session key, `env_headers`), and it keeps nothing between lookups except pooled
//! connections: caching, single-flight and stale-if-error belong to the resolver above it.
//!
//! Invariant: no URL, header value or body byte ever reaches an error message or a log line;
//! errors and logs name the target (a secret, or the secret list), the origin
//! (scheme://host:port), a status, a cause.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use rand::Rng;
use tokio::time::Instant;
use url::Url;
use zeroize::Zeroizing;

use super::guard::{AddressGuard, BlockedAddress};
use super::origin::Origin;
use super::target::Target;
use super::value::SecretValue;

/// How lookups are made. Built from the `--lookup-*` options.
#[derive(Clone)]
pub struct FetchConfig {
    /// One deadline per lookup, every attempt and wait included.
    pub timeout: Duration,
    /// Largest accepted value; a longer body is an error, never truncated.
    pub max_value_bytes: usize,
    /// An explicit proxy for every lookup; proxy environment variables are always ignored.
    pub proxy: Option<Url>,
    /// A PEM file whose certificates are trusted in addition to the built-in roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Host → IP answers used instead of DNS (like curl's `--resolve`); still guarded.
    pub resolve_overrides: Vec<(String, IpAddr)>,
    /// Backoff before retry `n` is uniform in `0..retry_base * 2^(n-1)`.
    pub retry_base: Duration,
    /// Most attempts per lookup, the first included.
    pub max_attempts: u32,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_value_bytes: 64 * 1024,
            proxy: None,
            extra_ca_file: None,
            resolve_overrides: Vec::new(),
            retry_base: Duration::from_millis(200),
            max_attempts: 3,
        }
    }
}

impl fmt::Debug for FetchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A proxy URL may carry credentials: show only that there is one.
        f.debug_struct("FetchConfig")
            .field("timeout", &self.timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("proxy", &self.proxy.as_ref().map(|_| "[set]"))
            .field("extra_ca_file", &self.extra_ca_file)
            .field("resolve_overrides", &self.resolve_overrides)
            .field("retry_base", &self.retry_base)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// Why the lookup client could not be built (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum FetchBuildError {
    #[error("cannot read extra CA file {}: {source}", path.display())]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("extra CA file {} holds no valid PEM certificate", path.display())]
    CaPem { path: PathBuf },
    /// The proxy URL itself is not shown: it may carry credentials.
    #[error("lookup proxy must be an http:// or https:// URL with a host")]
    Proxy,
}

/// Why one lookup failed. Every variant names the secret; none holds a URL, header value or
/// value, so `Display` and `Debug` are safe to log and to return.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not an http(s) URL with a host and without userinfo.
    #[error("lookup for {target} refused: {reason}")]
    InvalidUrl { target: Target, reason: String },
    /// The host is, or resolves only to, addresses the guard refuses.
    #[error("lookup for {target} refused: address is blocked")]
    Blocked { target: Target },
    /// DNS, TCP or TLS failed before a request was sent.
    #[error("lookup for {target} failed: cannot connect: {cause}")]
    Connect { target: Target, cause: String },
    /// The connection failed while sending the request or reading the answer.
    #[error("lookup for {target} failed: {cause}")]
    Transport { target: Target, cause: String },
    /// The lookup's one deadline passed (all attempts and waits included).
    #[error("lookup for {target} timed out after {}", human(*after))]
    Timeout { target: Target, after: Duration },
    /// A status other than 2xx, after the last attempt (a 3xx is never followed).
    #[error("lookup for {target} failed: upstream answered {status}{}", status_note(*status))]
    Status { target: Target, status: u16 },
    #[error("lookup for {target} failed: value is larger than {limit} bytes")]
    TooLarge { target: Target, limit: usize },
    #[error("lookup for {target} failed: value contains a NUL byte")]
    NulByte { target: Target },
}

impl FetchError {
    /// The HTTP status the upstream answered with, for status errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Connect errors, timeouts, 5xx and 429: the kinds after which a retry may succeed and
    /// a stale value may be served. Never a refusal, a 3xx or another 4xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::InvalidUrl { .. } | Self::Blocked { .. } | Self::TooLarge { .. } | Self::NulByte { .. } => {
                false
            }
        }
    }

    /// What the lookup was for.
    pub fn target(&self) -> &Target {
        match self {
            Self::InvalidUrl { target, .. }
            | Self::Blocked { target }
            | Self::Connect { target, .. }
            | Self::Transport { target, .. }
            | Self::Timeout { target, .. }
            | Self::Status { target, .. }
            | Self::TooLarge { target, .. }
            | Self::NulByte { target } => target,
        }
    }
}

fn status_note(status: u16) -> &'static str {
    if (300..400).contains(&status) { " (redirects are not followed)" } else { "" }
}

/// `10s`, `1500ms`: whole seconds when exact.
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// Performs lookups over one shared HTTP client (pooled connections). Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    client: Arc<LazyClient>,
    guard: AddressGuard,
    cfg: Arc<FetchConfig>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// The lookup client's checked inputs, and the client once the first lookup has built it.
struct LazyClient {
    guard: AddressGuard,
    proxy: Option<reqwest::Proxy>,
    roots: Vec<reqwest::Certificate>,
    /// The build's outcome, kept either way so a failure is not retried on every lookup.
    built: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl LazyClient {
    /// The client, built on the first call.
    fn get(&self) -> Result<&reqwest::Client, String> {
        let built = self.built.get_or_init(|| {
            let mut builder = reqwest::Client::builder()
                .use_rustls_tls()
                .redirect(reqwest::redirect::Policy::none())
                // Clears proxies taken from HTTP(S)_PROXY/ALL_PROXY; must come before `.proxy`.
                .no_proxy()
                .dns_resolver(Arc::new(self.guard.clone()))
                .user_agent(concat!("secret-sidecar/", env!("CARGO_PKG_VERSION")));
            if let Some(proxy) = &self.proxy {
                builder = builder.proxy(proxy.clone());
            }
            for cert in &self.roots {
                builder = builder.add_root_certificate(cert.clone());
            }
            builder.build().map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
        });
        built.as_ref().map_err(Clone::clone)
    }
}

/// One failed attempt, with the `Retry-After` the upstream asked for.
struct Failure {
    error: FetchError,
    retry_after: Option<Duration>,
}

impl From<FetchError> for Failure {
    fn from(error: FetchError) -> Self {
        Self { error, retry_after: None }
    }
}

impl Fetcher {
    /// Checks the configuration (proxy URL, extra CA file) and prepares the client: rustls
    /// with the built-in (webpki and system) roots plus `extra_ca_file`, no redirects, no
    /// environment proxies, the address guard as resolver.
    ///
    /// The client itself is built at the first lookup: loading the system roots reads a few
    /// hundred files, which would otherwise delay `/ready` and stay resident in a sidecar
    /// that may never look anything up. Every input is checked here, so a bad one is still a
    /// start-up error.
    pub fn new(cfg: FetchConfig) -> Result<Self, FetchBuildError> {
        let guard = AddressGuard::new(&cfg.resolve_overrides);
        let proxy = match &cfg.proxy {
            Some(proxy) if !matches!(proxy.scheme(), "http" | "https") || proxy.host().is_none() => {
                return Err(FetchBuildError::Proxy);
            }
            Some(proxy) => Some(reqwest::Proxy::all(proxy.as_str()).map_err(|_| FetchBuildError::Proxy)?),
            None => None,
        };
        let mut roots = Vec::new();
        if let Some(path) = &cfg.extra_ca_file {
            let pem = std::fs::read(path)
                .map_err(|source| FetchBuildError::CaFile { path: path.clone(), source })?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| FetchBuildError::CaPem { path: path.clone() })?;
        }
        let client = LazyClient { guard: guard.clone(), proxy, roots, built: std::sync::OnceLock::new() };
        Ok(Self { client: Arc::new(client), guard, cfg: Arc::new(cfg) })
    }

    /// GETs `url` with `headers` (all marked sensitive) and returns the body verbatim;
    /// `Ok(None)` when the body is empty or a "no value" placeholder.
    pub async fn fetch(
        &self,
        target: impl Into<Target>,
        url: &Url,
        mut headers: HeaderMap,
    ) -> Result<Option<SecretValue>, FetchError> {
        let target = &target.into();
        let origin = Origin::of(url)
            .map_err(|e| FetchError::InvalidUrl { target: target.clone(), reason: e.to_string() })?;
        if self.guard.check_url(url, self.cfg.proxy.is_some()).is_err() {
            tracing::warn!(lookup = %target, origin = %origin, "lookup refused: address is blocked");
            return Err(FetchError::Blocked { target: target.clone() });
        }
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        let started = Instant::now();
        let deadline = started + self.cfg.timeout;
        let attempts = self.attempts(target, &origin, url, &headers, deadline);
        let result = tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout { target: target.clone(), after: self.cfg.timeout }));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(value) => {
                tracing::debug!(lookup = %target, origin = %origin, elapsed_ms, has_value = value.is_some(), "lookup done")
            }
            Err(e) => tracing::debug!(lookup = %target, origin = %origin, elapsed_ms, "lookup failed: {e}"),
        }
        result
    }

    /// Attempts until success, a permanent error, the attempt limit, or a wait that would
    /// not fit before `deadline` (then the last error is returned at once).
    async fn attempts(
        &self,
        target: &Target,
        origin: &Origin,
        url: &Url,
        headers: &HeaderMap,
        deadline: Instant,
    ) -> Result<Option<SecretValue>, FetchError> {
        let mut attempt: u32 = 1;
        loop {
            let Failure { error, retry_after } = match self.attempt(target, url, headers).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !error.is_transient() || attempt >= self.cfg.max_attempts {
                return Err(error);
            }
            let wait = backoff(self.cfg.retry_base, attempt).max(retry_after.unwrap_or_default());
            if Instant::now() + wait >= deadline {
                tracing::warn!(lookup = %target, origin = %origin, attempt, wait_ms = wait.as_millis() as u64,
                    "lookup failed; the next attempt would not fit the deadline: {error}");
                return Err(error);
            }
            tracing::warn!(lookup = %target, origin = %origin, attempt, wait_ms = wait.as_millis() as u64,
                "lookup failed, retrying: {error}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        target: &Target,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<Option<SecretValue>, Failure> {
        let response = self
            .client
            .get()
            .map_err(|cause| FetchError::Connect { target: target.clone(), cause })?
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await
            .map_err(|e| transport_error(target, e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response.headers().get(header::RETRY_AFTER).and_then(parse_retry_after);
            return Err(Failure {
                error: FetchError::Status { target: target.clone(), status: status.as_u16() },
                retry_after,
            });
        }
        Ok(read_value(target, response, self.cfg.max_value_bytes).await?)
    }
}

/// Reads the body as a stream into a buffer that is zeroized on every path, refusing it as
/// soon as it is longer than `limit`.
async fn read_value(
    target: &Target,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<SecretValue>, FetchError> {
    let too_large = || FetchError::TooLarge { target: target.clone(), limit };
    let expected = response.content_length();
    if expected.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let initial = expected.map_or(1024, |len| len as usize).min(limit);
    let mut buf = Zeroizing::new(Vec::with_capacity(initial));
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(target, e))? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        extend_zeroizing(&mut buf, &chunk);
    }
    if buf.contains(&0) {
        return Err(FetchError::NulByte { target: target.clone() });
    }
    // An exact-size copy, so turning it into a boxed slice does not reallocate and leave
    // a stray copy behind; `buf` is zeroized when dropped.
    let mut exact = Vec::with_capacity(buf.len());
    exact.extend_from_slice(&buf);
    Ok(SecretValue::from_bytes(exact))
}

/// `Vec::extend_from_slice`, but a reallocation zeroizes the old buffer instead of freeing
/// it with the value's bytes still in it.
fn extend_zeroizing(buf: &mut Zeroizing<Vec<u8>>, more: &[u8]) {
    let needed = buf.len() + more.len();
    if needed > buf.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(buf.capacity() * 2)));
        grown.extend_from_slice(buf);
        std::mem::swap(buf, &mut grown);
    }
    buf.extend_from_slice(more);
}

/// Maps a reqwest error to ours, keeping only the innermost cause's message (hyper and io
/// messages carry no URL; reqwest's own Display would, so it is not used).
fn transport_error(target: &Target, e: reqwest::Error) -> FetchError {
    let e = e.without_url();
    let mut root: &(dyn StdError + 'static) = &e;
    while let Some(source) = root.source() {
        if source.downcast_ref::<BlockedAddress>().is_some() {
            return FetchError::Blocked { target: target.clone() };
        }
        root = source;
    }
    let cause = root.to_string();
    if e.is_connect() {
        FetchError::Connect { target: target.clone(), cause }
    } else {
        FetchError::Transport { target: target.clone(), cause }
    }
}

/// Full jitter: uniform in `0..base * 2^(attempt-1)`.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    cap.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
}

/// `Retry-After` as delta seconds or an HTTP-date (a past date means "now").
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::value::SecretName;

    #[test]
    fn retry_after_forms() {
        let parse = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-1"), None);
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse(&later).unwrap();
        assert!(d > Duration::from_secs(115) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_is_jittered_and_doubles() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            for _ in 0..50 {
                assert!(backoff(base, attempt) < base * 2u32.pow(attempt - 1));
            }
        }
        assert!(backoff(Duration::from_secs(1), 64) <= Duration::from_secs(u32::MAX as u64));
    }

    #[test]
    fn messages() {
        let name = SecretName::parse("GITHUB_TOKEN").unwrap();
        let timeout = FetchError::Timeout { target: Target::from(&name), after: Duration::from_secs(10) };
        assert_eq!(timeout.to_string(), "lookup for secret GITHUB_TOKEN timed out after 10s");
        let timeout = FetchError::Timeout { target: Target::from(&name), after: Duration::from_millis(300) };
        assert_eq!(timeout.to_string(), "lookup for secret GITHUB_TOKEN timed out after 300ms");
        let blocked = FetchError::Blocked { target: Target::from(&name) };
        assert_eq!(blocked.to_string(), "lookup for secret GITHUB_TOKEN refused: address is blocked");
        let redirect = FetchError::Status { target: Target::from(&name), status: 302 };
        assert!(redirect.to_string().ends_with("answered 302 (redirects are not followed)"));
        for (status, transient) in
            [(500, true), (503, true), (429, true), (404, false), (401, false), (302, false)]
        {
            let e = FetchError::Status { target: Target::from(&name), status };
            assert_eq!(e.is_transient(), transient, "{status}");
            assert_eq!(e.status(), Some(status));
        }
        assert!(!blocked.is_transient());
        assert_eq!(blocked.target(), &Target::from(&name));
    }

    #[test]
    fn zeroizing_growth_keeps_bytes() {
        let mut buf = Zeroizing::new(Vec::with_capacity(1));
        for chunk in [&b"ab"[..], b"cde", b"", b"fghij"] {
            extend_zeroizing(&mut buf, chunk);
        }
        assert_eq!(&buf[..], b"abcdefghij");
    }
}
