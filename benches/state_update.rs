//! Update latency with `--state-file` on and off: `POST /api/secrets` of one static secret,
//! p50/p99 sequentially and with 16 concurrent clients, and how many state-file writes (each
//! two fsyncs: the file, then its directory) a burst of 16 simultaneous updates costs.
//!
//! Writes are counted from the sidecar's own debug line `state file written` (with the number
//! of updates it covered), read from its JSON log. Run with `cargo bench --bench
//! state_update`; `cargo test` runs a short smoke test of the harness.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "bench-key";
const CLIENTS: usize = 16;

/// (sequential updates, warm-up, rounds of 16 concurrent clients) under `cargo bench`; a smoke
/// test under `cargo test`.
fn rounds() -> (usize, usize, usize) {
    if std::env::args().any(|a| a == "--bench") { (500, 50, 60) } else { (5, 1, 2) }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A running sidecar whose log is scanned for state-file writes.
struct Sidecar {
    child: Child,
    base: String,
    /// Writes seen, and the updates they covered.
    writes: Arc<AtomicUsize>,
    covered: Arc<AtomicUsize>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(state: Option<&(PathBuf, PathBuf)>) -> Sidecar {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-sidecar"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--max-secrets-per-scope", "100000"])
        .args(["--log", "warn,secret_sidecar::persist=debug", "--log-format", "json"])
        .env("SESSION_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((file, key)) = state {
        cmd.arg("--state-file").arg(file).arg("--state-key-file").arg(key);
    }
    let mut child = cmd.spawn().expect("start the sidecar");
    let (writes, covered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stderr = child.stderr.take().unwrap();
    let (w, c) = (writes.clone(), covered.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["message"] == "state file written" {
                c.fetch_add(v["updates"].as_u64().unwrap_or(0) as usize, Ordering::SeqCst);
                w.fetch_add(1, Ordering::SeqCst);
            } else if v["level"] == "WARN" || v["level"] == "ERROR" {
                eprintln!("sidecar: {line}");
            }
        }
    });
    let up = (0..1000).any(|_| {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    });
    assert!(up, "the sidecar did not start");
    Sidecar { child, base: format!("http://127.0.0.1:{port}"), writes, covered }
}

async fn update(client: &reqwest::Client, base: &str, name: String) -> Duration {
    let body = json!({"secrets": {name: "bench-value-0123456789abcdef"}});
    let start = Instant::now();
    let r =
        client.post(format!("{base}/api/secrets")).header("X-Session-API-Key", KEY).json(&body).send().await;
    let r = r.expect("request");
    assert!(r.status().is_success(), "{}", r.status());
    start.elapsed()
}

/// Waits (bounded) until the log has reported writes covering `updates` updates.
fn settle(s: &Sidecar, updates: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.covered.load(Ordering::SeqCst) < updates && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Figures {
    seq: (Duration, Duration),
    conc: (Duration, Duration),
    conc_rate: f64,
    writes_per_burst: Option<f64>,
}

fn measure(rt: &tokio::runtime::Runtime, s: &Sidecar, tag: &'static str) -> Figures {
    let (seq_n, warmup, bursts) = rounds();
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CLIENTS).build().unwrap();
    rt.block_on(async {
        let mut seq = Vec::with_capacity(seq_n);
        for i in 0..seq_n + warmup {
            let d = update(&client, &s.base, format!("{tag}_SEQ_{i}")).await;
            if i >= warmup {
                seq.push(d);
            }
        }
        settle(s, seq_n + warmup);
        let writes_before = s.writes.load(Ordering::SeqCst);
        let mut conc = Vec::with_capacity(bursts * CLIENTS);
        let started = Instant::now();
        // Bursts: 16 clients each send one update at the same instant; the next burst starts
        // when all 16 are answered.
        for b in 0..bursts {
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (client, base) = (client.clone(), s.base.clone());
                    tokio::spawn(async move { update(&client, &base, format!("{tag}_B{b}_C{c}")).await })
                })
                .collect();
            for t in tasks {
                conc.push(t.await.unwrap());
            }
        }
        let elapsed = started.elapsed();
        settle(s, seq_n + warmup + bursts * CLIENTS);
        let writes = s.writes.load(Ordering::SeqCst) - writes_before;
        let n = conc.len();
        Figures {
            seq: (percentile(&mut seq, 0.5), percentile(&mut seq, 0.99)),
            conc: (percentile(&mut conc, 0.5), percentile(&mut conc, 0.99)),
            conc_rate: n as f64 / elapsed.as_secs_f64(),
            writes_per_burst: (writes > 0).then(|| writes as f64 / bursts as f64),
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("sidecar-bench-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = (dir.join("state"), dir.join("key"));
    std::fs::write(&state.1, "bench-state-key-material-0123456789\n").unwrap();

    let off = measure(&rt, &start(None), "OFF");
    let on = measure(&rt, &start(Some(&state)), "ON");
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "POST /api/secrets, one static secret per update ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| {:<34} | {:>9} | {:>9} | {:>9} | {:>9} |", "", "off p50", "off p99", "on p50", "on p99");
    println!(
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "sequential",
        ms(off.seq.0),
        ms(off.seq.1),
        ms(on.seq.0),
        ms(on.seq.1)
    );
    println!(
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>9} |",
        format!("{CLIENTS} concurrent clients (bursts)"),
        ms(off.conc.0),
        ms(off.conc.1),
        ms(on.conc.0),
        ms(on.conc.1)
    );
    println!("updates/s with {CLIENTS} clients: off {:.0}, on {:.0}", off.conc_rate, on.conc_rate);
    match on.writes_per_burst {
        Some(w) => println!(
            "state-file writes per burst of {CLIENTS} updates: {w:.2} ({:.2} fsyncs; one per update would be {})",
            2.0 * w,
            2 * CLIENTS
        ),
        None => println!("state-file writes per burst: none seen in the log"),
    }
}
