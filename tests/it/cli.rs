//! `secret-sidecar exec`: streams masked output and exits with the command's code.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::bin::BinApp;

const KEY: &str = "cli-key-77";

fn exec(app: &BinApp, key: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-sidecar"))
        .args(["exec", "--url", &app.base])
        .args(args)
        .env_clear()
        .env("SESSION_API_KEY", key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn exec_streams_masked_output_and_exit_codes() {
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", KEY)]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/secrets", app.base))
            .header("X-Session-API-Key", KEY)
            .json(&json!({"secrets": {"TOK": "cli-secret-value-1"}}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    let (code, out, err) = exec(&app, KEY, &["--", "echo", "$TOK;", "echo", "err", ">&2;", "exit", "3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "<secret-hidden>\n", "err\n"));
    let (code, _, _) = exec(&app, KEY, &["--timeout", "1", "--", "sleep", "5"]);
    assert_eq!(code, 124);
    let (code, _, err) = exec(&app, "wrong-key", &["--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("401"), "{err}");
    let (code, _, _) = exec(&app, KEY, &["--conversation", "nope", "--", "true"]);
    assert_eq!(code, 125);
}
