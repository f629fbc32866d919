//! The lookup [`Fetcher`] against real loopback servers on port 0: verbatim values, retries
//! and their limits, the deadline, the body cap, redirects, the address guard, proxies, and
//! errors and log lines that never show the lookup URL.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use secret_sidecar::secrets::fetch::{FetchBuildError, FetchConfig, FetchError, Fetcher};
use secret_sidecar::secrets::value::SecretName;
use url::Url;

/// Put in the path and the query of every lookup URL; must never appear in an error or log.
const MARK: &str = "url-marker-9c4e";
/// The body cap used by these tests.
const CAP: usize = 16;
const VALUE: &str = "pässwörd☃\n";
/// One piece of the chunked over-the-cap body.
const CHUNK: &[u8] = &[b'x'; 8];

/// An upstream on `127.0.0.1:0` whose first path segment picks a behaviour; it counts
/// requests per path and records every request target as received.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    targets: Arc<Mutex<Vec<String>>>,
    redirect_to: Option<String>,
}

impl Upstream {
    async fn spawn() -> Self {
        Self::spawn_redirecting(None).await
    }

    async fn spawn_redirecting(redirect_to: Option<String>) -> Self {
        // Bound before serving, so connections queue from here on: no readiness wait needed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            targets: Arc::default(),
            redirect_to,
        };
        let app = Router::new().fallback(answer).with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    fn url(&self, behaviour: &str) -> Url {
        url_at(&self.addr.to_string(), behaviour)
    }

    /// Requests received for `behaviour`.
    fn hits(&self, behaviour: &str) -> usize {
        let prefix = format!("/{behaviour}/");
        self.hits.lock().unwrap().iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(_, n)| n).sum()
    }

    fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn url_at(authority: &str, behaviour: &str) -> Url {
    Url::parse(&format!("http://{authority}/{behaviour}/{MARK}?token={MARK}")).unwrap()
}

async fn answer(State(up): State<Upstream>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    up.targets.lock().unwrap().push(uri.to_string());
    let n = {
        let mut hits = up.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let later = |secs| httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs));
    match path.trim_start_matches('/').split('/').next().unwrap_or_default() {
        "value" => VALUE.into_response(),
        "empty" => "".into_response(),
        "exact" => vec![b'x'; CAP].into_response(),
        "echo" => headers.get("x-probe").map(|v| v.as_bytes().to_vec()).unwrap_or_default().into_response(),
        "flaky" if n == 1 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "flaky" => "recovered".into_response(),
        "down" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "busy" if n == 1 => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response(),
        "busy" => "after-wait".into_response(),
        "busy-long" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "30")]).into_response(),
        "busy-date" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, later(60))]).into_response(),
        "missing" => StatusCode::NOT_FOUND.into_response(),
        "stall" => std::future::pending().await,
        "big" => vec![b'x'; CAP + 1].into_response(),
        "big-chunked" => Body::from_stream(Chunks(vec![CHUNK; 3])).into_response(),
        "redirect" => {
            let to = up.redirect_to.clone().unwrap_or_default();
            (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
        }
        "nul" => b"ab\0cd".to_vec().into_response(),
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

/// A body sent in pieces with no length (so chunked on the wire).
struct Chunks(Vec<&'static [u8]>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready((!self.0.is_empty()).then(|| Ok(Bytes::from_static(self.0.remove(0)))))
    }
}

/// Log output of the current (single-threaded) test runtime.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn name() -> SecretName {
    SecretName::parse("GITHUB_TOKEN").unwrap()
}

fn config() -> FetchConfig {
    FetchConfig {
        timeout: Duration::from_secs(5),
        max_value_bytes: CAP,
        retry_base: Duration::from_millis(5),
        ..FetchConfig::default()
    }
}

fn fetcher(cfg: FetchConfig) -> Fetcher {
    Fetcher::new(cfg).unwrap()
}

async fn get(f: &Fetcher, url: &Url) -> Result<Option<Vec<u8>>, FetchError> {
    f.fetch(&name(), url, HeaderMap::new()).await.map(|v| v.map(|v| v.expose().to_vec()))
}

/// An error names the secret and never shows the URL, in `Display` or `Debug`.
fn assert_clean(e: &FetchError) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(MARK) && !shown.contains("token="), "{shown}");
    assert!(shown.contains("GITHUB_TOKEN"), "{shown}");
}

async fn fetch_err(f: &Fetcher, url: &Url) -> FetchError {
    let e = get(f, url).await.expect_err("lookup should fail");
    assert_clean(&e);
    e
}

#[tokio::test]
async fn value_is_the_body_verbatim() {
    let up = Upstream::spawn().await;
    let f = fetcher(config());
    assert_eq!(get(&f, &up.url("value")).await.unwrap().unwrap(), VALUE.as_bytes());
    assert_eq!(get(&f, &up.url("exact")).await.unwrap().unwrap(), vec![b'x'; CAP]);
    assert_eq!(get(&f, &up.url("empty")).await.unwrap(), None);
    let mut headers = HeaderMap::new();
    headers.insert("x-probe", HeaderValue::from_static("probe-1"));
    let echoed = f.fetch(&name(), &up.url("echo"), headers).await.unwrap().unwrap();
    assert_eq!(echoed.expose(), b"probe-1");
    assert_eq!((up.hits("value"), up.hits("empty")), (1, 1));
}

#[tokio::test]
async fn server_error_then_success_recovers() {
    let up = Upstream::spawn().await;
    let started = Instant::now();
    assert_eq!(get(&fetcher(config()), &up.url("flaky")).await.unwrap().unwrap(), b"recovered");
    assert_eq!(up.hits("flaky"), 2);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_stop_after_max_attempts() {
    let up = Upstream::spawn().await;
    let e = fetch_err(&fetcher(config()), &up.url("down")).await;
    assert_eq!((e.status(), e.is_transient()), (Some(503), true));
    assert_eq!(up.hits("down"), 3);
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let up = Upstream::spawn().await;
    let started = Instant::now();
    assert_eq!(get(&fetcher(config()), &up.url("busy")).await.unwrap().unwrap(), b"after-wait");
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(up.hits("busy"), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_fails_fast() {
    let up = Upstream::spawn().await;
    let f = fetcher(config());
    for behaviour in ["busy-long", "busy-date"] {
        let started = Instant::now();
        let e = fetch_err(&f, &up.url(behaviour)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{behaviour}: {:?}", started.elapsed());
        assert_eq!((e.status(), e.is_transient()), (Some(429), true), "{behaviour}");
        assert_eq!(up.hits(behaviour), 1, "{behaviour}");
    }
}

#[tokio::test]
async fn stalled_upstream_hits_the_deadline() {
    let up = Upstream::spawn().await;
    let f = fetcher(FetchConfig { timeout: Duration::from_millis(300), ..config() });
    let started = Instant::now();
    let e = fetch_err(&f, &up.url("stall")).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(matches!(e, FetchError::Timeout { .. }) && e.is_transient(), "{e:?}");
    assert_eq!(e.to_string(), "lookup for secret GITHUB_TOKEN timed out after 300ms");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let up = Upstream::spawn().await;
    let f = fetcher(config());
    for behaviour in ["big", "big-chunked"] {
        let e = fetch_err(&f, &up.url(behaviour)).await;
        assert!(matches!(e, FetchError::TooLarge { limit: CAP, .. }) && !e.is_transient(), "{e:?}");
        assert_eq!(up.hits(behaviour), 1);
    }
}

#[tokio::test]
async fn nul_byte_is_refused() {
    let up = Upstream::spawn().await;
    let e = fetch_err(&fetcher(config()), &up.url("nul")).await;
    assert!(matches!(e, FetchError::NulByte { .. }) && !e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let target = Upstream::spawn().await;
    let up = Upstream::spawn_redirecting(Some(target.url("value").to_string())).await;
    let e = fetch_err(&fetcher(config()), &up.url("redirect")).await;
    assert_eq!((e.status(), e.is_transient()), (Some(302), false));
    assert_eq!(up.hits("redirect"), 1);
    assert_eq!(target.total(), 0, "the redirect target got a request");
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let up = Upstream::spawn().await;
    let e = fetch_err(&fetcher(config()), &up.url("missing")).await;
    assert_eq!((e.status(), e.is_transient()), (Some(404), false));
    assert_eq!(up.hits("missing"), 1);
}

#[tokio::test]
async fn connect_error_is_retried_and_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let logs = Logs::default();
    let _guard = logs.capture();
    let e = fetch_err(&fetcher(config()), &url_at(&format!("127.0.0.1:{port}"), "value")).await;
    assert!(matches!(e, FetchError::Connect { .. }) && e.is_transient(), "{e:?}");
    let logs = logs.text();
    assert_eq!(logs.matches("retrying").count(), 2, "{logs}");
    assert!(logs.contains(&format!("origin=http://127.0.0.1:{port}")), "{logs}");
    assert!(!logs.contains(MARK), "{logs}");
}

#[tokio::test]
async fn blocked_ip_literals_are_refused_without_connecting() {
    // `0.0.0.0` and `::` reach the local host, so a live server there proves no connection.
    let up = Upstream::spawn().await;
    let port = up.addr.port();
    let f = fetcher(config());
    for authority in [
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        "[fd00:ec2::254]",
        &format!("0.0.0.0:{port}"),
        &format!("[::]:{port}"),
    ] {
        let started = Instant::now();
        let e = fetch_err(&f, &url_at(authority, "value")).await;
        assert!(matches!(e, FetchError::Blocked { .. }) && !e.is_transient(), "{authority}: {e:?}");
        assert_eq!(e.to_string(), "lookup for secret GITHUB_TOKEN refused: address is blocked");
        assert!(started.elapsed() < Duration::from_millis(200), "{authority}");
    }
    assert_eq!(up.total(), 0);
}

#[tokio::test]
async fn blocked_resolved_addresses_are_refused_at_connect() {
    let up = Upstream::spawn().await;
    let port = up.addr.port();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let f = fetcher(FetchConfig {
        resolve_overrides: vec![
            ("metadata.test".into(), ip("169.254.169.254")),
            ("sneaky.test".into(), ip("0.0.0.0")),
            ("mixed.test".into(), ip("169.254.169.254")),
            ("mixed.test".into(), ip("127.0.0.1")),
        ],
        ..config()
    });
    for host in ["metadata.test", "sneaky.test"] {
        let started = Instant::now();
        let e = fetch_err(&f, &url_at(&format!("{host}:{port}"), "value")).await;
        assert!(matches!(e, FetchError::Blocked { .. }) && !e.is_transient(), "{host}: {e:?}");
        assert!(started.elapsed() < Duration::from_millis(200), "{host}: not retried");
    }
    assert_eq!(up.total(), 0);
    // Only the blocked addresses are dropped.
    let value = get(&f, &url_at(&format!("mixed.test:{port}"), "value")).await.unwrap();
    assert_eq!(value.unwrap(), VALUE.as_bytes());
}

#[tokio::test]
async fn explicit_proxy_gets_the_request() {
    let proxy = Upstream::spawn().await;
    let f = fetcher(FetchConfig {
        proxy: Some(Url::parse(&format!("http://{}", proxy.addr)).unwrap()),
        ..config()
    });
    // `origin.test` resolves nowhere: only the proxy can answer.
    let value = get(&f, &url_at("origin.test:9", "value")).await.unwrap();
    assert_eq!(value.unwrap(), VALUE.as_bytes());
    let targets = proxy.targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 1);
    assert!(targets[0].starts_with("http://origin.test:9/value/"), "{targets:?}");
}

/// Runs [`env_proxy_child`] in a child process whose proxy variables all point at a fake
/// proxy (setting them here would leak into every other test in this process).
#[tokio::test]
async fn environment_proxies_are_ignored() {
    let proxy = Upstream::spawn().await;
    let target = Upstream::spawn().await;
    let proxy_url = format!("http://{}", proxy.addr);
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child.args(["fetch::env_proxy_child", "--exact", "--ignored", "--test-threads=1"]);
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        child.env(var, &proxy_url);
    }
    let out = child
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("FETCH_CHILD_TARGET_PORT", target.addr.port().to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}");
    // The child's control client went through the proxy, the fetcher straight to the target.
    assert_eq!((proxy.hits("echo"), target.hits("value")), (1, 1));
}

#[tokio::test]
#[ignore = "run by environment_proxies_are_ignored in a child process"]
async fn env_proxy_child() {
    let port: u16 = std::env::var("FETCH_CHILD_TARGET_PORT").unwrap().parse().unwrap();
    // Control: a default client honours the variables (so this test can tell the difference).
    let control = reqwest::Client::new().get(url_at(&format!("origin.test:{port}"), "echo")).send().await;
    assert_eq!(control.unwrap().status(), 200);
    let f = fetcher(FetchConfig {
        resolve_overrides: vec![("origin.test".into(), "127.0.0.1".parse().unwrap())],
        ..config()
    });
    let value = get(&f, &url_at(&format!("origin.test:{port}"), "value")).await.unwrap();
    assert_eq!(value.unwrap(), VALUE.as_bytes());
}

#[tokio::test]
async fn logs_never_show_the_url_or_headers() {
    let up = Upstream::spawn().await;
    let logs = Logs::default();
    let _guard = logs.capture();
    let f = fetcher(FetchConfig { timeout: Duration::from_millis(300), ..config() });
    let mut headers = HeaderMap::new();
    headers.insert("x-probe", HeaderValue::from_static("header-marker-61d0"));
    for behaviour in ["value", "echo", "flaky", "down", "missing", "big", "nul", "stall"] {
        let _ = f.fetch(&name(), &up.url(behaviour), headers.clone()).await;
    }
    let _ = get(&f, &url_at("169.254.169.254", "value")).await;
    let text = logs.text();
    assert!(text.contains("GITHUB_TOKEN"), "{text}");
    for marker in [MARK, "token=", "header-marker-61d0", "pässwörd", "recovered"] {
        assert!(!text.contains(marker), "{marker} in {text}");
    }
}

/// A self-signed test CA (certificate only; its key was thrown away).
const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBmjCCAT+gAwIBAgIUDT9BEIh4FXpZ3qghh0TRHZUdDCUwCgYIKoZIzj0EAwIw\n\
ITEfMB0GA1UEAwwWc2VjcmV0LXNpZGVjYXIgdGVzdCBDQTAgFw0yNjExMjYxNDA0\n\
MjhaGA8yMTI2MTEwMjE0MDQyOFowITEfMB0GA1UEAwwWc2VjcmV0LXNpZGVjYXIg\n\
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFMriQmOjar2QXEW+MBj\n\
SJnBE45RO/c5C+8aUhaR1PrQEuKdORGU90Fx3jW+OO8BuQPgaAoO6mSzv/pxFp+w\n\
zrijUzBRMB0GA1UdDgQWBBS6qqH0so1JRd0/diwNVaMiWD8chDAfBgNVHSMEGDAW\n\
gBS6qqH0so1JRd0/diwNVaMiWD8chDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49\n\
BAMCA0kAMEYCIQDsZJTjtU3DEqoktC6Dl8SiJybgjqSMS1Fs55EL9p5DgwIhAPVB\n\
5zTxIqTdRv49Zxz/z2nZrycxSZj8zZbs4D0JJ7Cy\n\
-----END CERTIFICATE-----\n\
";

#[test]
fn extra_ca_file_and_proxy_are_checked_at_build() {
    let dir = std::env::temp_dir().join(format!("secret-sidecar-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, bad) = (dir.join("ca.pem"), dir.join("not.pem"));
    std::fs::write(&good, TEST_CA).unwrap();
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let with_ca =
        |path: &std::path::Path| Fetcher::new(FetchConfig { extra_ca_file: Some(path.into()), ..config() });
    assert!(with_ca(&good).is_ok());
    assert!(matches!(with_ca(&bad), Err(FetchBuildError::CaPem { .. })));
    let missing = with_ca(&dir.join("missing.pem")).unwrap_err();
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Only http(s) proxies (no SOCKS support is built in); the URL may hold credentials.
    for proxy in ["socks5://u:pw-marker@127.0.0.1:1", "ftp://u:pw-marker@proxy.test/"] {
        let proxy = Some(Url::parse(proxy).unwrap());
        let e = Fetcher::new(FetchConfig { proxy, ..config() }).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("pw-marker"), "{e}");
    }
}
