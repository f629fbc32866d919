//! `--state-file` through the real binary: descriptors survive a restart and a SIGKILL in the
//! middle of a stream of updates; a damaged file or another key stops the start (or is moved
//! aside on request); the file holds no plaintext, is 0600, and a failed write is answered 507
//! and rolled back.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::bin::BinApp;
use crate::common::fake_settings::FakeSettings;

const KEY: &str = "state-api-key-77";
const STATE_KEY: &str = "state-key-material-0123456789";
const CONV_A: &str = "0a1b2c3d4e5f6789abcdef0123456789";
const CONV_B: &str = "1a1b2c3d4e5f6789abcdef0123456789";
const CONV_GONE: &str = "2a1b2c3d4e5f6789abcdef0123456789";

/// A fresh directory, removed with the test.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("sidecar-it-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn argv<'a>(state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--listen", "127.0.0.1:0", "--state-file", state];
    args.extend_from_slice(extra);
    args
}

/// Starts the binary on `state` sealed with [`STATE_KEY`].
fn start(state: &Path, extra: &[&str]) -> BinApp {
    let state = state.to_str().unwrap();
    BinApp::spawn(&argv(state, extra), &[("SESSION_API_KEY", KEY), ("OH_SECRET_KEY", STATE_KEY)])
        .unwrap_or_else(|logs| panic!("does not start: {logs}"))
}

/// Runs the binary expecting it to refuse to start; returns its exit code and stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secret-sidecar"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

async fn call(app: &BinApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("X-Session-API-Key", KEY)
        .timeout(Duration::from_secs(30));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post(app: &BinApp, path: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::POST, path, Some(body)).await
}

/// What a listing shows of each entry, values aside.
async fn listing(app: &BinApp, path: &str) -> Vec<Value> {
    let (status, body) = call(app, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "{body}");
    body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["name"], e["kind"], e["description"], e["scope"], e["shadowed"], e["origin"]]))
        .collect()
}

async fn names(app: &BinApp, path: &str) -> BTreeSet<String> {
    listing(app, path).await.iter().map(|e| e[0].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn descriptors_survive_a_restart_and_deletes_stay_deleted() {
    let dir = Dir::new("roundtrip");
    let fake = FakeSettings::start(KEY).await;
    fake.set("GH", b"looked-up-value-canary", None);
    let extra = ["--settings-url", &fake.base];
    let mut app = start(&dir.state(), &extra);
    let sandbox = json!({"secrets": {
        "STATIC": {"kind": "StaticSecret", "value": "static-canary-0123", "description": "kept"},
        "UNSET": {"kind": "StaticSecret", "value": null},
        "GONE": "deleted-canary-4567",
        "GH": {"kind": "LookupSecret", "url": fake.url("GH"), "ttl_seconds": 0,
               "headers": {"X-Session-API-Key": "stale-session-canary", "X-Custom": "header-canary"}},
    }});
    assert_eq!(post(&app, "/api/secrets", sandbox).await.0, 200);
    for (conv, name) in [(CONV_A, "A_ONLY"), (CONV_B, "B_ONLY"), (CONV_GONE, "DROPPED")] {
        let body = json!({"secrets": {
            name: format!("{name}-value-canary"),
            "STATIC": {"kind": "StaticSecret", "value": null},
        }});
        assert_eq!(post(&app, &format!("/api/conversations/{conv}/secrets"), body).await.0, 200);
    }
    assert_eq!(call(&app, reqwest::Method::DELETE, "/api/secrets/GONE", None).await.0, 200);
    let drop_path = format!("/api/conversations/{CONV_GONE}");
    assert_eq!(call(&app, reqwest::Method::DELETE, &drop_path, None).await.0, 200);
    // Resolved once: the looked-up value is held in memory, and must not reach the file.
    let (_, r) = post(&app, "/api/secrets/resolve", json!({"names": ["GH"]})).await;
    assert_eq!(r["resolved"], json!(["GH"]), "{r}");
    let paths = [
        "/api/secrets".to_owned(),
        format!("/api/conversations/{CONV_A}/secrets"),
        format!("/api/conversations/{CONV_B}/secrets"),
    ];
    let mut before = Vec::new();
    for p in &paths {
        before.push(listing(&app, p).await);
    }
    assert!(app.terminate().success());

    let app = start(&dir.state(), &extra);
    for (p, was) in paths.iter().zip(&before) {
        assert_eq!(&listing(&app, p).await, was, "{p}");
    }
    assert!(!names(&app, "/api/secrets").await.contains("GONE"));
    let (status, body) =
        call(&app, reqwest::Method::GET, &format!("/api/conversations/{CONV_GONE}/secrets"), None).await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains("DROPPED"), "a dropped conversation stays dropped: {body}");

    // The static value is back, and masked from the start.
    let command = r#"case "$STATIC" in static-canary-*) echo prefix-ok;; esac; printf %s "$STATIC""#;
    let (status, out) = post(&app, "/api/commands", json!({"command": command, "timeout": 20})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["stdout"], "prefix-ok\n<secret-hidden>", "{out}");
    // The lookup carries its stored header, and the sidecar's current session key rather than
    // the stale copy (which was never stored).
    let (_, r) = post(&app, "/api/secrets/resolve", json!({"names": ["GH"]})).await;
    assert_eq!(r["resolved"], json!(["GH"]), "{r}");
    let seen = fake.seen_headers();
    let last = seen.last().unwrap();
    assert_eq!(last.get("x-custom").unwrap(), "header-canary");
    assert_eq!(last.get("x-session-api-key").unwrap(), KEY);
    let file = std::fs::read(dir.state()).unwrap();
    for marker in ["static-canary", "header-canary", "stale-session-canary", "looked-up-value-canary"] {
        assert!(!contains(&file, marker.as_bytes()), "{marker} in the file");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the clients of one run saw acknowledged.
#[derive(Default)]
struct Acks {
    posted: Vec<String>,
    delete_sent: BTreeSet<String>,
    deleted: Vec<String>,
}

/// Four clients posting (and now and then deleting) until the sidecar goes away.
fn stream_updates(base: String, round: usize, acks: Arc<Mutex<Acks>>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|c| {
            let (base, acks) = (base.clone(), acks.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                for i in 0.. {
                    let name = format!("R{round}_C{c}_{i}");
                    let body = json!({"secrets": {&name: format!("value-{round}-{c}-{i}-canary")}});
                    let req = client.post(format!("{base}/api/secrets")).header("X-Session-API-Key", KEY);
                    match req.json(&body).send().await {
                        Ok(r) if r.status() == 200 => acks.lock().unwrap().posted.push(name),
                        Ok(r) => panic!("update answered {}", r.status()),
                        Err(_) => return,
                    }
                    if i % 5 == 4 {
                        let victim = format!("R{round}_C{c}_{}", i - 2);
                        acks.lock().unwrap().delete_sent.insert(victim.clone());
                        let req = client
                            .delete(format!("{base}/api/secrets/{victim}"))
                            .header("X-Session-API-Key", KEY);
                        match req.send().await {
                            Ok(r) if r.status() == 200 => acks.lock().unwrap().deleted.push(victim),
                            Ok(r) => panic!("delete answered {}", r.status()),
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn every_acknowledged_update_survives_sigkill() {
    let dir = Dir::new("sigkill");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let extra = ["--max-secrets-per-scope", "100000"];
    let mut expected_present: BTreeSet<String> = BTreeSet::new();
    let mut expected_absent: BTreeSet<String> = BTreeSet::new();
    for round in 0..3 {
        let mut app = start(&dir.state(), &extra);
        let listed = names(&app, "/api/secrets").await;
        let lost: Vec<_> = expected_present.difference(&listed).collect();
        assert!(lost.is_empty(), "seed {seed} round {round}: acknowledged updates lost: {lost:?}");
        let back: Vec<_> = expected_absent.intersection(&listed).collect();
        assert!(back.is_empty(), "seed {seed} round {round}: acknowledged deletes undone: {back:?}");

        // Kill after a pseudo-random number of acknowledgements, while the clients keep going.
        let target = 20 + (seed as usize / (round + 1)) % 200;
        let acks: Arc<Mutex<Acks>> = Arc::default();
        let clients = stream_updates(app.base.clone(), round, acks.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        while acks.lock().unwrap().posted.len() < target {
            assert!(Instant::now() < deadline, "seed {seed}: too slow: {}", app.logs());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // SAFETY: kill with the pid of our own running child.
        unsafe { libc::kill(app.child.id() as i32, libc::SIGKILL) };
        app.wait(Duration::from_secs(15)).expect("exits after SIGKILL");
        for c in clients {
            c.await.unwrap();
        }
        let acks = acks.lock().unwrap();
        expected_present.extend(acks.posted.iter().filter(|n| !acks.delete_sent.contains(*n)).cloned());
        expected_absent.extend(acks.deleted.iter().cloned());
    }
    let app = start(&dir.state(), &extra);
    let listed = names(&app, "/api/secrets").await;
    assert!(expected_present.is_subset(&listed), "seed {seed}: acknowledged updates lost");
    assert!(expected_absent.is_disjoint(&listed), "seed {seed}: acknowledged deletes undone");
    // At least 20 acknowledged posts per round, of which at most one in five had a delete sent.
    assert!(
        expected_present.len() >= 3 * 16,
        "seed {seed}: only {} updates exercised",
        expected_present.len()
    );
}

#[tokio::test]
async fn a_damaged_file_is_refused_or_moved_aside_on_request() {
    let dir = Dir::new("tamper");
    let state = dir.state();
    let mut app = start(&state, &[]);
    assert_eq!(post(&app, "/api/secrets", json!({"secrets": {"T": "tamper-canary-value"}})).await.0, 200);
    assert!(app.terminate().success());
    let mut bytes = std::fs::read(&state).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&state, &bytes).unwrap();
    let env = [("SESSION_API_KEY", KEY), ("OH_SECRET_KEY", STATE_KEY)];
    let (code, err) = refused(&argv(state.to_str().unwrap(), &[]), &env);
    assert_ne!(code, 0);
    assert!(err.contains(state.to_str().unwrap()) && err.contains("damaged or altered"), "{err}");
    assert!(err.contains("--state-reset-on-error"), "the remedy is named: {err}");
    // Truncated: refused too.
    std::fs::write(&state, &bytes[..20]).unwrap();
    let (code, err) = refused(&argv(state.to_str().unwrap(), &[]), &env);
    assert_ne!(code, 0);
    assert!(err.contains("truncated"), "{err}");
    assert!(!err.contains("tamper-canary"));

    std::fs::write(&state, &bytes).unwrap();
    let app = start(&state, &["--state-reset-on-error"]);
    let warned = app.logs();
    assert!(warned.contains("moved aside") && warned.contains("\"WARN\""), "{warned}");
    assert!(names(&app, "/api/secrets").await.is_empty(), "starts empty");
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(dir.0.join(&aside[0])).unwrap(), bytes, "kept as it was");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600, "a new empty file");
}

#[tokio::test]
async fn another_key_is_refused_and_the_key_file_is_a_key_source() {
    let dir = Dir::new("wrongkey");
    let state = dir.state();
    let mut app = start(&state, &[]);
    assert_eq!(post(&app, "/api/secrets", json!({"secrets": {"W": "wrong-key-canary"}})).await.0, 200);
    assert!(app.terminate().success());
    let args = argv(state.to_str().unwrap(), &[]);
    let (code, err) =
        refused(&args, &[("SESSION_API_KEY", KEY), ("OH_SECRET_KEY", "another-key-material-000")]);
    assert_ne!(code, 0);
    assert!(err.contains("sealed with a different key"), "{err}");
    // Never the session key: with only that, there is no key at all.
    let (code, err) = refused(&args, &[("SESSION_API_KEY", KEY)]);
    assert_ne!(code, 0);
    assert!(err.contains("--state-file: needs a key"), "{err}");
    // The same material from --state-key-file opens it.
    let key_file = dir.0.join("key");
    std::fs::write(&key_file, format!("{STATE_KEY}\n")).unwrap();
    let app = BinApp::spawn(
        &argv(state.to_str().unwrap(), &["--state-key-file", key_file.to_str().unwrap()]),
        &[("SESSION_API_KEY", KEY)],
    )
    .unwrap();
    assert_eq!(names(&app, "/api/secrets").await, BTreeSet::from(["W".to_owned()]));
    let short = dir.0.join("short");
    std::fs::write(&short, "too-short").unwrap();
    let (code, err) = refused(
        &argv(state.to_str().unwrap(), &["--state-key-file", short.to_str().unwrap()]),
        &[("SESSION_API_KEY", KEY)],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--state-key-file") && err.contains("at least 16 bytes"), "{err}");
    assert!(!err.contains("too-short"), "{err}");
}

#[tokio::test]
async fn the_file_is_0600_and_holds_no_plaintext() {
    let dir = Dir::new("plaintext");
    let state = dir.state();
    let app = start(&state, &["--allow-lookup-origin", "https://app.example.dev"]);
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600, "created at start");
    let markers =
        ["static-marker-9f8e7d6c", "header-marker-5a4b3c2d", "query-marker-11223344", "desc-marker-55aa"];
    let body = json!({"secrets": {
        "S": {"kind": "StaticSecret", "value": markers[0], "description": markers[3]},
        "L": {"kind": "LookupSecret", "url": format!("https://app.example.dev/x?token={}", markers[2]),
              "headers": {"Authorization": format!("Bearer {}", markers[1])}},
    }});
    assert_eq!(post(&app, "/api/secrets", body.clone()).await.0, 200);
    assert_eq!(post(&app, &format!("/api/conversations/{CONV_A}/secrets"), body).await.0, 200);
    let file = std::fs::read(&state).unwrap();
    assert!(file.len() > 100);
    for marker in markers {
        assert!(!contains(&file, marker.as_bytes()), "{marker} in the file");
        assert!(!app.logs().contains(marker), "{marker} in the logs");
    }
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["state"], "no temporary file is left behind");
}

#[tokio::test]
async fn a_symlink_at_the_path_is_refused() {
    let dir = Dir::new("symlink");
    let real = dir.0.join("real");
    std::fs::write(&real, b"x").unwrap();
    std::os::unix::fs::symlink(&real, dir.state()).unwrap();
    let (code, err) = refused(
        &argv(dir.state().to_str().unwrap(), &[]),
        &[("SESSION_API_KEY", KEY), ("OH_SECRET_KEY", STATE_KEY)],
    );
    assert_ne!(code, 0);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&real).unwrap(), b"x");
}

#[tokio::test]
async fn a_failed_write_is_answered_507_and_rolled_back() {
    let dir = Dir::new("failed-write");
    let state_dir = dir.0.join("sub");
    std::fs::create_dir(&state_dir).unwrap();
    let state = state_dir.join("state");
    let mut app = start(&state, &[]);
    assert_eq!(post(&app, "/api/secrets", json!({"secrets": {"A": "value-a-canary"}})).await.0, 200);
    // The directory goes away: the next write cannot create its temporary file.
    std::fs::remove_dir_all(&state_dir).unwrap();
    let (status, body) =
        post(&app, "/api/secrets", json!({"secrets": {"B": "value-b-canary", "A": "a-2"}})).await;
    assert_eq!(status, 507, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("not applied"), "{body}");
    assert!(!body.to_string().contains("canary"));
    let (status, _) = call(&app, reqwest::Method::DELETE, "/api/secrets/A", None).await;
    assert_eq!(status, 507);
    assert_eq!(names(&app, "/api/secrets").await, BTreeSet::from(["A".to_owned()]), "rolled back");
    let (_, out) =
        post(&app, "/api/commands", json!({"command": "printf %s \"$A\" | wc -c", "timeout": 20})).await;
    assert_eq!(out["stdout"].as_str().unwrap().trim(), "14", "A keeps its written value: {out}");
    assert!(app.logs().contains("state file not written"), "the cause is logged");
    // Writable again: updates go through, and all of it is on disk.
    std::fs::create_dir(&state_dir).unwrap();
    assert_eq!(post(&app, "/api/secrets", json!({"secrets": {"C": "value-c-canary"}})).await.0, 200);
    assert!(app.terminate().success());
    let app = start(&state, &[]);
    assert_eq!(names(&app, "/api/secrets").await, BTreeSet::from(["A".to_owned(), "C".to_owned()]));
}

#[tokio::test]
async fn without_a_state_file_nothing_is_written() {
    let dir = Dir::new("none");
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0"],
        &[("SESSION_API_KEY", KEY), ("OH_SECRET_KEY", STATE_KEY), ("TMPDIR", dir.path())],
    )
    .unwrap();
    assert_eq!(post(&app, "/api/secrets", json!({"secrets": {"N": "no-file-value"}})).await.0, 200);
    let files: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("state"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn a_burst_of_updates_shares_writes() {
    let dir = Dir::new("burst");
    let app = start(&dir.state(), &[]);
    let written = |logs: &str| -> (usize, u64) {
        let lines: Vec<Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "state file written")
            .collect();
        (lines.len(), lines.iter().map(|v| v["updates"].as_u64().unwrap()).sum())
    };
    let updates: Vec<_> = (0..32)
        .map(|i| {
            let base = app.base.clone();
            tokio::spawn(async move {
                let body = json!({"secrets": {format!("BURST_{i}"): format!("burst-value-{i}")}});
                let r = reqwest::Client::new()
                    .post(format!("{base}/api/secrets"))
                    .header("X-Session-API-Key", KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            })
        })
        .collect();
    for u in updates {
        u.await.unwrap();
    }
    // Each acknowledged update was covered by a write, logged before its answer was sent
    // (the log reader may still be catching up: poll, bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (writes, covered) = loop {
        let (writes, covered) = written(&app.logs());
        if covered >= 32 || Instant::now() > deadline {
            break (writes, covered);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(covered, 32);
    assert!(writes < 32, "{writes} writes for 32 concurrent updates");
    assert_eq!(names(&app, "/api/secrets").await.len(), 32);
}
