//! The egress proxy in-process on `127.0.0.1:0`, with one binding (`GITHUB_TOKEN` to
//! `api.test.example` and `bad.test.example`, header `x-api-key`, query `key`), clients that
//! go through it, and log capture.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use http::HeaderName;
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use secret_sidecar::egress::binding::{Binding, HostPattern};
use secret_sidecar::egress::ca::Ca;
use secret_sidecar::egress::grant::{Credential, Grant, Grants};
use secret_sidecar::egress::proxy::{EgressStats, ProxyConfig, serve};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The real value: `/` and `+` make its percent form longer, so reflection must re-frame.
pub const VALUE: &str = "ghp_Real/Value+0123456789abcdefghijklmno";
/// Its placeholder: same length, same prefix.
pub const HOLDER: &str = "ghp_PLACEHOLDERxyz0123456789abcdefghijkl";
pub const NAME: &str = "GITHUB_TOKEN";
pub const BOUND: &str = "api.test.example";
pub const BAD: &str = "bad.test.example";
pub const UNBOUND: &str = "open.test.example";

pub struct Proxy {
    pub port: u16,
    pub stats: Arc<EgressStats>,
    pub ca: Arc<Ca>,
    pub grants: Arc<Grants>,
    shutdown: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Proxy {
    /// Starts the proxy trusting `extra_roots` upstream; every test host resolves to loopback.
    pub async fn start(extra_roots: Vec<CertificateDer<'static>>) -> Self {
        Self::start_with(extra_roots, |_| {}).await
    }

    /// [`Proxy::start`] with further configuration.
    pub async fn start_with(
        extra_roots: Vec<CertificateDer<'static>>,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> Self {
        assert_eq!(VALUE.len(), HOLDER.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut config = ProxyConfig {
            extra_roots,
            resolve: [BOUND, BAD, UNBOUND, "other.test.example"]
                .iter()
                .map(|h| (h.to_string(), loopback))
                .collect(),
            ..ProxyConfig::default()
        };
        tweak(&mut config);
        config.validate().unwrap();
        let (grants, ca, stats) = (Grants::new(), Arc::new(Ca::new().unwrap()), Arc::new(EgressStats::new()));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            config,
            Arc::clone(&grants),
            Arc::clone(&ca),
            Arc::clone(&stats),
            shutdown.clone(),
        ));
        Self { port, stats, ca, grants, shutdown }
    }

    /// A credential for the one grant.
    pub fn issue(&self) -> Credential {
        self.grants.issue(vec![Grant {
            name: NAME.into(),
            placeholder: SecretString::from(HOLDER),
            value: SecretString::from(VALUE),
            binding: Arc::new(Binding {
                hosts: vec![HostPattern::Exact(BOUND.into()), HostPattern::Exact(BAD.into())],
                headers: vec![HeaderName::from_static("x-api-key")],
                query: vec!["key".into()],
            }),
        }])
    }

    /// `http://cmd:TOKEN@127.0.0.1:PORT`.
    pub fn url(&self, cred: &Credential) -> String {
        format!("http://{}:{}@127.0.0.1:{}", Credential::USER, cred.token().expose_secret(), self.port)
    }

    /// A client through the proxy trusting only the given CA certificates (PEM).
    pub fn client(&self, cred: &Credential, trusted: &[&str]) -> reqwest::Client {
        let proxy = reqwest::Proxy::all(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .basic_auth(Credential::USER, cred.token().expose_secret());
        let mut builder = reqwest::Client::builder()
            .proxy(proxy)
            .tls_built_in_root_certs(false)
            .timeout(std::time::Duration::from_secs(30));
        for pem in trusted {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }
}

/// Log output of the current (single-threaded) test runtime.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

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
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Fails when `text` holds the real value or any encoding of it the mask module knows.
pub fn assert_no_value(what: &str, text: &[u8]) {
    for pattern in secret_sidecar::mask::derive_patterns(VALUE.as_bytes(), 8) {
        assert!(
            !text.windows(pattern.len()).any(|w| w == pattern.as_slice()),
            "{what} holds an encoding of the value: {}",
            String::from_utf8_lossy(text)
        );
    }
}

/// A unique path under the temporary directory.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("egress-{}-{}-{name}", std::process::id(), uuid::Uuid::new_v4()))
}
