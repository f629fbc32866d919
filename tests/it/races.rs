//! Commands racing descriptor changes: thousands of short commands run while other tasks
//! replace and delete the secrets they use.
//!
//! What must hold for every command: one that uses a secret explicitly either runs with a
//! value that was registered (seen through `${X#?}`, which masking does not hide) or gets a
//! 424; a secret used only implicitly never causes a 424 and, when it cannot be exported,
//! is listed in `skipped`; no output shows any value ever registered; nothing answers 5xx;
//! and the whole run ends in bounded time (no deadlock).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::{CONV_HEX, TestApp};

const COMMANDS: usize = 2_000;
/// Commands in flight at once (the service allows more: no 429 is expected).
const IN_FLIGHT: usize = 24;

/// Every value ever registered, recorded before it is sent.
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    fn record(&self, v: String) -> String {
        self.0.lock().unwrap().push(v.clone());
        v
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn contains(&self, v: &str) -> bool {
        self.0.lock().unwrap().iter().any(|x| x == v)
    }
}

/// One command's shape and what it must show.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `$X` in the text: explicit when `X` is in scope as the command is prepared (200 with
    /// the value, or 424); when it is not, the text is just shell (200, nothing exported).
    Reference,
    /// `secrets: ["X"]`: explicit whatever the scope holds; 200 with the value, or 424.
    Explicit,
    /// `secrets: ["X"]` and `on_missing: "skip"`: 200 always; exported or skipped.
    ExplicitSkip,
    /// `imp_token` in the text only: implicit; never a 424.
    Implicit,
}

async fn run_one(app: &TestApp, shape: Shape, ledger: &Ledger) -> Result<(), String> {
    let path = format!("/api/conversations/{CONV_HEX}/commands");
    let body = match shape {
        Shape::Reference => json!({"command": "printf '%s|%s' \"$X\" \"${X#?}\"", "timeout": 60}),
        Shape::Explicit => {
            json!({"command": "printf '%s|%s' \"$X\" \"${X#?}\"", "secrets": ["X"], "timeout": 60})
        }
        Shape::ExplicitSkip => {
            json!({"command": "printf '%s|%s' \"$X\" \"${X#?}\"", "secrets": ["X"], "on_missing": "skip", "timeout": 60})
        }
        Shape::Implicit => json!({"command": "printenv IMP_TOKEN; true", "timeout": 60}),
    };
    let (status, b) = app.post(&path, &body).await;
    let text = b.to_string();
    for v in ledger.all() {
        if text.contains(&v) {
            return Err(format!("{shape:?}: a value shows: {text}"));
        }
    }
    let exported = |name: &str| b["exported"].as_array().is_some_and(|a| a.contains(&json!(name)));
    let skipped = |name: &str| b["skipped"].as_array().is_some_and(|a| a.contains(&json!(name)));
    match (shape, status) {
        (Shape::Reference | Shape::Explicit, 424) => {
            if b["missing"][0]["name"] != "X" {
                return Err(format!("424 without X missing: {text}"));
            }
        }
        (Shape::Reference | Shape::Explicit | Shape::ExplicitSkip, 200) if exported("X") => {
            // The masked value, then the value less its first byte (not hidden).
            let out = b["stdout"].as_str().unwrap_or_default();
            let Some(("<secret-hidden>", rest)) = out.split_once('|') else {
                return Err(format!("{shape:?}: X exported but not shown masked: {text}"));
            };
            if !ledger.contains(&format!("r{rest}")) {
                return Err(format!("{shape:?}: ran with a value never registered: {text}"));
            }
        }
        (Shape::Reference, 200) if !skipped("X") && b["stdout"] == "|" => {}
        (Shape::ExplicitSkip, 200) if skipped("X") => {
            if b["stdout"] != "|" {
                return Err(format!("skipped X but the command saw a value: {text}"));
            }
        }
        (Shape::Implicit, 200) => {
            let out = b["stdout"].as_str().unwrap_or_default();
            match (exported("IMP_TOKEN"), out) {
                (true, "<secret-hidden>\n") | (false, "") => {}
                _ => return Err(format!("implicit export and output disagree: {text}")),
            }
            if exported("IMP_TOKEN") && skipped("IMP_TOKEN") {
                return Err(format!("exported and skipped: {text}"));
            }
        }
        (_, s) => return Err(format!("{shape:?}: status {s}: {text}")),
    }
    Ok(())
}

/// Replaces and deletes `X` (in the conversation and sandbox-wide) and flips `IMP_TOKEN`
/// between a value, no value and nothing, until `stop`.
async fn churn(app: Arc<TestApp>, ledger: Ledger, stop: Arc<AtomicBool>, worker: usize) -> usize {
    let conv = format!("/api/conversations/{CONV_HEX}/secrets");
    let mut changes = 0;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let value = || ledger.record(format!("race-value-{worker}-{i:06}-{:08x}", rand_u32()));
        let (status, body) = match i % 6 {
            0 => app.delete(&format!("{conv}/X")).await,
            1 => app.delete("/api/secrets/X").await,
            2 => app.post("/api/secrets", &json!({"secrets": {"X": value(), "IMP_TOKEN": ""}})).await,
            3 => app.delete(&format!("{conv}/IMP_TOKEN")).await,
            4 => {
                let imp = ledger.record(format!("race-implicit-{worker}-{i:06}"));
                app.post(&conv, &json!({"secrets": {"IMP_TOKEN": {"value": imp}}})).await
            }
            _ => {
                app.post(&conv, &json!({"secrets": {"X": {"kind": "StaticSecret", "value": value()}}})).await
            }
        };
        // A delete may find the name gone already (404); anything else must succeed.
        assert!(status == 200 || status == 404, "churn: {status} {body}");
        changes += 1;
        tokio::task::yield_now().await;
    }
    changes
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    h.finish() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_commands_while_descriptors_change() {
    let app = Arc::new(
        TestApp::spawn_with(&["--max-concurrent-commands", "64", "--max-concurrent-requests", "512"], &[])
            .await,
    );
    let ledger = Ledger::default();
    let first = ledger.record("race-value-initial-0001".into());
    let (s, _) =
        app.post(&format!("/api/conversations/{CONV_HEX}/secrets"), &json!({"secrets": {"X": first}})).await;
    assert_eq!(s, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> =
        (0..2).map(|w| tokio::spawn(churn(app.clone(), ledger.clone(), stop.clone(), w))).collect();

    let run = async {
        let gate = Arc::new(Semaphore::new(IN_FLIGHT));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut tasks = JoinSet::new();
        for n in 0..COMMANDS {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let (app, ledger, failures, counts) =
                (app.clone(), ledger.clone(), failures.clone(), counts.clone());
            let shape = [Shape::Reference, Shape::Explicit, Shape::ExplicitSkip, Shape::Implicit][n % 4];
            tasks.spawn(async move {
                match run_one(&app, shape, &ledger).await {
                    Ok(()) => counts[0].fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().unwrap().push(e);
                        counts[1].fetch_add(1, Ordering::Relaxed)
                    }
                };
                drop(permit);
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("a command task panicked");
        }
        failures.lock().unwrap().clone()
    };
    let failures =
        tokio::time::timeout(Duration::from_secs(240), run).await.expect("no deadlock: the commands end");
    stop.store(true, Ordering::Relaxed);
    let mut changes = 0;
    for c in churners {
        changes +=
            tokio::time::timeout(Duration::from_secs(30), c).await.expect("churn ends").expect("churn");
    }
    assert!(
        failures.is_empty(),
        "{} of {COMMANDS} commands failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(changes >= 20, "only {changes} descriptor changes raced the commands");

    // The latest values are still masked, deleted ones included. (Older ones may have left
    // the mask set: it keeps 8 previous values per name, contract §6; each command's own
    // output was checked against every value above.)
    let values = ledger.all();
    let latest: Vec<&String> = values.iter().rev().filter(|v| v.starts_with("race-value-")).take(4).collect();
    let text = latest.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(" ");
    let (s, b) = app.post("/api/mask", &json!({"text": text})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["text"], vec!["<secret-hidden>"; latest.len()].join(" "), "{b}");
}
