//! A fake upstream on loopback: HTTPS with its own test CA (or plain http), recording every
//! request it receives and echoing it back (headers, target, body, and the base64 of the
//! `Authorization` credential) as a chunked answer, or gzip-compressed on `/gzip`. Two paths
//! answer as real services do, behind a credential, for real clients: `…/info/refs` (git's
//! smart-HTTP ref advertisement) and `/npm/{package}` (an npm packument).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipEncoder;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A running fake upstream.
pub struct FakeUpstream {
    pub port: u16,
    /// The test CA that signed its certificate (empty for plain http).
    pub ca_pem: String,
    pub ca_der: Option<CertificateDer<'static>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// HTTPS with a certificate for `names`, signed by a test CA made here.
    pub async fn https(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(DnType::CommonName, "fake upstream test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut upstream = Self::start(Some(TlsAcceptor::from(Arc::new(config)))).await;
        upstream.ca_pem = ca.pem();
        upstream.ca_der = Some(ca.der().clone());
        upstream
    }

    /// Plain http.
    pub async fn plain() -> Self {
        Self::start(None).await
    }

    async fn start(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (tls, seen) = (tls.clone(), Arc::clone(&recorded));
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&seen)));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { port, ca_pem: String::new(), ca_der: None, seen, task }
    }

    /// What it has received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(req: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Result<Response<Chunks>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
    let auth =
        parts.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let token = auth.iter().position(|b| *b == b' ').map(|i| auth[i + 1..].to_vec()).unwrap_or_default();
    let mut echo = String::new();
    let _ = writeln!(echo, "uri: {}", parts.uri);
    for (name, value) in &parts.headers {
        let _ = writeln!(echo, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    let _ = writeln!(echo, "token-base64: {}", STANDARD.encode(&token));
    let _ = writeln!(echo, "body: {}", String::from_utf8_lossy(&body));
    seen.lock().unwrap().push(Seen { uri: parts.uri.to_string(), headers: parts.headers.clone(), body });

    if let Some(answer) = service(parts.uri.path(), !auth.is_empty()) {
        return Ok(answer);
    }
    let mut response = Response::builder().status(200).header("content-type", "text/plain");
    if !auth.is_empty() {
        response = response.header("x-echo-authorization", auth.as_slice());
    }
    if parts.uri.path() == "/gzip" {
        let mut compressed = Vec::new();
        GzipEncoder::new(echo.as_bytes()).read_to_end(&mut compressed).await.unwrap();
        let len = compressed.len();
        let body = Chunks(VecDeque::from([Bytes::from(compressed)]));
        return Ok(response
            .header("content-encoding", "gzip")
            .header("content-length", len)
            .body(body)
            .unwrap());
    }
    // Small pieces and no length: chunked on the wire, with values split across chunks.
    let chunks = echo.as_bytes().chunks(7).map(Bytes::copy_from_slice).collect();
    Ok(response.body(Chunks(chunks)).unwrap())
}

/// A body sent as the given frames.
pub struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// The answers of the paths that behave like git and npm servers.
fn service(path: &str, authorized: bool) -> Option<Response<Chunks>> {
    let (content_type, body) = if path.ends_with("/info/refs") {
        if !authorized {
            return Some(unauthorized("Basic realm=\"git\""));
        }
        let sha = "1111111111111111111111111111111111111111";
        let mut body = pkt("# service=git-upload-pack\n");
        body.push_str("0000");
        body.push_str(&pkt(&format!("{sha} HEAD\0symref=HEAD:refs/heads/main agent=git/fake\n")));
        body.push_str(&pkt(&format!("{sha} refs/heads/main\n")));
        body.push_str("0000");
        ("application/x-git-upload-pack-advertisement", body)
    } else if let Some(name) = path.strip_prefix("/npm/") {
        if !authorized {
            return Some(unauthorized("Bearer"));
        }
        let tarball = format!("https://registry.invalid/{name}-1.0.0.tgz");
        let dist = serde_json::json!({"tarball": tarball, "shasum": "0".repeat(40)});
        let body = serde_json::json!({
            "name": name,
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {"name": name, "version": "1.0.0", "dist": dist}},
            "time": {"1.0.0": "2026-01-01T00:00:00.000Z"},
        });
        ("application/json", body.to_string())
    } else {
        return None;
    };
    let body = Chunks(VecDeque::from([Bytes::from(body)]));
    Some(Response::builder().status(200).header("content-type", content_type).body(body).unwrap())
}

fn unauthorized(challenge: &str) -> Response<Chunks> {
    let body = Chunks(VecDeque::from([Bytes::from_static(b"unauthorized\n")]));
    Response::builder().status(401).header("www-authenticate", challenge).body(body).unwrap()
}

/// A git pkt-line.
fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}
