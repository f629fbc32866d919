//! The binary as its own shell-less image runs it: it serves without a shell (command routes
//! answer 503 saying what to do), `install DIR` copies it out for a sandbox container, and
//! `health` is the probe.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::bin::BinApp;

const KEY: &str = "standalone-key-31";
const NO_SHELL: &str = "no shell: copy the binary into the sandbox image";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sidecar-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary with `args` and only `env`; returns exit code and stderr.
fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_secret-sidecar"))
}

#[tokio::test]
async fn without_a_shell_it_serves_and_command_routes_answer_503() {
    let empty = temp_dir("no-shell-path");
    let path = empty.to_str().unwrap();
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("PATH", path), ("SESSION_API_KEY", KEY)])
        .expect("starts without a shell");
    let client = reqwest::Client::new();
    let ready = client.get(format!("{}/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let post = |route: &str, body: Value| {
        let req = client.post(format!("{}{route}", app.base)).header("X-Session-API-Key", KEY).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = post("/api/secrets", json!({"secrets": {"TOK": "standalone-value-1"}})).await;
    assert_eq!(status, 200);
    let conv = "/api/conversations/0a1b2c3d4e5f6789abcdef0123456789";
    for route in [
        "/api/commands".to_owned(),
        "/api/commands/stream".to_owned(),
        format!("{conv}/commands"),
        format!("{conv}/commands/stream"),
        "/api/bash/start_bash_command".to_owned(),
        "/api/bash/execute_bash_command".to_owned(),
    ] {
        let (status, body) = post(&route, json!({"command": "echo $TOK"})).await;
        assert_eq!((status, body), (503, json!({"detail": NO_SHELL})), "{route}");
    }
    // Everything else still works.
    let (status, body) = post("/api/mask", json!({"text": "x standalone-value-1 y"})).await;
    assert_eq!((status, body), (200, json!({"text": "x <secret-hidden> y"})));
    let warnings = app.logs().lines().filter(|l| l.contains("\"WARN\"") && l.contains("no shell")).count();
    assert_eq!(warnings, 1, "{}", app.logs());
    drop(app);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn an_explicit_shell_that_is_missing_stays_a_start_up_error() {
    let empty = temp_dir("no-shell-explicit");
    let path = empty.to_str().unwrap();
    let logs = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--shell", "sh"],
        &[("PATH", path), ("SESSION_API_KEY", KEY)],
    )
    .err()
    .expect("refuses to start");
    assert!(logs.contains("--shell: shell sh not found"), "{logs}");
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn install_copies_the_running_binary() {
    let dir = temp_dir("install");
    let (code, err) = run(bin(), &["install", dir.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let installed = dir.join("secret-sidecar");
    assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(bin()).unwrap());
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777, 0o755);
    // The copy runs, and installs itself in turn (as a sandbox's init container would).
    let again = dir.join("again");
    std::fs::create_dir(&again).unwrap();
    let (code, err) = run(&installed, &["install", again.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(again.join("secret-sidecar")).unwrap(), std::fs::read(bin()).unwrap());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");

    let (code, err) = run(bin(), &["install", dir.join("missing").to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("not a directory"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_exits_zero_only_when_ready() {
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", KEY)]).unwrap();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let (code, err) = run(bin(), &["health", "--url", &app.base], &[]);
    assert_eq!(code, 0, "{err}");
    // The default comes from the listen address, a wildcard one probed on loopback.
    let (code, err) = run(bin(), &["health"], &[("SECRET_SIDECAR_LISTEN", &addr)]);
    assert_eq!(code, 0, "{err}");
    let port = addr.rsplit(':').next().unwrap();
    let (code, err) = run(bin(), &["health"], &[("SECRET_SIDECAR_LISTEN", &format!("0.0.0.0:{port}"))]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(bin(), &["health", "--url", &format!("http://localhost:{port}")], &[]);
    assert_eq!(code, 0, "{err}");

    drop(app);
    // Nothing listens there any more.
    let (code, err) = run(bin(), &["health", "--url", &format!("http://{addr}")], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _) = run(bin(), &["health", "--url", "ftp://x"], &[]);
    assert_eq!(code, 2);
}
