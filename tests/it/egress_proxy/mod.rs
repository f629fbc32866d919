//! The egress proxy over loopback, driven by reqwest and by real curl: substitution only in
//! named places for bound hosts, reflection, audit, blind tunnels, verified upstream TLS, and
//! per-command credentials. The upstreams are fakes with their own test CA, reached through
//! resolve pins.

mod faults;
mod harness;
pub mod upstream;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use secrecy::ExposeSecret;

use harness::{BAD, BOUND, HOLDER, Logs, NAME, Proxy, UNBOUND, VALUE, assert_no_value, temp_path};
use upstream::FakeUpstream;

async fn good_upstream() -> FakeUpstream {
    FakeUpstream::https(&[BOUND, UNBOUND, "other.test.example"]).await
}

#[tokio::test(flavor = "current_thread")]
async fn value_only_in_named_places_and_reflections_show_the_placeholder() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let url = format!("https://{BOUND}:{}/echo?key={HOLDER}&other={HOLDER}", up.port);
    let response = client
        .get(&url)
        .bearer_auth(HOLDER)
        .header("x-api-key", HOLDER)
        .header("x-other", HOLDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none(), "re-framed as chunked");
    assert_eq!(response.headers()["x-echo-authorization"], format!("Bearer {HOLDER}").as_str());
    let headers = format!("{:?}", response.headers());
    let body = response.bytes().await.unwrap();

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers[AUTHORIZATION], format!("Bearer {VALUE}").as_str());
    assert_eq!(seen[0].headers["x-api-key"], VALUE);
    assert_eq!(seen[0].headers["x-other"], HOLDER, "unnamed header left as it is");
    assert!(seen[0].headers.get("accept-encoding").is_none());
    assert!(seen[0].headers.get("proxy-authorization").is_none());
    assert!(seen[0].uri.contains("key=ghp_Real%2FValue%2B0123456789"), "{}", seen[0].uri);
    assert!(seen[0].uri.ends_with(&format!("other={HOLDER}")), "unnamed parameter left as it is");

    // The echo held the value raw, percent-encoded and in base64; the client sees placeholders.
    assert_no_value("answer body", &body);
    assert_no_value("answer headers", headers.as_bytes());
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(&format!("authorization: Bearer {HOLDER}")), "{text}");
    assert!(text.contains(&format!("token-base64: {}", STANDARD.encode(HOLDER))), "{text}");
    assert!(text.contains(&format!("key={HOLDER}&other={HOLDER}")), "{text}");

    assert_eq!(proxy.stats.substitutions.get(), 2 + 1);
    assert_eq!(proxy.stats.intercepted.get(), 1);
    assert_eq!(proxy.stats.audit_placeholder.get(), 2, "x-other and the other parameter");
    let log = logs.text();
    assert!(
        log.contains(NAME) && log.contains(BOUND) && log.contains("header x-other") && log.contains("query"),
        "{log}"
    );
    assert_no_value("logs", log.as_bytes());
    assert!(!log.contains(HOLDER), "a placeholder was logged");
}

#[tokio::test(flavor = "current_thread")]
async fn basic_credentials_both_fields_and_body_audit() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let body = format!("{{\"token\":\"{HOLDER}\"}}");
    let response = client
        .post(format!("https://{BOUND}:{}/echo", up.port))
        .basic_auth(HOLDER, Some(HOLDER))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.bytes().await.unwrap();
    assert_no_value("answer", &answer);
    let seen = up.seen();
    let want = format!("Basic {}", STANDARD.encode(format!("{VALUE}:{VALUE}")));
    assert_eq!(seen[0].headers[AUTHORIZATION], want.as_str());
    assert_eq!(seen[0].body, body.as_bytes(), "bodies are never rewritten");
    assert_eq!(proxy.stats.substitutions.get(), 2);
    assert_eq!(proxy.stats.audit_placeholder.get(), 1);
    assert!(logs.text().contains("place=body"), "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn compressed_answer_is_decoded_then_reflected() {
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let response =
        client.get(format!("https://{BOUND}:{}/gzip", up.port)).bearer_auth(HOLDER).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
    let body = response.bytes().await.unwrap();
    assert_no_value("decoded answer", &body);
    assert!(String::from_utf8_lossy(&body).contains(&format!("authorization: Bearer {HOLDER}")));
    assert_eq!(up.seen()[0].headers[AUTHORIZATION], format!("Bearer {VALUE}").as_str());
}

#[tokio::test(flavor = "current_thread")]
async fn unbound_host_is_a_blind_tunnel() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    // Trusting only the upstream's CA: the upstream's own certificate reached the client.
    let client = proxy.client(&cred, &[&up.ca_pem]);
    let response = client
        .get(format!("https://{UNBOUND}:{}/echo?key={HOLDER}", up.port))
        .bearer_auth(HOLDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].headers[AUTHORIZATION], format!("Bearer {HOLDER}").as_str());
    assert!(seen[0].uri.contains(&format!("key={HOLDER}")));
    assert_eq!(proxy.stats.blind_tunnels.get(), 1);
    assert_eq!(proxy.stats.intercepted.get(), 0);
    assert_eq!(proxy.stats.audit_placeholder.get(), 0, "nothing inside a blind tunnel is seen");
    assert!(!logs.text().contains(NAME), "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn upstream_that_does_not_verify_never_receives_the_value() {
    let good = good_upstream().await;
    // Its certificate names the host but comes from a CA the proxy does not trust.
    let bad = FakeUpstream::https(&[BAD]).await;
    let proxy = Proxy::start(vec![good.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let response = client
        .get(format!("https://{BAD}:{}/echo?key={HOLDER}", bad.port))
        .bearer_auth(HOLDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(bad.seen().is_empty());
    assert_eq!(proxy.stats.upstream_tls_failures.get(), 1);
    // A certificate for another name, from a trusted CA, does not verify either.
    let response =
        client.get(format!("https://{BAD}:{}/echo", good.port)).bearer_auth(HOLDER).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(good.seen().is_empty());
    assert_eq!(proxy.stats.upstream_tls_failures.get(), 2);
    assert_eq!(proxy.stats.substitutions.get(), 3, "substituted in memory, never written");
}

/// Sends a raw `CONNECT` and returns the status code.
fn raw_connect(port: u16, proxy_auth: Option<String>) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = proxy_auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
    write!(stream, "CONNECT {BOUND}:443 HTTP/1.1\r\nHost: {BOUND}:443\r\n{auth}\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_revoked_credentials_get_407() {
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let port = proxy.port;
    let basic = |token: &str| format!("Basic {}", STANDARD.encode(format!("cmd:{token}")));
    let cred = proxy.issue();
    let live = basic(cred.token().expose_secret());
    let dead = {
        let gone = proxy.issue();
        basic(gone.token().expose_secret())
    };
    let codes = tokio::task::spawn_blocking(move || {
        [None, Some(basic("not-a-token")), Some(dead), Some(live)].map(|auth| raw_connect(port, auth))
    })
    .await
    .unwrap();
    assert_eq!(codes, [407, 407, 407, 200]);
    assert_eq!(proxy.stats.auth_failures.get(), 3);

    // A tunnel opened while the command ran cannot be spent after it ended.
    let client = proxy.client(&cred, &[proxy.ca.cert_pem()]);
    let url = format!("https://{BOUND}:{}/echo", up.port);
    let first = client.get(&url).bearer_auth(HOLDER).send().await.unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    drop(cred);
    match client.get(&url).bearer_auth(HOLDER).send().await {
        Ok(r) => assert_eq!(r.status(), 407),
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
    assert_eq!(up.seen().len(), 1, "nothing reached the upstream after revocation");
}

#[tokio::test(flavor = "current_thread")]
async fn plain_http_is_forwarded_unchanged_and_audited() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = FakeUpstream::plain().await;
    let proxy = Proxy::start(Vec::new()).await;
    let cred = proxy.issue();
    let client = proxy.client(&cred, &[]);
    let response = client
        .get(format!("http://{BOUND}:{}/echo?key={HOLDER}", up.port))
        .bearer_auth(HOLDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].headers[AUTHORIZATION], format!("Bearer {HOLDER}").as_str());
    assert!(seen[0].uri.ends_with(&format!("key={HOLDER}")));
    assert!(seen[0].headers.get("proxy-authorization").is_none());
    assert_eq!(proxy.stats.substitutions.get(), 0);
    assert_eq!(proxy.stats.audit_placeholder.get(), 2, "query and authorization");
    let log = logs.text();
    assert!(log.contains(NAME) && log.contains(BOUND), "{log}");
}

/// Runs curl through the proxy; returns (status code, body).
async fn curl(proxy_url: &str, bundle: &std::path::Path, url: &str, extra: &[&str]) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-x", proxy_url, "--cacert"])
        .arg(bundle)
        .args(["-w", "\n%{http_code}", url])
        .args(extra)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy() {
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let cred = proxy.issue();
    let bundle = temp_path("bundle.pem");
    std::fs::write(&bundle, proxy.ca.cert_pem()).unwrap();
    let proxy_url = proxy.url(&cred);
    let url = format!("https://{BOUND}:{}/echo?key={HOLDER}", up.port);
    let bearer = format!("Authorization: Bearer {HOLDER}");
    let named = format!("x-api-key: {HOLDER}");
    let (code, body) = curl(&proxy_url, &bundle, &url, &["-H", &bearer, "-H", &named]).await;
    assert_eq!(code, 200, "{body}");
    assert_no_value("curl output", body.as_bytes());
    assert!(body.contains(&format!("authorization: Bearer {HOLDER}")), "{body}");
    let seen = up.seen();
    assert_eq!(seen[0].headers[AUTHORIZATION], format!("Bearer {VALUE}").as_str());
    assert_eq!(seen[0].headers["x-api-key"], VALUE);

    // git-style userinfo: Basic with the placeholder as password.
    let userinfo = format!("https://x-access-token:{HOLDER}@{BOUND}:{}/echo", up.port);
    let (code, _) = curl(&proxy_url, &bundle, &userinfo, &[]).await;
    assert_eq!(code, 200);
    let want = format!("Basic {}", STANDARD.encode(format!("x-access-token:{VALUE}")));
    assert_eq!(up.seen()[1].headers[AUTHORIZATION], want.as_str());

    // Routing follows the CONNECT authority: another Host is misdirected.
    let (code, _) = curl(&proxy_url, &bundle, &url, &["-H", &bearer, "-H", "Host: other.test.example"]).await;
    assert_eq!(code, 421);
    // No protocol upgrades inside an intercepted tunnel.
    let (code, _) = curl(
        &proxy_url,
        &bundle,
        &url,
        &["-H", &bearer, "-H", "Upgrade: websocket", "-H", "Connection: Upgrade"],
    )
    .await;
    assert_eq!(code, 501);
    assert_eq!(up.seen().len(), 2, "refused requests never reached the upstream");
    let _ = std::fs::remove_file(&bundle);
}

/// The leaf passes OpenSSL's strict checks as a TLS server certificate, and Python's `ssl`
/// with the strict flags Python 3.13 sets by default accepts it in a real handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_pass_strict_verifiers() {
    let up = good_upstream().await;
    let proxy = Proxy::start(vec![up.ca_der.clone().unwrap()]).await;
    let ca_file = temp_path("ca.pem");
    let leaf_file = temp_path("leaf.pem");
    std::fs::write(&ca_file, proxy.ca.cert_pem()).unwrap();
    let leaf = proxy.ca.leaf_for(BOUND).unwrap();
    let b64 = STANDARD.encode(leaf.cert[0].as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    std::fs::write(
        &leaf_file,
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")),
    )
    .unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", BOUND, "-CAfile"])
        .arg(&ca_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let cred = proxy.issue();
    let script = r#"
import base64, socket, ssl, sys
port, host, upstream_port, token, cafile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
s = socket.create_connection(("127.0.0.1", int(port)), timeout=60)
auth = base64.b64encode(("cmd:" + token).encode()).decode()
s.sendall(f"CONNECT {host}:{upstream_port} HTTP/1.1\r\nHost: {host}:{upstream_port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 200"), head
t = ctx.wrap_socket(s, server_hostname=host)
t.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}:{upstream_port}\r\nConnection: close\r\n\r\n".encode())
data = b""
while True:
    chunk = t.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n")[0].decode())
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([
            proxy.port.to_string(),
            BOUND.into(),
            up.port.to_string(),
            cred.token().expose_secret().to_owned(),
        ])
        .arg(&ca_file)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&ca_file);
    let _ = std::fs::remove_file(&leaf_file);
}

/// Opens a tunnel with a live credential and returns the stream after the 200.
fn open_tunnel(port: u16, token: &str, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = STANDARD.encode(format!("cmd:{token}"));
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "proxy closed the connection");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_host_tunnel_without_tls_is_blind() {
    let up = FakeUpstream::plain().await;
    let proxy = Proxy::start(Vec::new()).await;
    let cred = proxy.issue();
    let (port, token, target) =
        (proxy.port, cred.token().expose_secret().to_owned(), format!("{BOUND}:{}", up.port));
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = open_tunnel(port, &token, &target);
        write!(stream, "GET /echo HTTP/1.1\r\nHost: {target}\r\nAuthorization: Bearer {HOLDER}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.seen()[0].headers[AUTHORIZATION], format!("Bearer {HOLDER}").as_str());
    assert_eq!(proxy.stats.blind_tunnels.get(), 1);
    assert_eq!(proxy.stats.intercepted.get(), 0);
    assert_eq!(proxy.stats.substitutions.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_heads_are_bounded() {
    let proxy = Proxy::start(Vec::new()).await;
    let port = proxy.port;
    let statuses = tokio::task::spawn_blocking(move || {
        let send = |bytes: &[u8]| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = stream.write_all(bytes);
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            answer.split_whitespace().nth(1).map(str::to_owned).unwrap_or_default()
        };
        let huge = format!(
            "GET http://{BOUND}/ HTTP/1.1\r\nHost: {BOUND}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200 * 1024)
        );
        [
            send(huge.as_bytes()),
            send(b"\x16\x03\x01\x00\xff garbage\r\n\r\n"),
            send(b"CONNECT\r\n\r\n"),
            send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses[0], "431", "oversized head");
    assert_eq!(statuses[1], "400", "not HTTP");
    assert_eq!(statuses[2], "400", "malformed CONNECT");
    assert_eq!(statuses[3], "407", "origin-form without credential");
    // Still serving.
    let cred = proxy.issue();
    let token = format!("Basic {}", STANDARD.encode(format!("cmd:{}", cred.token().expose_secret())));
    let code = tokio::task::spawn_blocking(move || raw_connect(port, Some(token))).await.unwrap();
    assert_eq!(code, 200);
}
