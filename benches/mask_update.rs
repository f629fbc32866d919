//! Cost of adding values to the mask set, over HTTP against the real binary:
//! - one `POST /api/conversations/{id}/secrets` of 1,000 static secrets of 20–40 bytes,
//!   on a fresh sidecar and again as the set grows;
//! - one new value when the set is at its 4 MiB pattern budget (values of 3 KiB are
//!   registered until their derived patterns pass the budget, then one name is rotated);
//! - `GET /alive` latency while 4 clients rotate secrets as fast as they can, with the set
//!   at its budget;
//! - time from SIGTERM to exit while a 3,000-secret update is being registered, next to
//!   `--shutdown-timeout`.
//!
//! Prints the figures; asserts nothing about them. Run with `cargo bench --bench mask_update`
//! (`cargo test` runs a short smoke test of the harness). `MASK_BENCH_BIN=/path/to/binary`
//! measures another build (an older one, for a before/after comparison), and
//! `MASK_BENCH_BATCHES=N` changes the number of 1,000-secret updates (5 by default).

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secret_sidecar::mask;
use serde_json::{Value, json};

const KEY: &str = "bench-key";
const MIN_LEN: usize = 4;
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Sizes under `cargo bench`; `cargo test` runs a short smoke test instead.
struct Plan {
    batch: usize,
    batches: usize,
    fill_to_budget: bool,
    single_adds: usize,
    storm: Duration,
    sigterm_batch: usize,
}

fn plan() -> Plan {
    if std::env::args().any(|a| a == "--bench") {
        Plan {
            batch: 1_000,
            batches: std::env::var("MASK_BENCH_BATCHES").ok().and_then(|n| n.parse().ok()).unwrap_or(5),
            fill_to_budget: true,
            single_adds: 20,
            storm: Duration::from_secs(10),
            sigterm_batch: 3_000,
        }
    } else {
        Plan {
            batch: 50,
            batches: 2,
            fill_to_budget: false,
            single_adds: 2,
            storm: Duration::from_millis(300),
            sigterm_batch: 50,
        }
    }
}

#[path = "support/rng.rs"]
mod rng;
#[path = "support/sidecar.rs"]
mod sidecar;
use rng::Rng;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn start_sidecar() -> (Child, String) {
    let bin =
        std::env::var("MASK_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_secret-sidecar").to_owned());
    let timeout = SHUTDOWN_TIMEOUT_SECS.to_string();
    sidecar::start(&bin, KEY, &["--log", "error", "--shutdown-timeout", &timeout, "--mask-rate", "1000"])
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn conversation(i: usize) -> String {
    format!("{i:032x}")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value) -> (Duration, Value) {
        let start = Instant::now();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-Session-API-Key", KEY)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        (start.elapsed(), v)
    }

    async fn register(&self, conv: &str, secrets: &[(String, String)]) -> Duration {
        let map: serde_json::Map<String, Value> =
            secrets.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
        self.post(&format!("/api/conversations/{conv}/secrets"), &json!({"secrets": map})).await.0
    }

    async fn assert_masked(&self, value: &str) {
        let (_, v) = self.post("/api/mask", &json!({"text": format!("x {value} y")})).await;
        assert_eq!(v["text"], json!("x <secret-hidden> y"), "a registered value is masked");
    }

    async fn alive(&self) -> Duration {
        let start = Instant::now();
        let r = self.http.get(format!("{}/alive", self.base)).send().await.expect("alive");
        assert!(r.status().is_success());
        let _ = r.bytes().await;
        start.elapsed()
    }
}

fn batch(rng: &mut Rng, prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let len = 20 + rng.below(21);
            (format!("{prefix}_{i}"), rng.value(len))
        })
        .collect()
}

/// Pattern bytes the service derives for `value` (before deduplication across values).
fn pattern_bytes(value: &str) -> usize {
    mask::derive_patterns(value.as_bytes(), MIN_LEN).iter().map(|p| p.len()).sum()
}

async fn batches(client: &Client, rng: &mut Rng, plan: &Plan) {
    for round in 0..plan.batches {
        let secrets = batch(rng, "BATCH", plan.batch);
        let took = client.register(&conversation(round + 1), &secrets).await;
        client.assert_masked(&secrets[secrets.len() - 1].1).await;
        println!("  POST of {} secrets (set holds {} before): {took:?}", plan.batch, round * plan.batch);
    }
}

/// Registers 3 KiB values until their patterns pass the budget; returns how many.
async fn fill_to_budget(client: &Client, rng: &mut Rng) -> usize {
    let (mut bytes, mut count, mut conv) = (0usize, 0usize, 100usize);
    let started = Instant::now();
    while bytes < mask::DEFAULT_MAX_PATTERN_BYTES + mask::DEFAULT_MAX_PATTERN_BYTES / 8 {
        let secrets: Vec<(String, String)> =
            (0..10).map(|i| (format!("BIG_{i}"), rng.value(3 * 1024))).collect();
        bytes += secrets.iter().map(|(_, v)| pattern_bytes(v)).sum::<usize>();
        count += secrets.len();
        client.register(&conversation(conv), &secrets).await;
        conv += 1;
    }
    println!(
        "  filled to the budget: {count} values of 3 KiB, {bytes} pattern bytes, in {:?}",
        started.elapsed()
    );
    count
}

async fn single_adds(client: &Client, rng: &mut Rng, n: usize, at_budget: bool) {
    let mut samples = Vec::new();
    for _ in 0..n {
        let value = rng.value(32);
        let took = client.register(&conversation(99), &[("ROTATED".to_owned(), value.clone())]).await;
        client.assert_masked(&value).await;
        samples.push(took);
    }
    let max = samples.iter().max().copied().unwrap_or_default();
    let set = if at_budget { "at the budget" } else { "small set" };
    println!("  one new value, {set} ({n} rotations): p50 {:?}  max {max:?}", percentile(&mut samples, 0.5));
}

async fn storm(client: Arc<Client>, duration: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let mut rotators = Vec::new();
    for c in 0..4 {
        let (client, stop, rotations) = (client.clone(), stop.clone(), rotations.clone());
        rotators.push(tokio::spawn(async move {
            let mut rng = Rng(0xC0FFEE + c);
            while !stop.load(Ordering::Relaxed) {
                let secrets = vec![(format!("STORM_{c}"), rng.value(32))];
                client.register(&conversation(200 + c as usize), &secrets).await;
                rotations.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < duration {
        samples.push(client.alive().await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in rotators {
        let _ = r.await;
    }
    let n = samples.len();
    let max = samples.iter().max().copied().unwrap_or_default();
    println!(
        "  /alive during a rotation storm (4 clients, {} rotations in {duration:?}): p50 {:?}  p99 {:?}  max {max:?}  ({n} probes)",
        rotations.load(Ordering::Relaxed),
        percentile(&mut samples.clone(), 0.5),
        percentile(&mut samples, 0.99),
    );
}

/// SIGTERM while a large update is being registered; waits at most the shutdown timeout
/// plus a margin before giving up with SIGKILL.
fn sigterm_during_update(rt: &tokio::runtime::Runtime, http: &reqwest::Client, n: usize) {
    let (mut child, base) = start_sidecar();
    let client = Client { http: http.clone(), base };
    let mut rng = Rng(0x5167);
    let secrets = batch(&mut rng, "TERM", n);
    let pid = child.id() as libc::pid_t;
    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10);
    let exited = rt.block_on(async {
        let update = tokio::spawn(async move {
            let map: serde_json::Map<String, Value> =
                secrets.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
            let _ = client
                .http
                .post(format!("{}/api/conversations/{}/secrets", client.base, conversation(7)))
                .header("X-Session-API-Key", KEY)
                .json(&json!({"secrets": map}))
                .send()
                .await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let sent = Instant::now();
        let exited = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break Some(sent.elapsed());
            }
            if sent.elapsed() > limit {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        update.abort();
        exited
    });
    match exited {
        Some(t) => println!(
            "  SIGTERM during a {n}-secret update: exited after {t:?} (--shutdown-timeout {SHUTDOWN_TIMEOUT_SECS}s)"
        ),
        None => println!("  SIGTERM during a {n}-secret update: still running after {limit:?}; killed"),
    }
    stop(child);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let plan = plan();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(600)).build().unwrap();
    let (child, base) = start_sidecar();
    let client = Arc::new(Client { http: http.clone(), base });
    println!("mask update bench:");
    rt.block_on(async {
        let mut rng = Rng(0x5EC2E7);
        batches(&client, &mut rng, &plan).await;
        if plan.fill_to_budget {
            fill_to_budget(&client, &mut rng).await;
        }
        single_adds(&client, &mut rng, plan.single_adds, plan.fill_to_budget).await;
        storm(client.clone(), plan.storm).await;
    });
    stop(child);
    sigterm_during_update(&rt, &http, plan.sigterm_batch);
}
