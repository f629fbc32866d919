//! Raw HTTP/1.1 over a fresh loopback connection, for requests a client library would
//! refuse or normalise: dot segments and odd bytes in paths, control characters in headers,
//! invalid bytes in bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back: status, lowercased header names with values, and the body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, each line ending in CRLF, without the blank
/// line) plus `Connection: close`, then `body`; reads the answer to EOF within 30 s.
pub async fn send(base: &str, head: &[u8], body: &[u8]) -> Result<RawResponse, String> {
    let addr = base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut request = head.to_vec();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    conn.write_all(&request).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .map_err(|_| "no complete answer within 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    parse(&answer)
}

/// A request head with the usual headers: `Host` (the service's address), the API key, a
/// JSON content type and a length when there is a body.
pub fn head(base: &str, method: &str, target: &[u8], key: &str, body_len: Option<usize>) -> Vec<u8> {
    let host = base.trim_start_matches("http://");
    let mut h = Vec::new();
    h.extend_from_slice(method.as_bytes());
    h.push(b' ');
    h.extend_from_slice(target);
    h.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\nX-Session-API-Key: {key}\r\n").as_bytes());
    if let Some(n) = body_len {
        h.extend_from_slice(format!("Content-Type: application/json\r\nContent-Length: {n}\r\n").as_bytes());
    }
    h
}

fn parse(answer: &[u8]) -> Result<RawResponse, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no response head in {:?}", String::from_utf8_lossy(answer)))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &answer[split + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Ok(RawResponse { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        body.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    body
}
