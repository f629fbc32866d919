//! Binding and serving: TCP or unix socket, readiness, graceful shutdown with a deadline.
//!
//! `start` is what the binary runs: it loads keys, refuses an exposed listener without a
//! configured key, builds the state and serves until SIGTERM/SIGINT. Each accepted connection
//! is served by `connection`, which keeps the head and idle deadlines.

mod connection;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::task::TaskTracker;

use connection::Deadlines;

use crate::api::router;
use crate::auth::{ApiKeys, KeyOrigin};
use crate::config::{Config, ListenAddr};
use crate::state::AppState;

/// A bound listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("refusing to listen on non-loopback address {0} without a configured API key")]
    ExposedWithoutKey(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
}

impl Listener {
    /// Binds `addr`. For a unix socket, a stale socket file is removed (a live one is an
    /// error) and the new one is made mode 0600.
    pub async fn bind(addr: &ListenAddr) -> Result<Self, StartError> {
        let bind_err = |source| StartError::Bind { addr: describe(addr), source };
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a).await.map(Self::Tcp).map_err(bind_err),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await.map_err(bind_err)?;
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
                Ok(Self::Unix(listener))
            }
        }
    }

    /// The address actually bound (with the real port after binding port 0).
    pub fn local_addr(&self) -> io::Result<String> {
        match self {
            Self::Tcp(l) => l.local_addr().map(|a| a.to_string()),
            Self::Unix(l) => {
                Ok(format!("unix:{}", l.local_addr()?.as_pathname().unwrap_or(Path::new("?")).display()))
            }
        }
    }
}

fn describe(addr: &ListenAddr) -> String {
    match addr {
        ListenAddr::Tcp(a) => a.to_string(),
        ListenAddr::Unix(p) => format!("unix:{}", p.display()),
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if !meta.file_type().is_socket() => {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "path exists and is not a socket"))
        }
        Ok(_) => match tokio::net::UnixStream::connect(path).await {
            Ok(_) => Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is serving this socket")),
            Err(_) => std::fs::remove_file(path),
        },
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then drains for at most the
/// configured shutdown timeout.
pub async fn serve(
    listener: Listener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = router(state.clone());
    let token = state.shutdown.clone();
    let drain = {
        let token = token.clone();
        async move {
            tokio::select! {
                () = shutdown => token.cancel(),
                () = token.cancelled() => {}
            }
        }
    };
    tokio::spawn(drain);
    let deadlines = Deadlines { header: state.http.header_timeout, idle: state.http.idle_timeout };
    if let Some(egress) = &state.egress {
        egress.spawn_if_ready();
    }
    release_startup_memory();
    state.set_ready(true);
    let connections = TaskTracker::new();
    let served = async {
        loop {
            let accepted = tokio::select! {
                () = token.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (app, token) = (app.clone(), token.clone());
            match accepted {
                Ok(Accepted::Tcp(io)) => connections.spawn(connection::serve(io, app, deadlines, token)),
                Ok(Accepted::Unix(io)) => connections.spawn(connection::serve(io, app, deadlines, token)),
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors or memory: wait for connections to close rather
                    // than spin (the error would repeat at once).
                    tracing::warn!("cannot accept connections: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
        }
        drop(listener);
        connections.close();
        connections.wait().await;
    };
    let timeout = state.http.shutdown_timeout;
    tokio::pin!(served);
    tokio::select! {
        () = &mut served => Ok(()),
        () = async { token.cancelled().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!(seconds = timeout.as_secs(), "shutdown deadline passed; closing remaining connections");
            Ok(())
        }
    }
}

/// Pause after an accept error that is not about one connection (e.g. `EMFILE`).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// An accepted connection of either kind.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                // Small answers and stream frames go out at once, not after a delayed ACK.
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream))
            }
            Self::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Runs the service as the binary does: load keys, bind, serve until SIGTERM or SIGINT.
pub async fn start(config: Config) -> Result<(), StartError> {
    let keys = ApiKeys::load(&config.auth)?;
    match keys.origin() {
        KeyOrigin::Configured => tracing::info!(count = keys.keys().len(), "api keys configured"),
        KeyOrigin::Generated(p) => tracing::info!(path = %p.display(), "generated an api key"),
        KeyOrigin::Reused(p) => tracing::info!(path = %p.display(), "reusing the generated api key"),
    }
    if !config.listen.is_local() && *keys.origin() != KeyOrigin::Configured {
        return Err(StartError::ExposedWithoutKey(describe(&config.listen)));
    }
    let state = AppState::new(&config, keys)?;
    // Install the handlers before saying "listening", so a signal sent right after that
    // line is a graceful stop, not the default disposition.
    let shutdown = shutdown_signal();
    let listener = Listener::bind(&config.listen).await?;
    let addr = listener.local_addr().unwrap_or_default();
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "listening");
    if let Some(discovery) = config.discovery.clone() {
        let (registry, resolver, token) =
            (state.registry.clone(), state.resolver.clone(), state.shutdown.clone());
        let runs = state.metrics.discovery.clone();
        tokio::spawn(crate::secrets::discovery::run(discovery, registry, resolver, runs, token));
    }
    let result = serve(listener, state, shutdown).await;
    if let ListenAddr::Unix(path) = &config.listen {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    result
}

/// Installs SIGTERM and SIGINT handlers now; the returned future completes on either.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}

/// Start-up's scratch memory (argument parsing, the OpenAPI document before it was
/// serialised, loading the state file) is free by now, but glibc's allocator keeps free pages
/// in the middle of its heap resident; hand them back once, so an idle sidecar holds only what
/// it uses. Other allocators (musl's) return such memory on their own.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory inside the allocator; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}
