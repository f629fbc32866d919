//! Egress mode at start: the in-memory CA, the proxy's listening socket and its counters,
//! made when the state is built, so the address commands are given is the one bound (a
//! configured port 0 works) and the CA bundle holds the CA before any command runs. The
//! proxy itself starts with the HTTP service (`crate::server::serve`), which takes the
//! socket from here.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use super::ca::{Ca, CaError};
use super::grant::Grants;
use super::proxy::{self, EgressStats, ProxyConfig};
use crate::config::EgressConfig;

/// Why egress mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("egress CA: {0}")]
    Ca(#[from] CaError),
    #[error("--egress-listen {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("--egress-extra-ca-file {path}: no usable PEM certificate")]
    ExtraRoots { path: String },
}

/// What the proxy needs, made at start.
pub struct Runtime {
    ca: Arc<Ca>,
    stats: Arc<EgressStats>,
    addr: SocketAddr,
    config: ProxyConfig,
    /// Taken once, by the service that starts the proxy.
    listener: Mutex<Option<TcpListener>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Makes the CA, reads the extra roots and binds `cfg.listen`.
    pub fn start(cfg: &EgressConfig) -> Result<Self, RuntimeError> {
        let ca = Arc::new(Ca::new()?);
        let extra_roots = match &cfg.extra_ca_file {
            Some(path) => {
                let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|_| RuntimeError::ExtraRoots { path: path.display().to_string() })?
                    .collect::<Result<_, _>>()
                    .map_err(|_| RuntimeError::ExtraRoots { path: path.display().to_string() })?;
                if roots.is_empty() {
                    return Err(RuntimeError::ExtraRoots { path: path.display().to_string() });
                }
                roots
            }
            None => Vec::new(),
        };
        let config = ProxyConfig {
            extra_roots,
            resolve: cfg.resolve.clone(),
            upstream_proxy: cfg.upstream_proxy.clone(),
            ..ProxyConfig::default()
        };
        let listen = |source| RuntimeError::Listen { addr: cfg.listen, source };
        let listener = TcpListener::bind(cfg.listen).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let stats = Arc::new(EgressStats::new());
        Ok(Self { ca, stats, addr, config, listener: Mutex::new(Some(listener)) })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate, PEM, for the commands' bundle.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The proxy's counters (registered with the service's metrics).
    pub fn stats(&self) -> &Arc<EgressStats> {
        &self.stats
    }

    /// Starts the proxy on the bound socket, once; later calls do nothing. It stops when
    /// `shutdown` is cancelled.
    pub fn spawn(&self, grants: Arc<Grants>, shutdown: CancellationToken) {
        let taken = self.listener.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(listener) = taken else { return };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!("egress proxy: cannot use its socket: {e}");
                return;
            }
        };
        tracing::info!(addr = %self.addr, "egress proxy listening");
        let (config, ca, stats) = (self.config.clone(), self.ca.clone(), self.stats.clone());
        tokio::spawn(proxy::serve(listener, config, grants, ca, stats, shutdown));
    }
}
