//! The egress proxy's cost on loopback, all in one run and with one load generator (reqwest,
//! keep-alive) against one fake HTTPS upstream (a test CA, a resolve pin):
//! - latency of sequential requests: direct TLS, through the substituting path (a bound host,
//!   a placeholder in `Authorization`, the answer reflected), and through a blind tunnel
//!   (an unbound host); p50/p99 and the p50 added over direct;
//! - throughput with concurrent clients, requests/s for small answers and MB/s for 1 MiB
//!   answers, as ratios to direct;
//! - resident memory after 1,000 leaf certificates are cached.
//!
//! Run with `cargo bench --bench egress` (or `bench/egress.sh`).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret, SecretString};
use secret_sidecar::egress::binding::{Binding, HostPattern};
use secret_sidecar::egress::ca::Ca;
use secret_sidecar::egress::grant::{Credential, Grant, Grants};
use secret_sidecar::egress::proxy::{EgressStats, ProxyConfig, serve};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

const BOUND: &str = "api.bench.example";
const UNBOUND: &str = "open.bench.example";
const VALUE: &str = "ghp_BenchRealValue0123456789abcdefghijklm";
const HOLDER: &str = "ghp_BenchPlaceholder0123456789abcdefghij";
const BIG: usize = 1024 * 1024;

/// (sequential requests, warm-up, seconds per throughput run, concurrency, leaves) under
/// `cargo bench`; `cargo test` runs a short smoke test of the harness.
fn sizes() -> (usize, usize, f64, usize, usize) {
    if std::env::args().any(|a| a == "--bench") { (2000, 200, 3.0, 16, 1000) } else { (20, 2, 0.2, 2, 10) }
}

struct Upstream {
    port: u16,
    ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

/// An HTTPS upstream answering `/small` with 1 KiB and `/big` with 1 MiB.
async fn upstream() -> Upstream {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "bench upstream CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![BOUND.to_string(), UNBOUND.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let small = Bytes::from(vec![b's'; 1024]);
    let big = Bytes::from(vec![b'b'; BIG]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let (acceptor, small, big) = (acceptor.clone(), small.clone(), big.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = if req.uri().path() == "/big" { big.clone() } else { small.clone() };
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream { port, ca_pem: ca.pem(), ca_der: ca.der().clone() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latency(client: &reqwest::Client, url: &str) -> (Duration, Duration) {
    let (rounds, warmup, ..) = sizes();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + warmup {
        let start = Instant::now();
        let r = client.get(url).bearer_auth(HOLDER).send().await.expect("request");
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.expect("body");
        if i >= warmup {
            samples.push(start.elapsed());
        }
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// Requests per second and bytes per second of `concurrency` clients for the run time.
async fn throughput(client: &reqwest::Client, url: &str) -> (f64, f64) {
    let (_, _, secs, concurrency, _) = sizes();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let (mut n, mut bytes) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let r = client.get(&url).bearer_auth(HOLDER).send().await.expect("request");
                    assert!(r.status().is_success());
                    bytes += r.bytes().await.expect("body").len() as u64;
                    n += 1;
                }
                (n, bytes)
            })
        })
        .collect();
    let (mut n, mut bytes) = (0, 0);
    for t in tasks {
        let (a, b) = t.await.unwrap();
        n += a;
        bytes += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (n as f64 / elapsed, bytes as f64 / elapsed)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let config = ProxyConfig {
            extra_roots: vec![up.ca_der.clone()],
            resolve: vec![(BOUND.into(), loopback), (UNBOUND.into(), loopback)],
            ..ProxyConfig::default()
        };
        let (grants, ca, stats) = (Grants::new(), Arc::new(Ca::new().unwrap()), Arc::new(EgressStats::new()));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, config, Arc::clone(&grants), Arc::clone(&ca), Arc::clone(&stats), shutdown.clone()));
        let cred = grants.issue(vec![Grant {
            name: "GITHUB_TOKEN".into(),
            placeholder: SecretString::from(HOLDER),
            value: SecretString::from(VALUE),
            binding: Arc::new(Binding { hosts: vec![HostPattern::Exact(BOUND.into())], ..Binding::default() }),
        }]);

        let upstream_ca = reqwest::Certificate::from_pem(up.ca_pem.as_bytes()).unwrap();
        let sidecar_ca = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();
        let direct = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(upstream_ca.clone())
            .resolve(BOUND, SocketAddr::new(loopback, up.port))
            .build()
            .unwrap();
        let proxy = || {
            reqwest::Proxy::all(format!("http://127.0.0.1:{proxy_port}"))
                .unwrap()
                .basic_auth(Credential::USER, cred.token().expose_secret())
        };
        let through = reqwest::Client::builder()
            .proxy(proxy())
            .tls_built_in_root_certs(false)
            .add_root_certificate(sidecar_ca)
            .add_root_certificate(upstream_ca)
            .build()
            .unwrap();

        let url = |host: &str, path: &str| format!("https://{host}:{}/{path}", up.port);
        let (d50, d99) = latency(&direct, &url(BOUND, "small")).await;
        let (s50, s99) = latency(&through, &url(BOUND, "small")).await;
        let (b50, b99) = latency(&through, &url(UNBOUND, "small")).await;
        assert!(stats.substitutions.get() > 0, "the substituting path substituted");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("latency, sequential 1 KiB GETs with keep-alive ({} rounds):", sizes().0);
        println!("  direct TLS          p50 {:.3} ms  p99 {:.3} ms", ms(d50), ms(d99));
        println!("  substituting proxy  p50 {:.3} ms  p99 {:.3} ms", ms(s50), ms(s99));
        println!("  blind tunnel        p50 {:.3} ms  p99 {:.3} ms", ms(b50), ms(b99));
        println!(
            "  added by substitution: p50 {:.3} ms (target <= 1 ms), p99 {:.3} ms",
            ms(s50.saturating_sub(d50)),
            ms(s99.saturating_sub(d99))
        );

        let (_, _, secs, concurrency, leaves) = sizes();
        let (dr, _) = throughput(&direct, &url(BOUND, "small")).await;
        let (sr, _) = throughput(&through, &url(BOUND, "small")).await;
        let (br, _) = throughput(&through, &url(UNBOUND, "small")).await;
        let (_, db) = throughput(&direct, &url(BOUND, "big")).await;
        let (_, sb) = throughput(&through, &url(BOUND, "big")).await;
        let (_, bb) = throughput(&through, &url(UNBOUND, "big")).await;
        println!("throughput, {concurrency} concurrent clients, {secs} s each:");
        println!(
            "  1 KiB answers: direct {dr:.0} req/s, substituting {sr:.0} req/s ({:.2}x), blind {br:.0} req/s ({:.2}x)",
            sr / dr,
            br / dr
        );
        let mb = |b: f64| b / 1e6;
        println!(
            "  1 MiB answers: direct {:.0} MB/s, substituting {:.0} MB/s ({:.2}x), blind {:.0} MB/s ({:.2}x)",
            mb(db),
            mb(sb),
            sb / db,
            mb(bb),
            bb / db
        );
        println!("  (targets: substituting >= 0.5x direct, blind >= 0.5x direct)");

        let before = rss_kib();
        let start = Instant::now();
        for i in 0..leaves {
            ca.leaf_for(&format!("host-{i}.bench.example")).unwrap();
        }
        let made = start.elapsed();
        let after = rss_kib();
        println!(
            "leaves: {} cached ({} made in {:.1} ms, {:.0} µs each); RSS {} KiB -> {} KiB (+{} KiB)",
            ca.cached_leaves(),
            leaves,
            made.as_secs_f64() * 1e3,
            made.as_secs_f64() * 1e6 / leaves as f64,
            before,
            after,
            after.saturating_sub(before)
        );
        shutdown.cancel();
    });
}
