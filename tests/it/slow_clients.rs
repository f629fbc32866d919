//! Slow clients against the real binary: connections that never finish a request head, that
//! stall a body, or that sit idle must neither hold request slots nor stay open past the
//! deadlines set by `--header-timeout`, `--body-timeout` and `--idle-timeout`.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::bin::BinApp;

const KEY: &str = "slow-clients-key-3e9";
/// Connections the test holds open at once, in four kinds.
const CONNECTIONS: usize = 1500;
const HEADER_TIMEOUT: u64 = 8;
const BODY_TIMEOUT: u64 = 9;
const IDLE_TIMEOUT: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a head, then a byte now and then.
    PartialHead,
    /// Sends a whole authenticated head declaring 100 body bytes, then a byte now and then.
    StalledBody,
    /// Sends one complete request, reads the answer, then waits.
    Idle,
}

struct Conn {
    kind: Kind,
    stream: TcpStream,
    received: Vec<u8>,
    closed: bool,
}

/// 1,500 sockets here and 1,500 in the service (which inherits the limit) need more than the
/// common soft limit of 1,024 descriptors.
fn raise_fd_limit() {
    let mut rlim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim), 0);
        if rlim.rlim_cur < rlim.rlim_max {
            rlim.rlim_cur = rlim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rlim);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim), 0);
    }
    assert!(rlim.rlim_cur as usize > 2 * CONNECTIONS + 200, "descriptor limit {} too low", rlim.rlim_cur);
}

/// Reads one whole response (head and `Content-Length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

async fn open(addr: &str, kind: Kind) -> Conn {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    match kind {
        Kind::Silent => {}
        Kind::PartialHead => {
            stream.write_all(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ").await.unwrap()
        }
        Kind::StalledBody => {
            let head = format!(
                "POST /api/mask HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-API-Key: {KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
        }
        Kind::Idle => {
            stream.write_all(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
            assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        }
    }
    Conn { kind, stream, received: Vec::new(), closed: false }
}

/// One more byte on every connection that dribbles (errors ignored: it may be closed).
fn dribble(conns: &[Conn]) {
    for c in conns.iter().filter(|c| !c.closed && matches!(c.kind, Kind::PartialHead | Kind::StalledBody)) {
        let _ = c.stream.try_write(b" ");
    }
}

/// Reads whatever each open connection has, without waiting; marks the closed ones.
fn poll_closed(conns: &mut [Conn]) -> usize {
    for c in conns.iter_mut().filter(|c| !c.closed) {
        let mut buf = [0u8; 4096];
        loop {
            match c.stream.try_read(&mut buf) {
                Ok(0) => c.closed = true,
                Ok(n) => {
                    c.received.extend_from_slice(&buf[..n]);
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.closed = true,
            }
            break;
        }
    }
    conns.iter().filter(|c| c.closed).count()
}

/// `GET /alive` and an authenticated `POST /api/mask` on fresh connections, each answered
/// within a second.
async fn well_behaved(base: &str) {
    for _ in 0..3 {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let started = Instant::now();
        let alive = client.get(format!("{base}/alive")).send().await.unwrap();
        assert_eq!(alive.status(), 200);
        alive.bytes().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "GET /alive took {:?}", started.elapsed());
        let started = Instant::now();
        let masked = client
            .post(format!("{base}/api/mask"))
            .header("X-Session-API-Key", KEY)
            .json(&json!({"text": "hello"}))
            .send()
            .await
            .unwrap();
        let status = masked.status();
        let body = masked.text().await.unwrap();
        assert_eq!(status, 200, "a stalled body must not hold a request slot: {body}");
        assert!(started.elapsed() < Duration::from_secs(1), "POST /api/mask took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_no_slot_and_are_closed_after_the_deadlines() {
    raise_fd_limit();
    let (header, body, idle) =
        (HEADER_TIMEOUT.to_string(), BODY_TIMEOUT.to_string(), IDLE_TIMEOUT.to_string());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--max-concurrent-requests",
        "4",
        "--header-timeout",
        &header,
        "--body-timeout",
        &body,
        "--idle-timeout",
        &idle,
        // Not the harness's `trace`: thousands of connections would flood the captured log.
        "--log",
        "info",
    ];
    let app = BinApp::spawn(&args, &[("SESSION_API_KEY", KEY)]).unwrap();
    let addr = app.base.strip_prefix("http://").unwrap().to_owned();

    let opened = Instant::now();
    let kinds = [Kind::Silent, Kind::PartialHead, Kind::StalledBody, Kind::Idle];
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        conns.push(open(&addr, kinds[i % kinds.len()]).await);
    }
    let open_time = opened.elapsed();

    // While every one of them is open and dribbling, others are served at once.
    dribble(&conns);
    well_behaved(&app.base).await;
    dribble(&conns);
    let early = poll_closed(&mut conns);
    let checked = opened.elapsed();
    assert!(
        checked < Duration::from_secs(HEADER_TIMEOUT) && early == 0,
        "the check ran while all connections were open (opened in {open_time:?}, checked at {checked:?}, {early} closed)"
    );

    // Then each is closed after its deadline, dribbling or not.
    let limit = Duration::from_secs(BODY_TIMEOUT.max(HEADER_TIMEOUT).max(IDLE_TIMEOUT) + 15);
    while poll_closed(&mut conns) < CONNECTIONS {
        assert!(
            opened.elapsed() < limit,
            "still open after {:?}: {:?}",
            opened.elapsed(),
            kinds.map(|k| conns.iter().filter(|c| c.kind == k && !c.closed).count())
        );
        dribble(&conns);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Not before the deadlines (every connection was seen open above), and the stalled
    // bodies were told why.
    for c in conns.iter().filter(|c| c.kind == Kind::StalledBody) {
        let answer = String::from_utf8_lossy(&c.received);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(conns.iter().filter(|c| c.kind != Kind::StalledBody).all(|c| c.received.is_empty()));
    // And the service still answers.
    well_behaved(&app.base).await;
}
