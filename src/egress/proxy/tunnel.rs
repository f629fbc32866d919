//! `CONNECT`: blind tunnels to unbound hosts, and TLS interception for bound hosts whose
//! tunnel starts with a ClientHello.
//!
//! The choice is made per credential: a host is intercepted only when one of the presenting
//! command's grants is bound to it. A blind tunnel copies bytes both ways and reads nothing,
//! so nothing inside it is logged. An intercepted tunnel presents a leaf for the CONNECT
//! authority (not for the SNI the client sends), so requests inside can only be routed to that
//! authority; `forward::intercepted` refuses any other `Host`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use super::body::ProxyBody;
use super::forward::{self, Tunnel};
use super::{Shared, respond};
use crate::egress::grant::Grant;

/// Bytes that decide whether a tunnel starts with TLS: record type and protocol version.
const HELLO_PREFIX: usize = 3;

/// The server side of intercepted tunnels, without a certificate yet.
pub(super) fn server_config() -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct NoCert;

impl ResolvesServerCert for NoCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// Presents the leaf of the CONNECT authority whatever the client names in SNI.
#[derive(Debug)]
struct Leaf(Arc<CertifiedKey>);

impl ResolvesServerCert for Leaf {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// The host and port of a `CONNECT` target, host lower-cased and without brackets.
pub(super) fn target(authority: &Authority) -> (String, u16) {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (host, authority.port_u16().unwrap_or(443))
}

/// Answers a `CONNECT` from a command holding `grants`.
pub(super) async fn connect(
    req: Request<Incoming>,
    token: Zeroizing<Vec<u8>>,
    grants: Arc<[Grant]>,
    shared: Arc<Shared>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return respond::status(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let (host, port) = target(&authority);
    if !grants.iter().any(|g| g.binding.covers(&host)) {
        // Connect before answering, so a client learns of an unreachable host by a 502.
        let upstream = match shared.upstream.tcp(&host, port).await {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(%error, "blind tunnel not opened");
                return respond::status(StatusCode::BAD_GATEWAY, "could not reach the CONNECT target");
            }
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                shared.stats.blind_tunnels.inc();
                blind(TokioIo::new(upgraded), Bytes::new(), upstream, &shared).await;
            }
        });
        return Response::new(super::body::full(Bytes::new()));
    }
    tokio::spawn(async move {
        let _permit = permit;
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            intercept_or_pass(TokioIo::new(upgraded), token, host, port, grants, shared).await;
        }
    });
    Response::new(super::body::full(Bytes::new()))
}

/// Copies both ways until either side closes or the proxy shuts down; `prefix` (bytes already
/// read from the client) goes first.
async fn blind(mut client: TokioIo<Upgraded>, prefix: Bytes, mut upstream: TcpStream, shared: &Shared) {
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = shared.shutdown.cancelled() => {}
    }
}

async fn intercept_or_pass(
    mut client: TokioIo<Upgraded>,
    token: Zeroizing<Vec<u8>>,
    host: String,
    port: u16,
    grants: Arc<[Grant]>,
    shared: Arc<Shared>,
) {
    let mut first = Vec::with_capacity(HELLO_PREFIX);
    let read = async {
        while first.len() < HELLO_PREFIX {
            let mut buf = [0u8; HELLO_PREFIX];
            let n = client.read(&mut buf[..HELLO_PREFIX - first.len()]).await?;
            if n == 0 {
                break;
            }
            first.extend_from_slice(&buf[..n]);
        }
        Ok::<_, io::Error>(())
    };
    // A client that says nothing may be speaking a protocol where the server talks first.
    let silent = match tokio::time::timeout(shared.config.client_timeout, read).await {
        Ok(Ok(())) => false,
        Ok(Err(_)) => return,
        Err(_) => true,
    };
    let prefix = Bytes::from(first);
    if silent || !is_client_hello(&prefix) {
        if let Ok(upstream) = shared.upstream.tcp(&host, port).await {
            shared.stats.blind_tunnels.inc();
            blind(client, prefix, upstream, &shared).await;
        }
        return;
    }
    let leaf = match shared.ca.leaf_for(&host) {
        Ok(leaf) => leaf,
        Err(error) => {
            tracing::warn!(%error, "no leaf certificate; tunnel closed");
            return;
        }
    };
    let mut config = (*shared.tls_base).clone();
    config.cert_resolver = Arc::new(Leaf(leaf));
    let accept = TlsAcceptor::from(Arc::new(config)).accept(Prefixed { prefix, inner: client });
    let tls = match tokio::time::timeout(shared.config.client_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, host = %host, "client TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    shared.stats.intercepted.inc();
    let tunnel = Arc::new(Tunnel::new(token, host, port, grants, &shared));
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| forward::intercepted(req, Arc::clone(&tunnel), Arc::clone(&shared)))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.client_timeout)
        .max_buf_size(shared.config.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(error) = res {
                tracing::debug!(%error, "intercepted connection ended");
            }
        }
        () = shared.shutdown.cancelled() => {}
    }
}

/// A TLS handshake record (`0x16`) of TLS 1.0–1.3 (`0x03 0x01..=0x04`; SSL 3.0's `0x00` too,
/// which the handshake itself then refuses).
fn is_client_hello(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, 0x00..=0x04, ..])
}

/// A stream whose first bytes were already read: they are replayed before the rest.
struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_detection() {
        assert!(is_client_hello(&[0x16, 0x03, 0x01]));
        assert!(is_client_hello(&[0x16, 0x03, 0x03, 0x00]));
        assert!(!is_client_hello(b"GET"));
        assert!(!is_client_hello(&[0x16, 0x03]));
        assert!(!is_client_hello(&[]));
        assert!(!is_client_hello(&[0x16, 0x03, 0x09]));
    }

    #[test]
    fn targets() {
        let (h, p) = target(&"API.Example.com.:8443".parse().unwrap());
        assert_eq!((h.as_str(), p), ("api.example.com", 8443));
        let (h, p) = target(&"[::1]:443".parse().unwrap());
        assert_eq!((h.as_str(), p), ("::1", 443));
        assert_eq!(target(&"example.com".parse().unwrap()).1, 443);
    }
}
