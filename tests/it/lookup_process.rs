//! Lookups through the real binary: environment proxies are ignored, discovery runs at start
//! without blocking readiness.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::bin::BinApp;
use crate::common::fake_settings::FakeSettings;

const KEY: &str = "bin-session-key";

async fn call(app: &BinApp, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("X-Session-API-Key", KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn proxy_variables_in_the_environment_are_not_used() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("P", b"v", None);
    let proxy = FakeSettings::start(KEY).await;
    proxy.set("P", b"from-proxy", None);
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--settings-url", &fake.base],
        &[
            ("SESSION_API_KEY", KEY),
            ("HTTP_PROXY", &proxy.base),
            ("http_proxy", &proxy.base),
            ("HTTPS_PROXY", &proxy.base),
            ("ALL_PROXY", &proxy.base),
            ("all_proxy", &proxy.base),
        ],
    )
    .unwrap();
    call(
        &app,
        reqwest::Method::POST,
        "/api/secrets",
        Some(json!({"secrets": {"P": {"kind": "LookupSecret", "url": fake.url("P")}}})),
    )
    .await;
    let r = call(&app, reqwest::Method::POST, "/api/secrets/resolve", Some(json!({}))).await;
    assert_eq!(r["resolved"], json!(["P"]), "{r}");
    assert_eq!(fake.hits("P"), 1);
    assert_eq!(proxy.hits("P"), 0, "the environment proxy was not used");
}

#[tokio::test]
async fn discovery_runs_at_start() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("GITHUB_TOKEN", b"gh", Some("GitHub token"));
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--settings-url", &fake.base, "--sandbox-id", "sb-1"],
        &[("OH_SESSION_API_KEYS_0", KEY)],
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = call(&app, reqwest::Method::GET, "/api/secrets", None).await;
        if let Some(e) = list["secrets"].as_array().and_then(|a| a.first()) {
            assert_eq!(e["name"], "GITHUB_TOKEN");
            assert_eq!(e["source"], "discovery");
            assert_eq!(e["description"], "GitHub token");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "discovery never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r =
        call(&app, reqwest::Method::POST, "/api/secrets/resolve", Some(json!({"names": ["GITHUB_TOKEN"]})))
            .await;
    assert_eq!(r["resolved"], json!(["GITHUB_TOKEN"]));
    assert_eq!(fake.seen_keys().last().unwrap().as_deref(), Some(KEY));
}

#[test]
fn a_failing_discovery_does_not_block_readiness() {
    // Nothing listens on port 9 of 127.0.0.1: discovery fails, the service is ready anyway.
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--settings-url", "http://127.0.0.1:9", "--sandbox-id", "sb-1"],
        &[("SESSION_API_KEY", KEY)],
    )
    .unwrap();
    let ready = std::process::Command::new("curl").args(["-sf", &format!("{}/ready", app.base)]).output();
    if let Ok(out) = ready {
        assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ready"}"#);
    }
    assert!(
        app.wait_for_log(|l| l.contains("secret discovery failed"), Duration::from_secs(15)).is_some(),
        "{}",
        app.logs()
    );
}
