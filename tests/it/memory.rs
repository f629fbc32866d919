//! A command's output never grows the sidecar's memory, on any route that runs one: the real
//! binary's resident set (`VmRSS`, and its peak `VmHWM`, from `/proc/<pid>/status`) grows by
//! less than 32 MiB while 256 MiB of output goes through each route in turn.
//!
//! `SECRET_SIDECAR_TEST_OUTPUT_BYTES` sets another size (the contract's figure is 1 GiB; 256 MiB
//! keeps the test short on small machines).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::KEY;
use crate::common::bin::BinApp;

/// Most the resident set may grow, in KiB.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;
/// The output each route gets by default.
const DEFAULT_OUTPUT_BYTES: u64 = 256 << 20;
/// The per-stream cap the sidecar runs with (`--max-output-bytes`, the default).
const MAX_OUTPUT_BYTES: u64 = 1 << 20;
/// 63 characters and a newline per line, like a chatty build log.
const LINE: &str = "memory-bound-check-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).header("X-Session-API-Key", KEY).json(body)
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).header("X-Session-API-Key", KEY);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn command(bytes: u64) -> Value {
    json!({"command": format!("yes {LINE} | head -c {bytes}"), "timeout": 1200})
}

/// What a route answered, checked only after the memory figures are read, so a route that
/// grows memory fails on that first.
type Checked = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Checked {
    if ok { Ok(()) } else { Err(what()) }
}

/// `POST /api/commands`: one answer, capped.
async fn commands(c: &Client, bytes: u64) -> Checked {
    let out: Value = c.post("/api/commands", &command(bytes)).send().await.unwrap().json().await.unwrap();
    let kept = out["stdout"].as_str().unwrap_or_default().len() as u64;
    let dropped = out["truncated"]["stdout"].as_u64().unwrap_or_default();
    check(out["exit_code"] == 0 && kept + dropped == bytes, || {
        format!("exit {}, {kept} + {dropped} bytes", out["exit_code"])
    })
}

/// `POST /api/commands/stream`, read as fast as it comes.
async fn stream(c: &Client, bytes: u64) -> Checked {
    let mut r = c.post("/api/commands/stream", &command(bytes)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (mut received, mut last) = (0u64, Vec::new());
    while let Some(chunk) = r.chunk().await.unwrap() {
        received += chunk.len() as u64;
        last.extend_from_slice(&chunk);
        let keep = last.len().saturating_sub(4096);
        last.drain(..keep);
    }
    let text = String::from_utf8_lossy(&last);
    let exit: Value =
        serde_json::from_str(text.trim_end().rsplit('\n').next().unwrap_or_default()).unwrap_or_default();
    let ok = received >= bytes && exit["type"] == "exit" && exit["exit_code"] == 0;
    check(ok, || format!("{received} bytes of frames, then {exit}"))
}

/// `POST /api/bash/execute_bash_command`: the answer holds head, marker and tail.
async fn execute(c: &Client, bytes: u64) -> Checked {
    let out: Value =
        c.post("/api/bash/execute_bash_command", &command(bytes)).send().await.unwrap().json().await.unwrap();
    let marker = format!("[... {} bytes of output dropped ...]", bytes.saturating_sub(MAX_OUTPUT_BYTES));
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let ok = out["exit_code"] == 0 && (bytes <= MAX_OUTPUT_BYTES || stdout.contains(&marker));
    check(ok, || format!("exit {}, {} bytes of stdout without {marker:?}", out["exit_code"], stdout.len()))
}

/// `POST /api/bash/start_bash_command`, then the SDK's loop: search every 0.1 s for outputs
/// past the last order seen, until one has an exit code.
async fn start_and_poll(c: &Client, bytes: u64) -> Checked {
    let cmd: Value =
        c.post("/api/bash/start_bash_command", &command(bytes)).send().await.unwrap().json().await.unwrap();
    let id = cmd["id"].as_str().unwrap();
    let mut last_order = None::<u64>;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1200);
    loop {
        let mut q = format!(
            "/api/bash/bash_events/search?command_id__eq={id}&kind__eq=BashOutput&sort_order=TIMESTAMP&limit=100"
        );
        if let Some(o) = last_order {
            q.push_str(&format!("&order__gt={o}"));
        }
        let page = c.get(&q).await;
        for item in page["items"].as_array().unwrap() {
            last_order = item["order"].as_u64().max(last_order);
            if let Some(code) = item["exit_code"].as_i64() {
                return check(code == 0, || format!("exit {code}"));
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no exit code");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn output_does_not_grow_the_sidecar_on_any_route() {
    let bytes = std::env::var("SECRET_SIDECAR_TEST_OUTPUT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_OUTPUT_BYTES);
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", KEY)]).unwrap();
    let pid = app.child.id();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1200)).build().unwrap();
    let c = Client { http, base: app.base.clone() };

    // Every route once with a little output, so one-time allocations are in the baseline.
    for warm_up in [
        commands(&c, 2 * MAX_OUTPUT_BYTES).await,
        stream(&c, 2 * MAX_OUTPUT_BYTES).await,
        execute(&c, MAX_OUTPUT_BYTES).await,
        start_and_poll(&c, 2 * MAX_OUTPUT_BYTES).await,
    ] {
        warm_up.unwrap();
    }
    let baseline = status_kib(pid, "VmRSS");

    for route in
        ["/api/commands", "/api/commands/stream", "execute_bash_command", "start_bash_command + search"]
    {
        let started = std::time::Instant::now();
        let checked = match route {
            "/api/commands" => commands(&c, bytes).await,
            "/api/commands/stream" => stream(&c, bytes).await,
            "execute_bash_command" => execute(&c, bytes).await,
            _ => start_and_poll(&c, bytes).await,
        };
        let (rss, peak) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
        eprintln!(
            "{route}: {bytes} bytes in {:.1?}; VmRSS {baseline} -> {rss} KiB, VmHWM {peak} KiB",
            started.elapsed()
        );
        assert!(
            peak.saturating_sub(baseline) < GROWTH_LIMIT_KIB,
            "{route}: peak resident set grew from {baseline} to {peak} KiB"
        );
        if let Err(e) = checked {
            panic!("{route}: {e}");
        }
    }
}
