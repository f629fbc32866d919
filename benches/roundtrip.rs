//! Round trip of one command, `true` with 3 secrets exported and masked, over HTTP on
//! loopback, next to two baselines measured in the same run:
//! - the bare spawn of the same shell (`$SHELL -c true` from this process): the floor;
//! - the same bare spawn with an empty `pre_exec` hook, which makes std `fork` instead of
//!   `posix_spawn` as the sidecar's spawn does (it `execve`s a wiped image from that hook):
//!   the difference between the two is what the fork costs;
//! - the reference agent-server's `POST /api/bash/execute_bash_command` with `true`, when
//!   `REF_URL` and `REF_KEY` point at one (`bench/roundtrip.sh` starts it).
//!
//! Prints p50/p99 of each and the ratios. Run with `cargo bench --bench roundtrip`.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::json;

/// Rounds under `cargo bench`; `cargo test` runs a short smoke test of the harness.
fn rounds() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") { (400, 30) } else { (5, 1) }
}
const KEY: &str = "bench-key";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    Stats { p50: percentile(&mut samples, 0.5), p99: percentile(&mut samples, 0.99) }
}

async fn time_requests(client: &reqwest::Client, url: &str, key: &str, body: &serde_json::Value) -> Stats {
    let (rounds, warmup) = rounds();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + warmup {
        let start = Instant::now();
        let r = client.post(url).header("X-Session-API-Key", key).json(body).send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{status}: {text}");
        if i >= warmup {
            samples.push(start.elapsed());
        }
    }
    stats(samples)
}

/// `SHELL -c true` spawned from this process; with `fork`, an empty `pre_exec` hook makes std
/// fork and exec instead of using `posix_spawn`.
async fn bare_spawn(shell: &str, fork: bool) -> Stats {
    let (rounds, warmup) = rounds();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + warmup {
        let start = Instant::now();
        let mut cmd = tokio::process::Command::new(shell);
        cmd.args(["-c", "true"]);
        if fork {
            // SAFETY: the hook does nothing, so it is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| Ok(()));
            }
        }
        let status = cmd.status().await.unwrap();
        assert!(status.success());
        if i >= warmup {
            samples.push(start.elapsed());
        }
    }
    stats(samples)
}

fn start_sidecar(shell: &str) -> (Child, String) {
    sidecar::start(env!("CARGO_BIN_EXE_secret-sidecar"), KEY, &["--log", "warn", "--shell", shell])
}

#[path = "support/sidecar.rs"]
mod sidecar;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for shell in ["bash", "sh"] {
        let (mut child, base) = start_sidecar(shell);
        rt.block_on(async {
            let secrets = json!({"secrets": {"SECRET_A": "value-aaaa-1111", "SECRET_B": "value-bbbb-2222", "SECRET_C": "value-cccc-3333"}});
            let r = client.post(format!("{base}/api/secrets")).header("X-Session-API-Key", KEY).json(&secrets).send().await.unwrap();
            assert!(r.status().is_success());
            let body = json!({"command": "true \"$SECRET_A\" \"$SECRET_B\" \"$SECRET_C\""});
            let check = client.post(format!("{base}/api/commands")).header("X-Session-API-Key", KEY).json(&body).send().await.unwrap();
            let v: serde_json::Value = check.json().await.unwrap();
            assert_eq!(v["exported"], json!(["SECRET_A", "SECRET_B", "SECRET_C"]), "{v}");

            let ours = time_requests(&client, &format!("{base}/api/commands"), KEY, &body).await;
            let bare = bare_spawn(shell, false).await;
            let forked = bare_spawn(shell, true).await;
            println!("shell {shell}:");
            println!("  secret-sidecar POST /api/commands (3 secrets): p50 {:?}  p99 {:?}", ours.p50, ours.p99);
            println!("  bare spawn `{shell} -c true`:                   p50 {:?}  p99 {:?}", bare.p50, bare.p99);
            println!("  bare spawn forced to fork (pre_exec hook):      p50 {:?}  p99 {:?}", forked.p50, forked.p99);
            println!("  ratio to the bare spawn (p50): {:.2}x (target <= 1.3x)", ours.p50.as_secs_f64() / bare.p50.as_secs_f64());
            let reference = match (std::env::var("REF_URL"), std::env::var("REF_KEY")) {
                (Ok(url), Ok(key)) => {
                    let reference =
                        time_requests(&client, &format!("{url}/api/bash/execute_bash_command"), &key, &json!({"command": "true"})).await;
                    println!("  reference execute_bash_command `true`:        p50 {:?}  p99 {:?}", reference.p50, reference.p99);
                    println!("  ratio to the reference (p50): {:.2}x (target <= 0.35x)", ours.p50.as_secs_f64() / reference.p50.as_secs_f64());
                    Some(reference)
                }
                _ => {
                    println!("  reference: not measured (set REF_URL and REF_KEY; bench/roundtrip.sh does)");
                    None
                }
            };
            // One line for bench/compare.sh: shell, then p50 and p99 in microseconds (0 when the
            // reference was not measured), then the forked bare spawn.
            let (r50, r99) = reference.map_or((0, 0), |r| (r.p50.as_micros(), r.p99.as_micros()));
            println!(
                "result {shell} ours {} {} bare {} {} reference {r50} {r99} fork {} {}",
                ours.p50.as_micros(),
                ours.p99.as_micros(),
                bare.p50.as_micros(),
                bare.p99.as_micros(),
                forked.p50.as_micros(),
                forked.p99.as_micros()
            );
        });
        let _ = child.kill();
        let _ = child.wait();
    }
}
