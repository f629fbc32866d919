//! `secret-sidecar health`: asks a running sidecar's `GET /ready` and turns the answer into
//! an exit code, for a container `HEALTHCHECK` or an exec probe in an image that has no curl
//! (the sidecar's own image has nothing but this binary).
//!
//! It speaks just enough HTTP/1.1 to read one status line, over TCP or the sidecar's unix
//! socket, and gives up after [`TIMEOUT`]. Names in `--url` go through
//! `dns::SystemResolver`. The default target is derived from the listen address the
//! sidecar is configured with (`SECRET_SIDECAR_LISTEN`), a wildcard address being probed on
//! loopback.
//!
//! Invariant: success means a 200 status line was read from `/ready`; anything else —
//! refused, timed out, another status, a malformed answer — is a failure with a reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::cli::HealthArgs;
use crate::dns::SystemResolver;

/// The whole probe (resolve, connect, ask, read) must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Longest status line read.
const MAX_STATUS_LINE: usize = 1024;

/// Where the probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `host` as written (a name or an IP, IPv6 in brackets), for `Host` and resolution.
    Tcp { host: String, port: u16, path: String },
    /// A unix socket path.
    Unix(PathBuf),
}

impl Target {
    /// From `--url` if given, else from the listen address.
    pub fn from_args(args: &HealthArgs) -> Result<Self, String> {
        match &args.url {
            Some(url) => Self::from_url(url),
            None => Self::from_listen(&args.listen),
        }
    }

    fn from_url(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Self::unix(path);
        }
        let url = url::Url::parse(text).map_err(|e| format!("--url: {e}"))?;
        if url.scheme() != "http" {
            return Err("--url: must be http://HOST:PORT or unix:/path".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err("--url: needs a host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let path = format!("{}/ready", url.path().trim_end_matches('/'));
        Ok(Self::Tcp { host, port, path })
    }

    fn from_listen(listen: &str) -> Result<Self, String> {
        if let Some(path) = listen.strip_prefix("unix:") {
            return Self::unix(path);
        }
        let addr: SocketAddr =
            listen.parse().map_err(|_| format!("listen address {listen} is not IP:PORT or unix:/path"))?;
        let ip = match addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Ok(Self::Tcp { host, port: addr.port(), path: "/ready".into() })
    }

    fn unix(path: &str) -> Result<Self, String> {
        if path.is_empty() { Err("unix: needs a path".into()) } else { Ok(Self::Unix(PathBuf::from(path))) }
    }
}

/// Probes `target`: `Ok` on a 200 from `/ready` within [`TIMEOUT`], else why not.
pub async fn check(target: &Target) -> Result<(), String> {
    match tokio::time::timeout(TIMEOUT, ask(target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
    }
}

async fn ask(target: &Target) -> Result<(), String> {
    match target {
        Target::Unix(path) => {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
            exchange(stream, "localhost", "/ready").await
        }
        Target::Tcp { host, port, path } => {
            let ips = SystemResolver::system().lookup(host).await.map_err(|e| e.to_string())?;
            let mut last = String::new();
            for ip in ips {
                match TcpStream::connect((ip, *port)).await {
                    Ok(stream) => return exchange(stream, &format!("{host}:{port}"), path).await,
                    Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
                }
            }
            Err(last)
        }
    }
}

/// Sends the request and checks the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> Result<(), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: secret-sidecar-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await.map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        (Some(v), Some(status)) if v.starts_with("HTTP/1.") => Err(format!("/ready answered {status}")),
        _ => Err("not an HTTP answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, listen: &str) -> HealthArgs {
        HealthArgs { url: url.map(str::to_owned), listen: listen.to_owned() }
    }

    fn tcp(host: &str, port: u16, path: &str) -> Target {
        Target::Tcp { host: host.into(), port, path: path.into() }
    }

    #[test]
    fn targets() {
        let t = |url, listen| Target::from_args(&args(url, listen));
        assert_eq!(t(None, "127.0.0.1:8001"), Ok(tcp("127.0.0.1", 8001, "/ready")));
        assert_eq!(t(None, "0.0.0.0:9000"), Ok(tcp("127.0.0.1", 9000, "/ready")));
        assert_eq!(t(None, "[::]:8001"), Ok(tcp("[::1]", 8001, "/ready")));
        assert_eq!(t(None, "[::1]:8001"), Ok(tcp("[::1]", 8001, "/ready")));
        assert_eq!(t(None, "unix:/run/s.sock"), Ok(Target::Unix("/run/s.sock".into())));
        assert_eq!(t(Some("http://localhost:7"), "0.0.0.0:1"), Ok(tcp("localhost", 7, "/ready")));
        assert_eq!(t(Some("http://Sidecar.Test/base/"), "x"), Ok(tcp("sidecar.test", 80, "/base/ready")));
        assert_eq!(t(Some("unix:/a"), "x"), Ok(Target::Unix("/a".into())));
        for bad in
            [(Some("https://x"), "127.0.0.1:1"), (Some("unix:"), "x"), (None, "nonsense"), (Some("::"), "x")]
        {
            assert!(t(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    /// A one-shot server answering `answer` to the first request; returns its port.
    async fn serve_once(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer.as_bytes()).await;
        });
        port
    }

    #[tokio::test]
    async fn status_lines() {
        let port = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(check(&tcp("127.0.0.1", port, "/ready")).await, Ok(()));
        let port = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(check(&tcp("localhost", port, "/ready")).await, Err("/ready answered 503".into()));
        let port = serve_once("SSH-2.0-x\r\n").await;
        assert_eq!(check(&tcp("127.0.0.1", port, "/ready")).await, Err("not an HTTP answer".into()));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let e = check(&tcp("127.0.0.1", port, "/ready")).await.unwrap_err();
        assert_eq!(e, "no answer within 2s");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(listener);
    }
}
