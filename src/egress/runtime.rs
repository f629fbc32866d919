//! Egress mode's runtime: the proxy's listening socket and counters, made when the state is
//! built (so the address commands are given is the one bound, and a configured port 0
//! works), and the in-memory CA, the CA bundle and the proxy task, made when first needed.
//!
//! Nobody can use the proxy before the first command that holds a placeholder (there is no
//! credential before it), so the CA, the bundle and the proxy with its TLS configurations
//! are made then, just before that command starts ([`Runtime::ensure_running`]); a sidecar
//! that never binds a secret never holds them (about half a MiB of idle RSS). Bindings
//! configured at start make egress mode clearly wanted: then the CA and the bundle are made
//! at start, where a failure stops the service, and the proxy starts with the HTTP service.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use super::bundle::write_bundle;
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
    /// The CA or the bundle could not be made.
    #[error("{0}")]
    Prepare(String),
}

/// What the proxy needs: the socket and counters from start, the CA once needed.
pub struct Runtime {
    stats: Arc<EgressStats>,
    addr: SocketAddr,
    config: ProxyConfig,
    /// Taken once, by whoever starts the proxy.
    listener: Mutex<Option<TcpListener>>,
    /// The CA, made (and written into the bundle) once; a failure is kept, not retried.
    ca: OnceLock<Result<Arc<Ca>, String>>,
    bundle: PathBuf,
    inherited_bundle: Option<PathBuf>,
    grants: Arc<Grants>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Reads the extra roots and binds `cfg.listen`; with bindings configured, also makes the
    /// CA and writes the bundle. The proxy will check credentials in `grants` and stop when
    /// `shutdown` is cancelled.
    pub fn start(
        cfg: &EgressConfig,
        grants: Arc<Grants>,
        shutdown: CancellationToken,
    ) -> Result<Self, RuntimeError> {
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
        let runtime = Self {
            stats,
            addr,
            config,
            listener: Mutex::new(Some(listener)),
            ca: OnceLock::new(),
            bundle: cfg.ca_bundle.clone(),
            inherited_bundle: cfg.inherited_bundle.clone(),
            grants,
            shutdown,
        };
        if !cfg.bindings.is_empty() {
            runtime.make_ca()?;
        }
        Ok(runtime)
    }

    /// Makes the CA and writes the bundle, once; a failure is kept (as its message) and
    /// returned again to later callers.
    fn make_ca(&self) -> Result<&Arc<Ca>, RuntimeError> {
        let made = self.ca.get_or_init(|| {
            let ca = Ca::new().map_err(|e| RuntimeError::Ca(e).to_string())?;
            write_bundle(&self.bundle, self.inherited_bundle.as_deref(), Some(ca.cert_pem()))
                .map_err(|e| format!("{e}: {}", e.source))?;
            Ok(Arc::new(ca))
        });
        made.as_ref().map_err(|e| RuntimeError::Prepare(e.clone()))
    }

    /// Makes sure the CA and bundle exist and the proxy is running; called before a command
    /// that holds placeholders starts. A failure is logged once and leaves the command
    /// failing closed: it never holds a real value, and bound hosts cannot be reached.
    pub fn ensure_running(&self) {
        let first = self.ca.get().is_none();
        match self.make_ca() {
            Ok(_) => self.spawn(),
            Err(e) if first => tracing::error!("egress proxy not started: {e}"),
            Err(_) => {}
        }
    }

    /// Starts the proxy if the CA exists (bindings configured at start); the HTTP service
    /// calls this as it starts.
    pub fn spawn_if_ready(&self) {
        if matches!(self.ca.get(), Some(Ok(_))) {
            self.spawn();
        }
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate, PEM, once the CA exists.
    pub fn ca_pem(&self) -> Option<&str> {
        match self.ca.get() {
            Some(Ok(ca)) => Some(ca.cert_pem()),
            _ => None,
        }
    }

    /// The proxy's counters (registered with the service's metrics).
    pub fn stats(&self) -> &Arc<EgressStats> {
        &self.stats
    }

    /// Starts the proxy on the bound socket, once; later calls do nothing (as do calls
    /// outside a tokio runtime, which leave it for the next).
    fn spawn(&self) {
        let Some(Ok(ca)) = self.ca.get() else { return };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
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
        let (config, ca, stats) = (self.config.clone(), Arc::clone(ca), self.stats.clone());
        let (grants, shutdown) = (Arc::clone(&self.grants), self.shutdown.clone());
        tokio::spawn(proxy::serve(listener, config, grants, ca, stats, shutdown));
    }
}
