//! `secret-sidecar exec`: streams masked output and exits with the command's code; the argv
//! after `--` runs word for word, shell text only comes from `-c`.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::bin::BinApp;

const KEY: &str = "cli-key-77";

fn exec(app: &BinApp, key: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-sidecar"))
        .args(["exec", "--url", &app.base])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
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

/// A sidecar binary with `secrets` registered sandbox-wide.
fn sidecar(secrets: serde_json::Value) -> BinApp {
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", KEY)]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/secrets", app.base))
            .header("X-Session-API-Key", KEY)
            .json(&json!({ "secrets": secrets }))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    app
}

#[test]
fn exec_streams_masked_output_and_exit_codes() {
    let app = sidecar(json!({"TOK": "cli-secret-value-1"}));
    let (code, out, err) = exec(&app, KEY, &["-c", "echo $TOK; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "<secret-hidden>\n", "err\n"));
    let (code, _, _) = exec(&app, KEY, &["--timeout", "1", "--", "sleep", "5"]);
    assert_eq!(code, 124);
    let (code, _, err) = exec(&app, "wrong-key", &["--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("401"), "{err}");
    let (code, _, _) = exec(&app, KEY, &["--conversation", "nope", "--", "true"]);
    assert_eq!(code, 125);
}

#[test]
fn exec_argv_runs_word_for_word() {
    let app = sidecar(json!({"X": "cli-x-value-42"}));
    // The argv is `sh`, `-c`, one script: the script sees X, and its exit code comes back.
    let (code, out, err) = exec(&app, KEY, &["--", "sh", "-c", "echo \"$X\"; exit 7"]);
    assert_eq!((code, out.as_str()), (7, "<secret-hidden>\n"), "{err}");
    let (code, out, _) = exec(&app, KEY, &["--", "printf", "%s|", "a b", "", "it's", "*", "time"]);
    assert_eq!((code, out.as_str()), (0, "a b||it's|*|time|"));

    // Words that would be shell code stay words, alone or among others.
    let marker = std::env::temp_dir().join(format!("pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let word = format!("$(touch {})", marker.display());
    let (code, out, _) = exec(&app, KEY, &["--", "echo", &word]);
    assert_eq!((code, out.as_str()), (0, format!("{word}\n").as_str()));
    let (code, _, _) = exec(&app, KEY, &["--", &word]);
    assert_eq!(code, 127, "a single word is a command name, not shell text");
    let (code, _, _) = exec(&app, KEY, &["--", &format!("true; touch {}", marker.display())]);
    assert_eq!(code, 127);
    assert!(!marker.exists(), "a word of the argv was run as shell code");
}

#[test]
fn exec_needs_exactly_one_of_argv_and_shell_text() {
    let app = sidecar(json!({}));
    for args in [&["-c", "true", "--", "true"][..], &[]] {
        let (code, _, err) = exec(&app, KEY, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("ARGV") || err.contains("-c"), "{err}");
    }
}
