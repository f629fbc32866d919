//! The leak hunt: the real binary at trace level, egress proxy and state file included, driven
//! through every route with a distinct marker for each kind of secret it holds (static values
//! in both scopes, a looked-up value, a lookup header, the session key, the API key, a value
//! bound to a host and spent through the proxy, the state key). Afterwards no marker, in any
//! encoding the masker knows (plus hex), appears in the captured logs, any response body,
//! `/metrics`, `/openapi.json`, the state file's bytes, or the environment of a command that
//! asked for no secret. Masked output (`<secret-hidden>`) and egress placeholders are the only
//! forms in which a value may show itself.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::bin::BinApp;
use crate::common::fake_settings::FakeSettings;
use crate::egress_proxy::upstream::FakeUpstream;

const API_KEY: &str = "lh-apikey-9f3e2a7c51d0";
const SESSION: &str = "lh-session-4b8d1e6f02a7";
const STATIC: &str = "lh-static-7a1c9e3b44f1";
const CONV_STATIC: &str = "lh-conv-6f1b3d9e28a4c5";
const LOOKED: &str = "lh-looked-2e5f8a0d93b6";
const HEADER: &str = "lh-header-c3d7b1f065e9";
const BOUND: &str = "lh-bound-5d2e9c7a1f08b3";
const STATE_KEY: &str = "lh-statekey-8c4a2f1e7d55";
const MARKERS: [&str; 8] = [API_KEY, SESSION, STATIC, CONV_STATIC, LOOKED, HEADER, BOUND, STATE_KEY];

const CONV: &str = "0a1b2c3d4e5f6789abcdef0123456789";
const HOST: &str = "api.leak.example";

/// Every form of `marker` that must not appear: the encodings the masker derives (raw,
/// base64 at every alignment, percent, JSON escapes) and lower and upper hex.
fn forms(marker: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = secret_sidecar::mask::derive_patterns(marker.as_bytes(), 12)
        .into_iter()
        .map(|p| p.to_vec())
        .collect();
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(hex.clone().into_bytes());
    out.push(hex.to_uppercase().into_bytes());
    out
}

/// The first marker (in any form) found in `bytes`.
fn leaked(bytes: &[u8]) -> Option<&'static str> {
    MARKERS.into_iter().find(|m| forms(m).iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice())))
}

struct Hunt {
    app: BinApp,
    client: reqwest::Client,
    /// (what, body) of every answer.
    bodies: Vec<(String, String)>,
}

impl Hunt {
    async fn call(&mut self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> String {
        let mut r = self.client.request(method.clone(), format!("{}{path}", self.app.base));
        if let Some(k) = key {
            r = r.header("X-Session-API-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(status < 500, "{method} {path}: {status} {text}");
        self.bodies.push((format!("{method} {path} ({status})"), text.clone()));
        text
    }

    async fn ok(&mut self, method: Method, path: &str, body: Value) -> Value {
        let text = self.call(method.clone(), path, Some(API_KEY), Some(body)).await;
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"))
    }

    async fn raw(&mut self, path: &str, body: &str) {
        let r = self
            .client
            .post(format!("{}{path}", self.app.base))
            .header("X-Session-API-Key", API_KEY)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let what = format!("POST {path} ({}, raw)", r.status());
        self.bodies.push((what, r.text().await.unwrap()));
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn no_marker_in_logs_bodies_metrics_openapi_state_file_or_foreign_env() {
    let dir = Dir(std::env::temp_dir().join(format!("leak-hunt-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let settings = FakeSettings::start(SESSION).await;
    settings.set("LOOKED", LOOKED.as_bytes(), Some("looked up"));
    let upstream = FakeUpstream::https(&[HOST]).await;
    let ca = dir.0.join("upstream-ca.pem");
    std::fs::write(&ca, &upstream.ca_pem).unwrap();
    let session_file = dir.0.join("session-key");
    std::fs::write(&session_file, SESSION).unwrap();
    let state = dir.0.join("state");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--settings-url",
        &settings.base,
        "--session-key-file",
        session_file.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--egress-bind",
        &format!("BOUND={HOST}"),
        "--egress-resolve",
        &format!("{HOST}=127.0.0.1"),
        "--egress-extra-ca-file",
        ca.to_str().unwrap(),
        "--egress-ca-bundle",
        dir.0.join("bundle.pem").to_str().unwrap(),
        "--mask-rate",
        "1000000",
    ]
    .map(str::to_owned)
    .to_vec();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let home = dir.0.display().to_string();
    let app =
        BinApp::spawn(&argv, &[("SESSION_API_KEY", API_KEY), ("OH_SECRET_KEY", STATE_KEY), ("HOME", &home)])
            .unwrap_or_else(|logs| panic!("does not start: {logs}"));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
    let mut h = Hunt { app, client, bodies: Vec::new() };
    let conv = format!("/api/conversations/{CONV}");

    // Secrets in both scopes: static, looked up with a header, bound to a host.
    let lookup = json!({"kind": "LookupSecret", "url": settings.url("LOOKED"), "headers": {"X-Extra": HEADER}, "description": "d"});
    let body = json!({"secrets": {"STATIC": STATIC, "LOOKED": lookup, "BOUND": BOUND, "GONE": STATIC}});
    let r = h.ok(Method::POST, "/api/secrets", body).await;
    assert_eq!(r["success"], true, "{r}");
    let body = json!({"secrets": {"CONV_STATIC": {"kind": "StaticSecret", "value": CONV_STATIC}, "GONE": CONV_STATIC}});
    h.ok(Method::POST, &format!("{conv}/secrets"), body).await;
    for path in ["/api/secrets".to_owned(), format!("{conv}/secrets")] {
        h.call(Method::GET, &path, Some(API_KEY), None).await;
        h.ok(Method::POST, &format!("{path}/resolve"), json!({})).await;
        h.ok(Method::POST, &format!("{path}/refresh"), json!({})).await;
        h.call(Method::DELETE, &format!("{path}/GONE"), Some(API_KEY), None).await;
    }
    assert_eq!(settings.hits("LOOKED"), 1, "the lookup happened once");

    // Commands that print every value in many ways; masked output only.
    // Hex is not among the encodings the masker derives (contract §6), so commands print only
    // those; hex is still checked everywhere else.
    let printing = r#"for v in "$STATIC" "$LOOKED" "$CONV_STATIC"; do echo "$v"; echo "$v" >&2; printf %s "$v" | base64; printf %s "$v" | base64 -w0 | tr '+/' '-_'; echo; printf %s "$v" | jq -sRr @uri 2>/dev/null || true; done"#;
    let secrets = json!(["STATIC", "LOOKED"]);
    for path in ["/api/commands".to_owned(), "/api/commands/stream".to_owned(), format!("{conv}/commands")] {
        let text = h
            .call(
                Method::POST,
                &path,
                Some(API_KEY),
                Some(json!({"command": printing, "secrets": secrets, "timeout": 30})),
            )
            .await;
        assert!(text.contains("<secret-hidden>"), "{path}: the values were printed, masked: {text}");
    }
    let text = h
        .call(
            Method::POST,
            &format!("{conv}/commands"),
            Some(API_KEY),
            Some(json!({"command": "printf '%s\\n' \"$CONV_STATIC\"", "secrets": ["CONV_STATIC"]})),
        )
        .await;
    assert!(text.contains("<secret-hidden>"), "{text}");

    // A command that asked for nothing: its environment holds no value, masked or not.
    let environ = h
        .ok(
            Method::POST,
            "/api/commands",
            json!({"command": "cat /proc/self/environ | tr '\\0' '\\n'; env | grep -ci -e proxy -e _CA_ || true"}),
        )
        .await;
    let env = environ["stdout"].as_str().unwrap();
    assert!(env.contains("PATH="), "{environ}");
    assert!(!env.contains("<secret-hidden>"), "a value reached a command that asked for none: {env}");
    assert!(!env.contains("SESSION_API_KEY") && !env.contains("OH_SECRET_KEY"), "{env}");
    assert!(env.trim_end().ends_with('0'), "no proxy settings without a placeholder: {env}");

    // The bound value through the egress proxy: sent upstream, reflected back as the
    // placeholder, never seen by the command.
    let url = format!("https://{HOST}:{}/echo?key=$BOUND", upstream.port);
    let cmd =
        format!(r#"curl -sS --fail "{url}" -H "Authorization: Bearer $BOUND"; printf 'env:%s\n' "$BOUND""#);
    let out = h
        .ok(Method::POST, "/api/commands", json!({"command": cmd, "secrets": ["BOUND"], "timeout": 60}))
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let printed = out["stdout"].as_str().unwrap();
    let placeholder = printed.lines().find_map(|l| l.strip_prefix("env:")).unwrap().to_owned();
    assert_eq!(placeholder.len(), BOUND.len(), "{printed}");
    assert!(
        printed.contains(&format!("authorization: Bearer {placeholder}")),
        "the echo reflected: {printed}"
    );
    let seen = upstream.seen();
    assert!(
        seen.iter()
            .any(|s| s.headers.get("authorization").is_some_and(|v| v == format!("Bearer {BOUND}").as_str())),
        "the value reached the bound host"
    );

    // Mask and the bash routes.
    let masked = h.ok(Method::POST, "/api/mask", json!({"text": format!("a {STATIC} b {LOOKED} c")})).await;
    assert!(masked.to_string().contains("<secret-hidden>"), "{masked}");
    h.ok(Method::POST, &format!("{conv}/mask"), json!({"text": CONV_STATIC})).await;
    let bash = format!("echo {STATIC}; {printing}");
    h.ok(Method::POST, "/api/bash/execute_bash_command", json!({"command": bash, "timeout": 30})).await;
    let started =
        h.ok(Method::POST, "/api/bash/start_bash_command", json!({"command": bash, "timeout": 30})).await;
    h.call(Method::GET, "/api/bash/bash_events/search", Some(API_KEY), None).await;
    if let Some(id) = started["id"].as_str() {
        h.call(Method::GET, &format!("/api/bash/bash_events/{id}"), Some(API_KEY), None).await;
    }

    // Errors, each carrying markers in the request.
    let bad = [
        json!({"secrets": {"X": {"kind": "LookupSecret", "value": STATIC, "headers": {"A": HEADER}}}}),
        json!({"secrets": {"X": {"kind": "StaticSecret", "value": [STATIC]}}}),
        json!({"secrets": {"X": {"kind": "LookupSecret", "url": format!("https://evil.example/{SESSION}"), "headers": {"A": HEADER}}}}),
        json!({"secrets": {"X": {"kind": "LookupSecret", "url": settings.url("X"), "headers": {"A": format!("{HEADER}\n")}}}}),
        json!({"secrets": {STATIC: STATIC}}),
        json!({"secrets": {"PATH": STATIC}}),
        json!({"secrets": {"X": {"value": "lh-short-val", "egress_hosts": [HOST]}}}),
        json!({"secrets": {"X": {"value": BOUND, "egress_hosts": [format!("{BOUND}.com:1")]}}}),
        json!({"secrets": STATIC}),
    ];
    for b in bad {
        for path in ["/api/secrets".to_owned(), format!("{conv}/secrets")] {
            h.call(Method::POST, &path, Some(API_KEY), Some(b.clone())).await;
        }
    }
    h.raw("/api/secrets", &format!(r#"{{"secrets": {{"A": "{STATIC}"#)).await;
    h.raw("/api/mask", &format!(r#"{{"text": 1, "x": "{STATIC}"}}"#)).await;
    h.raw("/api/commands", &format!(r#"{{"command": "true", "timeout": "{STATIC}"}}"#)).await;
    h.call(
        Method::POST,
        "/api/commands",
        Some(API_KEY),
        Some(json!({"command": "true", "secrets": ["MISSING"]})),
    )
    .await;
    h.call(
        Method::POST,
        "/api/commands",
        Some(API_KEY),
        Some(json!({"command": "true", "cwd": format!("/{STATIC}")})),
    )
    .await;
    for key in [None, Some(STATIC), Some(SESSION), Some(STATE_KEY)] {
        h.call(Method::GET, "/api/secrets", key, None).await;
    }
    h.call(Method::DELETE, &format!("/api/secrets/{STATIC}"), Some(API_KEY), None).await;
    h.call(Method::GET, &format!("/api/{STATIC}"), Some(API_KEY), None).await;
    h.call(Method::PUT, "/api/secrets", Some(API_KEY), None).await;
    h.call(Method::GET, &format!("/api/bash/bash_events/search?limit={STATIC}"), Some(API_KEY), None).await;

    // Health, metrics, the OpenAPI document.
    for path in ["/alive", "/health", "/ready", "/server_info"] {
        h.call(Method::GET, path, None, None).await;
    }
    let metrics = h.call(Method::GET, "/metrics", Some(API_KEY), None).await;
    assert!(metrics.contains("egress"), "{metrics}");
    assert!(!metrics.contains(&placeholder), "a placeholder in /metrics");
    let openapi = h.call(Method::GET, "/openapi.json", None, None).await;
    assert!(openapi.contains("\"paths\""), "{openapi}");
    h.call(Method::DELETE, &conv, Some(API_KEY), None).await;
    let listed = h.call(Method::GET, "/api/secrets", Some(API_KEY), None).await;
    assert!(listed.contains(HOST) && !listed.contains(&placeholder), "{listed}");

    assert!(h.app.terminate().success());
    let logs = h.app.logs();
    assert!(logs.lines().count() > 50, "trace logging is on");
    assert!(logs.contains("secrets updated"), "the routes were logged");
    let state_bytes = std::fs::read(&state).expect("the state file was written");
    assert!(!state_bytes.is_empty());

    let mut failures = Vec::new();
    if let Some(m) = leaked(logs.as_bytes()) {
        failures.push(format!("{m} in the logs"));
    }
    if logs.contains(&placeholder) {
        failures.push("a placeholder in the logs".into());
    }
    if let Some(m) = leaked(&state_bytes) {
        failures.push(format!("{m} in the state file"));
    }
    for (what, body) in &h.bodies {
        if let Some(m) = leaked(body.as_bytes()) {
            failures.push(format!("{m} in the answer to {what}: {body}"));
        }
    }
    if let Some(m) = leaked(printed.as_bytes()) {
        failures.push(format!("{m} in the egress command's output"));
    }
    assert!(h.bodies.len() > 60, "every route was driven: {}", h.bodies.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
