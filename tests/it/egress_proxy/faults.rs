//! The egress proxy's upstream on its worst day: connection refused, reset mid-body, silence
//! before or after the answer head, a body at one byte a second, 5xx and 429 answers, and a
//! certificate that does not verify. For each the client's request ends within a bound time
//! (the proxy's `upstream_idle_timeout`, 2 s here), the answer says what happened, no retry is
//! made, and neither the client nor the logs ever see the real value.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::harness::{BOUND, HOLDER, Logs, Proxy, VALUE, assert_no_value};

/// The proxy's upstream silence bound in these tests.
const IDLE: Duration = Duration::from_secs(2);
/// Every faulty request must end well within this, on a loaded machine.
const BOUND_TIME: Duration = Duration::from_secs(20);

/// What the upstream does once it has read a request head.
#[derive(Clone, Copy)]
enum Fault {
    /// Sends half of a promised body, then drops the connection without a TLS close.
    ResetMidBody,
    /// Never answers.
    StallBeforeHead,
    /// Sends the head and a few bytes, then nothing.
    StallAfterHead,
    /// A body of `abc` at one byte a second, then the value (which must be reflected).
    Trickle,
    /// Answers this status with `Retry-After` and a body that echoes the value.
    Status(u16),
}

/// A TLS upstream on loopback for [`BOUND`], misbehaving as told.
struct Faulty {
    port: u16,
    ca_der: CertificateDer<'static>,
    /// Every request head it read.
    heads: Arc<Mutex<Vec<String>>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Faulty {
    async fn start(fault: Fault) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(DnType::CommonName, "faulty upstream test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![BOUND.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, c) = (Arc::clone(&heads), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, heads) = (acceptor.clone(), Arc::clone(&h));
                held.push(tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    answer(&mut tls, fault).await;
                }));
            }
        });
        Self { port, ca_der: ca.der().clone(), heads, connections, task }
    }
}

async fn answer<S: tokio::io::AsyncWrite + Unpin>(tls: &mut S, fault: Fault) {
    let echo = format!("echo: {VALUE}\n");
    match fault {
        Fault::ResetMidBody => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", echo.len() * 10);
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(echo.as_bytes()).await;
            let _ = tls.flush().await;
            // Dropped here without close_notify: the proxy sees a truncated body.
        }
        Fault::StallBeforeHead => std::future::pending().await,
        Fault::StallAfterHead => {
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst bytes").await;
            let _ = tls.flush().await;
            std::future::pending::<()>().await;
        }
        Fault::Trickle => {
            let body = format!("abc{VALUE}");
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = tls.write_all(head.as_bytes()).await;
            for (i, b) in body.bytes().enumerate() {
                // One byte a second for the first three: slower than nothing, but moving.
                tokio::time::sleep(Duration::from_millis(if i < 3 { 1000 } else { 5 })).await;
                if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        }
        Fault::Status(code) => {
            let head = format!(
                "HTTP/1.1 {code} Nope\r\nretry-after: 7\r\nx-echo: {VALUE}\r\ncontent-length: {}\r\n\r\n",
                echo.len()
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(echo.as_bytes()).await;
            let _ = tls.flush().await;
            std::future::pending::<()>().await;
        }
    }
}

/// A proxy trusting `roots`, with the test idle bound.
async fn proxy(roots: Vec<CertificateDer<'static>>) -> Proxy {
    Proxy::start_with(roots, |c| c.upstream_idle_timeout = IDLE).await
}

/// One GET through the proxy to `port` with the placeholder as a bearer token: status,
/// headers (as text) and the body or the error that ended it, and how long it all took.
async fn fetch(proxy: &Proxy, port: u16) -> (u16, String, Result<Vec<u8>, String>, Duration) {
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let start = Instant::now();
    let sent = client.get(format!("https://{BOUND}:{port}/x?key={HOLDER}")).bearer_auth(HOLDER).send();
    let response = tokio::time::timeout(BOUND_TIME, sent).await.expect("the answer head came in time");
    let response = response.expect("the proxy answered");
    let status = response.status().as_u16();
    let headers = format!("{:?}", response.headers());
    let body = tokio::time::timeout(BOUND_TIME, response.bytes()).await.expect("the body ended in time");
    let body = body.map(|b| b.to_vec()).map_err(|e| format!("{e:?}"));
    let took = start.elapsed();
    assert!(took < BOUND_TIME, "took {took:?}");
    assert_no_value("answer headers", headers.as_bytes());
    if let Ok(b) = &body {
        assert_no_value("answer body", b);
    }
    (status, headers, body, took)
}

fn text(body: &Result<Vec<u8>, String>) -> String {
    match body {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(e) => e.clone(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn connection_refused_is_a_clear_502() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = proxy(Vec::new()).await;
    let (status, _, body, _) = fetch(&proxy, port).await;
    assert_eq!(status, 502, "{}", text(&body));
    assert!(text(&body).contains("upstream unreachable"), "{}", text(&body));
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_certificate_is_502_and_nothing_is_written() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Faulty::start(Fault::Status(200)).await;
    // The proxy trusts another CA: the upstream's certificate does not verify.
    let other = Faulty::start(Fault::Status(200)).await;
    let proxy = proxy(vec![other.ca_der.clone()]).await;
    let (status, _, body, _) = fetch(&proxy, up.port).await;
    assert_eq!(status, 502, "{}", text(&body));
    assert!(text(&body).contains("certificate did not verify"), "{}", text(&body));
    assert!(up.heads.lock().unwrap().is_empty(), "a request reached an unverified upstream");
    assert_eq!(proxy.stats.upstream_tls_failures.get(), 1);
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn a_reset_mid_body_cuts_the_answer() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Faulty::start(Fault::ResetMidBody).await;
    let proxy = proxy(vec![up.ca_der.clone()]).await;
    let (status, _, body, _) = fetch(&proxy, up.port).await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "a truncated body must not look complete: {}", text(&body));
    assert!(
        up.heads.lock().unwrap()[0].contains(&format!("Bearer {VALUE}")),
        "the bound request was substituted"
    );
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn silence_before_the_head_is_504_after_the_idle_bound() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Faulty::start(Fault::StallBeforeHead).await;
    let proxy = proxy(vec![up.ca_der.clone()]).await;
    let (status, _, body, took) = fetch(&proxy, up.port).await;
    assert_eq!(status, 504, "{}", text(&body));
    assert!(text(&body).contains("no answer in time"), "{}", text(&body));
    assert!(took >= IDLE, "ended before the bound: {took:?}");
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn silence_after_the_head_cuts_the_body_after_the_idle_bound() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Faulty::start(Fault::StallAfterHead).await;
    let proxy = proxy(vec![up.ca_der.clone()]).await;
    let (status, _, body, took) = fetch(&proxy, up.port).await;
    assert_eq!(status, 200);
    assert!(body.is_err(), "a stalled body must end in an error: {}", text(&body));
    assert!(took >= IDLE, "ended before the bound: {took:?}");
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_at_one_byte_a_second_passes_and_is_reflected() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Faulty::start(Fault::Trickle).await;
    let proxy = proxy(vec![up.ca_der.clone()]).await;
    let (status, _, body, took) = fetch(&proxy, up.port).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), format!("abc{HOLDER}"), "slow is not stalled; the value is swapped back");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert_no_value("logs", logs.text().as_bytes());
}

#[tokio::test(flavor = "current_thread")]
async fn error_answers_pass_through_unchanged_and_are_not_retried() {
    let logs = Logs::default();
    let _guard = logs.capture();
    for code in [500, 502, 503, 429] {
        let up = Faulty::start(Fault::Status(code)).await;
        let proxy = proxy(vec![up.ca_der.clone()]).await;
        let (status, headers, body, _) = fetch(&proxy, up.port).await;
        assert_eq!(status, code, "{}", text(&body));
        assert!(headers.contains("\"retry-after\": \"7\""), "{headers}");
        assert!(headers.contains(HOLDER), "the echoed header shows the placeholder: {headers}");
        assert_eq!(text(&body), format!("echo: {HOLDER}\n"));
        // No retry: one connection, one request. A retry would come at once; give it a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(up.connections.load(Ordering::SeqCst), 1, "{code}: the proxy retried");
        assert_eq!(up.heads.lock().unwrap().len(), 1, "{code}: the proxy retried");
    }
    assert_no_value("logs", logs.text().as_bytes());
}
