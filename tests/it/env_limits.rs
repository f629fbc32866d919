//! Values the system cannot export (a variable over 128 KiB, an environment over the
//! kernel's total): implicit secrets are skipped, anything else is a 422 naming what is too
//! large — never a failed spawn answered with 503. Real commands throughout.

use serde_json::{Value, json};

use crate::common::TestApp;

/// Appears in every value; must never come back.
const CANARY: &str = "canary-e2b1";

/// The kernel's limit on arguments plus environment for a child of this process.
fn arg_space() -> usize {
    let mut rlim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut rlim) }, 0);
    let quarter = if rlim.rlim_cur == libc::RLIM_INFINITY { usize::MAX } else { rlim.rlim_cur as usize / 4 };
    quarter.clamp(128 << 10, 6 << 20)
}

async fn command(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let (status, body) = app.post(path, &body).await;
    assert!(!body.to_string().contains(CANARY), "a value came back: {body}");
    (status, body)
}

#[tokio::test]
async fn a_variable_over_128_kib_is_skipped_when_implicit_and_named_when_explicit() {
    let app = TestApp::spawn_with(&["--max-value-bytes", "200000", "--max-body-bytes", "4000000"], &[]).await;
    let big = format!("{CANARY}{}", "b".repeat(140 * 1024));
    let (status, body) =
        app.post("/api/secrets", &json!({"secrets": {"BIG": big, "SMALL": format!("{CANARY}-small")}})).await;
    assert_eq!(status, 200, "{body}");

    // Implicit ("big" in the text): skipped, and the command runs with the rest.
    let (status, out) =
        command(&app, "/api/commands", json!({"command": "echo big; printf %s \"$SMALL\" | wc -c"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!((&out["exported"], &out["skipped"]), (&json!(["SMALL"]), &json!(["BIG"])));
    assert_eq!((out["exit_code"].as_i64(), out["stdout"].as_str()), (Some(0), Some("big\n17\n")));

    // The bash routes leave it out too (they never fail for a secret).
    let (status, out) =
        command(&app, "/api/bash/execute_bash_command", json!({"command": "echo big; echo ${#BIG}"})).await;
    assert_eq!((status, out["exit_code"].as_i64(), out["stdout"].as_str()), (200, Some(0), Some("big\n0\n")));

    // Explicit: a 422 that names it, on both routes; with "skip", skipped.
    for path in ["/api/commands", "/api/commands/stream"] {
        let (status, err) = command(&app, path, json!({"command": "printf %s \"$BIG\" | wc -c"})).await;
        assert_eq!(status, 422, "{path}: {err}");
        let detail = err["detail"].as_str().unwrap();
        assert!(detail.contains("secret BIG") && detail.contains("131072"), "{detail}");
    }
    let (status, out) = command(
        &app,
        "/api/commands",
        json!({"command": "printf %s \"$BIG\" | wc -c", "on_missing": "skip"}),
    )
    .await;
    assert_eq!((status, &out["skipped"], out["stdout"].as_str()), (200, &json!(["BIG"]), Some("0\n")));

    // The request's own env and the command text are held to the same limit.
    let env = json!({"command": "true", "env": {"HUGE": format!("{CANARY}{}", "e".repeat(140 * 1024))}});
    let (status, err) = command(&app, "/api/commands", env).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["detail"].as_str().unwrap().starts_with("env: HUGE"), "{err}");
    let long = json!({"command": format!("true # {CANARY}{}", "c".repeat(140 * 1024))});
    let (status, err) = command(&app, "/api/commands", long).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["detail"].as_str().unwrap().starts_with("command:"), "{err}");
}

#[tokio::test]
async fn an_environment_over_the_kernel_total_drops_implicit_secrets_or_is_422() {
    // Each value is just under the per-variable limit; together they are over the total.
    const VALUE: usize = 120_000;
    let count = arg_space() / VALUE + 2;
    let body_limit = (count * (VALUE + 64) + 4096).to_string();
    // Values this long are not masked here: rebuilding the masker for megabytes of patterns
    // once per value would make the test slow, and masking is not what it is about.
    let flags =
        ["--max-value-bytes", "120000", "--max-body-bytes", &body_limit, "--mask-min-length", "1000000"];
    let app = TestApp::spawn_with(&flags, &[]).await;
    let names: Vec<String> = (0..count).map(|i| format!("BULK_{i:03}")).collect();
    let secrets: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let head = format!("{CANARY}-{i:03}-");
            (n.clone(), json!(format!("{head}{}", "x".repeat(VALUE - head.len()))))
        })
        .collect();
    let (status, body) = app.post("/api/secrets", &json!({"secrets": secrets})).await;
    assert_eq!(status, 200, "{body}");

    // All implicit (lower case in the text): some are skipped, the rest exported, and the
    // command really runs with them.
    let text = format!("env | grep -c '^BULK_' # {}", names.join(" ").to_lowercase());
    let (status, out) = command(&app, "/api/commands", json!({"command": text, "timeout": 60})).await;
    assert_eq!(status, 200, "{out}");
    let exported = out["exported"].as_array().unwrap().len();
    let skipped = out["skipped"].as_array().unwrap().len();
    assert!(skipped > 0 && exported > 0 && exported + skipped == count, "{out}");
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(out["stdout"].as_str().unwrap().trim(), exported.to_string());

    // All explicit: nothing may be dropped, so a 422 naming them.
    let (status, err) =
        command(&app, "/api/commands", json!({"command": "true", "secrets": "all", "timeout": 60})).await;
    assert_eq!(status, 422, "{err}");
    let detail = err["detail"].as_str().unwrap();
    assert!(detail.contains("larger than the system allows") && detail.contains("BULK_000"), "{detail}");
    // The service is fine afterwards.
    let (status, out) = command(&app, "/api/commands", json!({"command": "echo ok", "timeout": 20})).await;
    assert_eq!((status, out["stdout"].as_str()), (200, Some("ok\n")));
}
