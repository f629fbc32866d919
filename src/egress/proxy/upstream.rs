//! Connections from the proxy to the outside: TCP (resolve pins first, then name resolution,
//! or a `CONNECT` through the upstream proxy), and verified TLS on top.
//!
//! TLS trusts the compiled-in web roots plus the configured extra roots, never the system
//! store (a root command can add a CA there) and never skips verification; the name verified
//! (and sent as SNI) is the host the request is for. This is the half of the proxy's invariant
//! that lives here: a connection handed out for `https` has verified for that host, and the
//! connection pool keys connections by that same host and port.
//!
//! [`Upstream`] is also the `hyper-util` connector of the keep-alive pool (`tower::Service`
//! over the request URI).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use url::Url;
use zeroize::Zeroizing;

use crate::dns::SystemResolver;

/// Longest upstream-proxy answer head read.
const MAX_PROXY_HEAD: usize = 8 * 1024;

/// Why an upstream connection could not be made. Names hosts and ports only.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The name did not resolve.
    #[error("cannot resolve {host}: {cause}")]
    Resolve { host: String, cause: String },
    /// No address accepted the connection.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect { host: String, port: u16, source: io::Error },
    /// The certificate did not verify for the host, or the handshake failed.
    #[error("TLS with {host} failed: {cause}")]
    Tls { host: String, cause: String },
    /// The upstream proxy refused or botched the `CONNECT`.
    #[error("upstream proxy did not open a tunnel to {host}:{port}: {cause}")]
    UpstreamProxy { host: String, port: u16, cause: String },
    /// Connecting (TCP, upstream proxy, TLS) took longer than the connect timeout.
    #[error("connecting to {host}:{port} timed out after {after:?}")]
    Timeout { host: String, port: u16, after: Duration },
    /// The target or the configuration cannot be used (scheme, host, roots).
    #[error("unsupported upstream target {0}")]
    Target(String),
}

impl ConnectError {
    /// True when TLS verification or the handshake failed.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }
}

/// The upstream proxy to chain through: its address and, if its URL had userinfo, the
/// `Proxy-Authorization` value.
struct Chained {
    host: String,
    port: u16,
    authorization: Option<Zeroizing<String>>,
}

struct Inner {
    tls: TlsConnector,
    pins: HashMap<String, IpAddr>,
    chained: Option<Chained>,
    resolver: SystemResolver,
    connect_timeout: Duration,
}

/// Opens upstream connections. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Upstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("pins", &self.inner.pins.len())
            .field("chained", &self.inner.chained.is_some())
            .finish()
    }
}

impl Upstream {
    /// Builds the connector: roots are the web roots plus `extra_roots`; `resolve` pins names;
    /// `upstream_proxy` (an `http://` URL, userinfo allowed) chains every connection.
    pub(crate) fn new(
        extra_roots: &[CertificateDer<'static>],
        resolve: &[(String, IpAddr)],
        upstream_proxy: Option<&Url>,
        connect_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| ConnectError::Tls { host: "extra root".into(), cause: e.to_string() })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::Tls { host: "client config".into(), cause: e.to_string() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pins = resolve.iter().map(|(h, ip)| (normalise(h), *ip)).collect();
        let chained = upstream_proxy.map(chained).transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                tls: TlsConnector::from(Arc::new(config)),
                pins,
                chained,
                resolver: SystemResolver::system(),
                connect_timeout,
            }),
        })
    }

    /// A TCP stream to `host:port` (directly or through the upstream proxy).
    pub(crate) async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let after = self.inner.connect_timeout;
        let timeout = || ConnectError::Timeout { host: host.to_owned(), port, after };
        tokio::time::timeout(after, self.tcp_inner(host, port)).await.map_err(|_| timeout())?
    }

    /// A TLS stream to `host:port` whose certificate verified for `host`.
    pub(crate) async fn tls(&self, host: &str, port: u16) -> Result<TlsStream<TcpStream>, ConnectError> {
        let after = self.inner.connect_timeout;
        let timeout = || ConnectError::Timeout { host: host.to_owned(), port, after };
        tokio::time::timeout(after, async {
            let tcp = self.tcp_inner(host, port).await?;
            let name =
                ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::Target(host.to_owned()))?;
            self.inner
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls { host: host.to_owned(), cause: e.to_string() })
        })
        .await
        .map_err(|_| timeout())?
    }

    async fn tcp_inner(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        if let Some(chained) = &self.inner.chained {
            let mut stream = self.dial(&chained.host, chained.port).await?;
            open_tunnel(&mut stream, host, port, chained.authorization.as_deref().map(String::as_str))
                .await
                .map_err(|cause| ConnectError::UpstreamProxy { host: host.to_owned(), port, cause })?;
            return Ok(stream);
        }
        self.dial(host, port).await
    }

    /// Connects to the first address of `host` that answers.
    async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let key = normalise(host);
        let addrs: Vec<IpAddr> = if let Some(ip) = self.inner.pins.get(&key) {
            vec![*ip]
        } else if let Ok(ip) = key.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            vec![ip]
        } else {
            self.inner
                .resolver
                .lookup(&key)
                .await
                .map_err(|e| ConnectError::Resolve { host: host.to_owned(), cause: e.to_string() })?
        };
        let mut last = None;
        for ip in addrs {
            match TcpStream::connect(SocketAddr::new(ip, port)).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Connect {
            host: host.to_owned(),
            port,
            source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
        })
    }
}

fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn chained(url: &Url) -> Result<Chained, ConnectError> {
    if url.scheme() != "http" {
        return Err(ConnectError::Target(format!("upstream proxy scheme {}", url.scheme())));
    }
    let host = url.host_str().ok_or_else(|| ConnectError::Target("upstream proxy without host".into()))?;
    let authorization = (!url.username().is_empty()).then(|| {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        let mut plain = Zeroizing::new(user.as_bytes().to_vec());
        plain.push(b':');
        plain.extend_from_slice(pass.as_bytes());
        Zeroizing::new(format!("Basic {}", STANDARD.encode(plain.as_slice())))
    });
    Ok(Chained {
        host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port: url.port_or_known_default().unwrap_or(80),
        authorization,
    })
}

fn percent_decode(s: &str) -> Zeroizing<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

/// Asks an HTTP proxy on `stream` for a tunnel to `host:port`; reads its answer head exactly,
/// so nothing of the tunnel is consumed.
async fn open_tunnel(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&str>,
) -> Result<(), String> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut head = Zeroizing::new(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"));
    if let Some(auth) = auth {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_PROXY_HEAD {
            return Err("answer head too long".into());
        }
        let byte = stream.read_u8().await.map_err(|e| e.to_string())?;
        answer.push(byte);
    }
    let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status_line);
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(format!("answered {:?}", status.trim_end()))
    }
}

/// An upstream connection as the pool holds it.
pub(crate) enum UpstreamConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tower::Service<Uri> for Upstream {
    type Response = TokioIo<UpstreamConn>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| ConnectError::Target("uri without host".into()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let conn = match uri.scheme_str() {
                Some("https") => {
                    UpstreamConn::Tls(Box::new(this.tls(&host, uri.port_u16().unwrap_or(443)).await?))
                }
                Some("http") => UpstreamConn::Plain(this.tcp(&host, uri.port_u16().unwrap_or(80)).await?),
                other => return Err(ConnectError::Target(format!("scheme {other:?}"))),
            };
            Ok(TokioIo::new(conn))
        })
    }
}
