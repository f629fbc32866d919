//! The HTTP/1.1 forward proxy (absolute-form requests and `CONNECT`) that puts real values
//! into requests to bound hosts (contract §8).
//!
//! A request's path:
//! - Every request must present a live per-command credential (`auth`), else 407.
//! - `CONNECT` (`tunnel`): to a host none of the credential's grants is bound to, a blind
//!   tunnel (nothing read, nothing logged). To a bound host, the first bytes decide: a TLS
//!   ClientHello is answered with a leaf from the [`Ca`] for the CONNECT authority (ALPN
//!   `http/1.1` only) and each request inside goes through `forward::intercepted`; anything
//!   else is a blind tunnel too.
//! - Inside an intercepted tunnel (`forward`): `Host` must match the authority (else 421),
//!   `Upgrade` is refused, placeholders are substituted in the places the bindings name
//!   ([`substitute`]) and reported everywhere else (`scan`), and the request goes over a
//!   verified TLS connection (`upstream`) from a keep-alive pool. Answers are decoded if they
//!   came compressed (`decode`) and reflected (`reflect`): encodings of the value become those
//!   of the placeholder.
//! - Absolute-form `http://` requests are forwarded unchanged; placeholders in them are
//!   reported.
//!
//! The invariant this module exists for: **a real value is only ever written into a TLS
//! connection whose certificate verified, against the web roots plus the configured extra
//! roots, for a host the secret is bound to.** Substitution considers only grants whose binding
//! covers the tunnel's authority; the upstream request goes to that same authority; the pool
//! keys connections by it and the connector verifies exactly that name.
//!
//! Not here: issuing credentials and placeholders, the environment commands get, the CA bundle
//! file, flags (the command pipeline and config own those).

mod auth;
mod body;
mod decode;
mod forward;
mod idle;
mod reflect;
mod respond;
mod scan;
mod stats;
#[doc(hidden)]
pub mod substitute;
mod tunnel;
mod upstream;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use auth::token as credential_token;
pub use stats::EgressStats;
pub use upstream::ConnectError;

use self::body::ProxyBody;
use self::upstream::Upstream;
use super::ca::Ca;
use super::grant::Grants;

/// How the proxy reaches the outside, and its bounds.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Roots trusted upstream besides the compiled-in web roots (`--egress-extra-ca-file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Names answered without resolution (`--egress-resolve HOST=IP`).
    pub resolve: Vec<(String, IpAddr)>,
    /// An `http://` proxy every upstream connection is tunnelled through
    /// (`--egress-upstream-proxy`); its userinfo, if any, becomes `Proxy-Authorization`.
    pub upstream_proxy: Option<Url>,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head accepted (hyper answers 431 beyond it).
    pub max_header_bytes: usize,
    /// Time a client has to send a request head, and to start a TLS handshake in a tunnel.
    pub client_timeout: Duration,
    /// Time to open an upstream connection (TCP, upstream proxy, TLS handshake).
    pub connect_timeout: Duration,
    /// How long an idle upstream connection stays pooled.
    pub pool_idle_timeout: Duration,
    /// Longest upstream silence: from the request to the answer head, and between body
    /// frames. Past it the client gets 504 (no head yet) or a cut body. A slow but moving
    /// body is not cut.
    pub upstream_idle_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            resolve: Vec::new(),
            upstream_proxy: None,
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            client_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            upstream_idle_timeout: Duration::from_secs(120),
        }
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The upstream proxy URL may carry a password: only its host is shown.
        f.debug_struct("ProxyConfig")
            .field("extra_roots", &self.extra_roots.len())
            .field("resolve", &self.resolve)
            .field(
                "upstream_proxy",
                &self.upstream_proxy.as_ref().and_then(|u| u.host_str().map(str::to_owned)),
            )
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("client_timeout", &self.client_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("upstream_idle_timeout", &self.upstream_idle_timeout)
            .finish()
    }
}

impl ProxyConfig {
    /// Checks what [`serve`] would otherwise only log: the extra roots parse and the upstream
    /// proxy URL is usable.
    pub fn validate(&self) -> Result<(), ConnectError> {
        Upstream::new(&self.extra_roots, &self.resolve, self.upstream_proxy.as_ref(), self.connect_timeout)
            .map(drop)
    }
}

/// What every connection of one proxy shares.
pub(crate) struct Shared {
    grants: Arc<Grants>,
    ca: Arc<Ca>,
    stats: Arc<EgressStats>,
    upstream: Upstream,
    client: Client<Upstream, ProxyBody>,
    /// The server side of intercepted tunnels; each tunnel clones it with its own leaf.
    tls_base: Arc<ServerConfig>,
    config: ProxyConfig,
    shutdown: CancellationToken,
}

/// Serves the proxy on `listener` until `shutdown` is cancelled; then stops accepting and ends
/// open connections and tunnels. A configuration [`ProxyConfig::validate`] would refuse is
/// logged and nothing is served.
pub async fn serve(
    listener: TcpListener,
    config: ProxyConfig,
    grants: Arc<Grants>,
    ca: Arc<Ca>,
    stats: Arc<EgressStats>,
    shutdown: CancellationToken,
) {
    let upstream = match Upstream::new(
        &config.extra_roots,
        &config.resolve,
        config.upstream_proxy.as_ref(),
        config.connect_timeout,
    ) {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::error!(%error, "egress proxy not started");
            return;
        }
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(upstream.clone());
    let tls_base = match tunnel::server_config() {
        Ok(c) => Arc::new(c),
        Err(error) => {
            tracing::error!(%error, "egress proxy not started");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let shared = Arc::new(Shared { grants, ca, stats, upstream, client, tls_base, config, shutdown });
    loop {
        let permit = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let permit = Arc::new(permit);
        tokio::spawn(async move {
            let service = {
                let shared = Arc::clone(&shared);
                service_fn(move |req| forward::outer(req, Arc::clone(&shared), Arc::clone(&permit)))
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.config.client_timeout)
                .max_buf_size(shared.config.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(error) = res {
                        tracing::debug!(%error, "egress proxy connection ended");
                    }
                }
                () = shared.shutdown.cancelled() => {}
            }
        });
    }
}
