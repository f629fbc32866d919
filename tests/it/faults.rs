//! Upstream faults, byte by byte: each settings origin here is a raw TCP listener that
//! misbehaves on cue (refuses, resets mid-body, stalls after its headers, trickles one byte a
//! second, storms 5xx or 429 with `Retry-After`, redirects to itself, sends more than the
//! cap, or speaks TLS with a certificate nobody trusts).
//!
//! For every fault, through the resolve route and a command: the request ends within the
//! lookup deadline (plus a margin for a loaded machine), the error names the secret and the
//! cause and never the URL, and a value fetched before the fault is served stale exactly
//! where contract §4 says (connect errors, timeouts, 5xx, 429), never after anything else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::TestApp;

/// `--lookup-timeout`, in seconds.
const DEADLINE: u64 = 2;
/// What a loaded 2-core machine may add to it.
const MARGIN: Duration = Duration::from_secs(4);
/// `--max-value-bytes`.
const CAP: usize = 1024;
/// In the path and the query of every lookup URL; must never appear in an answer.
const URL_MARK: &str = "url-mark-51d0";

/// How an origin answers.
#[derive(Clone, Debug)]
enum Behaviour {
    /// 200 with this body.
    Good(Vec<u8>),
    /// Nothing listens: connections are refused.
    Refused,
    /// Headers promising 64 bytes, 8 of them, then a TCP reset.
    ResetMidBody,
    /// Headers, then nothing, with the connection held open.
    StallAfterHeaders,
    /// Headers, then one body byte a second.
    Trickle,
    /// This status, always, with this `Retry-After`.
    Storm(u16, Option<&'static str>),
    /// 302 to the very same URL.
    RedirectLoop,
    /// A declared length over the cap.
    OverCapDeclared,
    /// A chunked body that never ends.
    OverCapChunked,
}

/// A loopback origin whose behaviour can be switched while it runs.
#[derive(Clone)]
struct FaultyOrigin {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    /// The accept loop; aborted (and its listener closed) for [`Behaviour::Refused`].
    accept: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl FaultyOrigin {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Self {
            addr: listener.local_addr().unwrap(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            accept: Arc::default(),
        };
        let behaviour = origin.behaviour.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let now = behaviour.lock().unwrap().clone();
                tokio::spawn(answer(conn, now));
            }
        });
        *origin.accept.lock().unwrap() = Some(task);
        origin
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, name: &str) -> String {
        format!("{}/api/v1/sandboxes/sb-1/settings/secrets/{name}/{URL_MARK}?t={URL_MARK}", self.base())
    }

    fn set(&self, behaviour: Behaviour) {
        if matches!(behaviour, Behaviour::Refused) {
            if let Some(task) = self.accept.lock().unwrap().take() {
                task.abort();
            }
        }
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

/// Reads a request head, then misbehaves as told.
async fn answer(mut conn: TcpStream, behaviour: Behaviour) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let target = String::from_utf8_lossy(&head).split(' ').nth(1).unwrap_or("/").to_owned();
    let status_line = |code: u16, extra: &str, len: usize| {
        format!(
            "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    let _ = match behaviour {
        Behaviour::Good(v) => {
            let mut r = status_line(200, "", v.len()).into_bytes();
            r.extend_from_slice(&v);
            conn.write_all(&r).await
        }
        Behaviour::Refused => Ok(()),
        Behaviour::ResetMidBody => {
            let _ = conn.write_all(status_line(200, "", 64).as_bytes()).await;
            let _ = conn.write_all(b"partial!").await;
            let _ = conn.flush().await;
            // A zero linger turns the close into a reset.
            let _ = conn.set_zero_linger();
            drop(conn);
            Ok(())
        }
        Behaviour::StallAfterHeaders => {
            let _ = conn.write_all(status_line(200, "", 16).as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Behaviour::Trickle => {
            let _ = conn.write_all(status_line(200, "", 30).as_bytes()).await;
            for _ in 0..30 {
                if conn.write_all(b"t").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(())
        }
        Behaviour::Storm(code, retry_after) => {
            let extra = retry_after.map(|r| format!("Retry-After: {r}\r\n")).unwrap_or_default();
            conn.write_all(status_line(code, &extra, 0).as_bytes()).await
        }
        Behaviour::RedirectLoop => {
            let host = conn.local_addr().unwrap();
            conn.write_all(status_line(302, &format!("Location: http://{host}{target}\r\n"), 0).as_bytes())
                .await
        }
        Behaviour::OverCapDeclared => {
            let mut r = status_line(200, "", CAP * 4).into_bytes();
            r.extend(std::iter::repeat_n(b'o', CAP * 4));
            conn.write_all(&r).await
        }
        Behaviour::OverCapChunked => {
            let _ = conn
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                )
                .await;
            let chunk = format!("400\r\n{}\r\n", "c".repeat(0x400));
            for _ in 0..10_000 {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
    };
}

/// One fault: its name, behaviour, whether a value fetched before it is served stale, and
/// a word its error must contain.
struct Fault {
    name: &'static str,
    behaviour: Behaviour,
    stale: bool,
    cause: &'static str,
}

fn faults() -> Vec<Fault> {
    use Behaviour::*;
    let f = |name, behaviour, stale, cause| Fault { name, behaviour, stale, cause };
    vec![
        f("REFUSED", Refused, true, "cannot connect"),
        f("RESET", ResetMidBody, true, "reset"),
        f("STALL", StallAfterHeaders, true, "timed out"),
        f("TRICKLE", Trickle, true, "timed out"),
        f("STORM_503", Storm(503, Some("1")), true, "503"),
        f("STORM_500", Storm(500, None), true, "500"),
        f("STORM_429", Storm(429, Some("1")), true, "429"),
        f("STORM_429_LONG", Storm(429, Some("3600")), true, "429"),
        f("REDIRECT_LOOP", RedirectLoop, false, "302"),
        f("OVER_CAP", OverCapDeclared, false, "larger than 1024 bytes"),
        f("OVER_CAP_CHUNKED", OverCapChunked, false, "larger than 1024 bytes"),
    ]
}

/// What an answer may never contain: the lookup URL or any piece of it.
fn assert_no_url(what: &str, text: &str, origin: &FaultyOrigin) {
    for piece in [URL_MARK, "/api/v1/sandboxes", &origin.addr.port().to_string(), "sb-1"] {
        assert!(!text.contains(piece), "{what}: shows {piece:?}: {text}");
    }
}

/// Runs one fault against `app`: a warm secret (a good value first) and a cold one.
async fn run_fault(app: Arc<TestApp>, fault: Fault, origin: FaultyOrigin) {
    let (warm, cold) = (format!("{}_WARM", fault.name), format!("{}_COLD", fault.name));
    let entry = |name: &str| json!({"kind": "LookupSecret", "url": origin.url(name), "ttl_seconds": 0});
    let (s, b) =
        app.post("/api/secrets", &json!({"secrets": {&warm: entry(&warm), &cold: entry(&cold)}})).await;
    assert_eq!(s, 200, "{}: {b}", fault.name);
    let (_, b) = app.post("/api/secrets/resolve", &json!({"names": [&warm]})).await;
    assert_eq!(b["resolved"], json!([warm]), "{}: the good value first: {b}", fault.name);

    origin.set(fault.behaviour.clone());
    let bound = Duration::from_secs(DEADLINE) + MARGIN;
    let what = |step: &str| format!("{} {step}", fault.name);

    // The resolve route: both names at once.
    let started = Instant::now();
    let (s, b) = app.post("/api/secrets/resolve", &json!({"names": [&warm, &cold]})).await;
    let took = started.elapsed();
    assert!(took < bound, "{}: took {took:?}", what("resolve"));
    if matches!(fault.behaviour, Behaviour::Storm(_, Some("3600"))) {
        // A Retry-After beyond the deadline fails at once instead of waiting it out.
        assert!(took < Duration::from_secs(DEADLINE), "{}: waited {took:?}", what("resolve"));
    }
    assert_eq!(s, 200, "{}: {b}", what("resolve"));
    assert_no_url(&what("resolve"), &b.to_string(), &origin);
    let failed: Vec<&Value> = b["failed"].as_array().unwrap().iter().collect();
    let expect_failed = if fault.stale { vec![&cold] } else { vec![&cold, &warm] };
    let names: Vec<&str> = failed.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = expect_failed.iter().map(|s| s.as_str()).collect();
    want.sort();
    assert_eq!(names, want, "{}: {b}", what("resolve"));
    for f in &failed {
        let err = f["error"].as_str().unwrap();
        let name = f["name"].as_str().unwrap();
        assert!(
            err.contains(name) && err.contains(fault.cause),
            "{}: unclear error {err:?}",
            what("resolve")
        );
    }
    let expect_stale = if fault.stale { json!([warm]) } else { json!([]) };
    assert_eq!(b["stale"], expect_stale, "{}: {b}", what("resolve"));

    // A command that uses the warm secret: its stale value, masked, or a 424.
    let started = Instant::now();
    let cmd = json!({"command": format!("printf %s \"${warm}\""), "timeout": 30});
    let (s, b) = app.post("/api/commands", &cmd).await;
    let took = started.elapsed();
    assert!(took < bound, "{}: took {took:?}", what("warm command"));
    assert_no_url(&what("warm command"), &b.to_string(), &origin);
    if fault.stale {
        assert_eq!(s, 200, "{}: {b}", what("warm command"));
        assert_eq!(b["stdout"], "<secret-hidden>", "{}: {b}", what("warm command"));
        assert_eq!(b["stale"], json!([warm]), "{}: {b}", what("warm command"));
    } else {
        assert_missing(&what("warm command"), s, &b, &warm, fault.cause);
    }

    // A command that uses the cold one: a 424 naming it and the cause.
    let started = Instant::now();
    let cmd = json!({"command": "true", "secrets": [&cold], "timeout": 30});
    let (s, b) = app.post(&format!("/api/conversations/{}/commands", crate::common::CONV_HEX), &cmd).await;
    let took = started.elapsed();
    assert!(took < bound, "{}: took {took:?}", what("cold command"));
    assert_no_url(&what("cold command"), &b.to_string(), &origin);
    assert_missing(&what("cold command"), s, &b, &cold, fault.cause);
}

fn assert_missing(what: &str, status: u16, body: &Value, name: &str, cause: &str) {
    assert_eq!(status, 424, "{what}: {body}");
    let missing = &body["missing"];
    assert_eq!(missing.as_array().map(Vec::len), Some(1), "{what}: {body}");
    assert_eq!(missing[0]["name"], name, "{what}: {body}");
    let err = missing[0]["error"].as_str().unwrap_or_default();
    assert!(err.contains(name) && err.contains(cause), "{what}: unclear error {err:?}");
}

/// A service allowed to look up from each origin, with the deadline and the cap above.
async fn app_for(origins: &[&FaultyOrigin], extra: &[&str]) -> TestApp {
    let (deadline, cap) = (DEADLINE.to_string(), CAP.to_string());
    let mut args = vec!["--lookup-timeout", &deadline, "--max-value-bytes", &cap];
    let bases: Vec<String> = origins.iter().map(|o| o.base()).collect();
    for base in &bases {
        args.extend(["--allow-lookup-origin", base.as_str()]);
    }
    args.extend_from_slice(extra);
    TestApp::spawn_with(&args, &[]).await
}

#[tokio::test]
async fn every_fault_ends_within_the_deadline_with_a_clear_error_and_stale_where_due() {
    let mut cases = Vec::new();
    for fault in faults() {
        let good = format!("good-value-of-{}", fault.name).into_bytes();
        cases.push((fault, FaultyOrigin::start(Behaviour::Good(good)).await));
    }
    // One service for every fault, and the faults at the same time, as they would come.
    let app = Arc::new(app_for(&cases.iter().map(|(_, o)| o).collect::<Vec<_>>(), &[]).await);
    let mut tasks = JoinSet::new();
    for (fault, origin) in cases {
        tasks.spawn(run_fault(app.clone(), fault, origin));
    }
    let run = async {
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                let p = e.into_panic();
                let msg = p.downcast_ref::<String>().cloned();
                failures.push(
                    msg.or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default(),
                );
            }
        }
        failures
    };
    let failures = tokio::time::timeout(Duration::from_secs(90), run).await.expect("the faults end");
    assert!(failures.is_empty(), "{} faults failed:\n{}", failures.len(), failures.join("\n"));
}

/// A TLS origin on `127.0.0.1:0` whose certificate is self-signed (trusted by nobody unless
/// `--extra-ca-file` names it); it answers every request with `value`. Returns the base URL
/// and the certificate's PEM.
async fn tls_origin(value: &'static str) -> (String, String) {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A handshake the client aborts is the expected outcome of most connections.
                let Ok(mut tls) = acceptor.accept(conn).await else { return };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
                    value.len()
                );
                let _ = tls.write_all(r.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (base, pem)
}

#[tokio::test]
async fn a_tls_origin_with_an_untrusted_certificate_fails_and_nothing_skips_verification() {
    let (base, pem) = tls_origin("tls-value-4411").await;
    let url = format!("{base}/api/v1/sandboxes/sb-1/settings/secrets/TLS/{URL_MARK}?t={URL_MARK}");
    let entry = json!({"secrets": {"TLS": {"kind": "LookupSecret", "url": url}}});
    let bound = Duration::from_secs(DEADLINE) + MARGIN;

    let app = TestApp::spawn_with(&["--lookup-timeout", "2", "--allow-lookup-origin", &base], &[]).await;
    assert_eq!(app.post("/api/secrets", &entry).await.0, 200);
    let started = Instant::now();
    let (_, b) = app.post("/api/secrets/resolve", &json!({"names": ["TLS"]})).await;
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    let err = b["failed"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("TLS") && err.contains("certificate"), "{b}");
    let (s, b) = app.post("/api/commands", &json!({"command": "printf %s \"$TLS\""})).await;
    assert_eq!((s, &b["missing"][0]["name"]), (424, &json!("TLS")), "{b}");
    for text in [b.to_string(), err.to_owned()] {
        assert!(!text.contains(URL_MARK) && !text.contains("tls-value"), "{text}");
    }

    // The same origin once its certificate is trusted: the failure was the certificate.
    let dir = std::env::temp_dir().join(format!("ss-faults-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let trusting = TestApp::spawn_with(
        &["--lookup-timeout", "2", "--allow-lookup-origin", &base, "--extra-ca-file", ca.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(trusting.post("/api/secrets", &entry).await.0, 200);
    let (_, b) = trusting.post("/api/secrets/resolve", &json!({"names": ["TLS"]})).await;
    assert_eq!(b["resolved"], json!(["TLS"]), "{b}");
    std::fs::remove_dir_all(dir).unwrap();

    // And there is no way to turn verification off: no such option, nor variable.
    use clap::CommandFactory;
    let cli = secret_sidecar::cli::Cli::command();
    let mut commands = vec![&cli];
    commands.extend(cli.get_subcommands());
    let mut seen = 0;
    for cmd in commands {
        for arg in cmd.get_arguments() {
            seen += 1;
            let names = format!("{:?} {:?}", arg.get_long(), arg.get_env()).to_ascii_lowercase();
            for word in
                ["verify", "skip", "danger", "accept-invalid", "no-tls", "insecure-tls", "insecure_tls"]
            {
                assert!(!names.contains(word), "{}: {names}", cmd.get_name());
            }
        }
    }
    assert!(seen > 30, "only {seen} options seen: the scan missed the serve flags");
}
