//! The no-leak canary: unique marker values through every route, good and bad, with all log
//! output captured at trace level; no marker may appear in a log line or a response body.

use reqwest::Method;
use serde_json::json;

use crate::common::bin::BinApp;

const KEY: &str = "canary-key-31b7";
const KEY2: &str = "canary-key2-8e0a";
const VALUE: &str = "canary-value-d41c";
const HEADER: &str = "canary-header-77aa";
const URLPART: &str = "canary-urlpart-5b5e";
const MARKERS: &[&str] = &[KEY, KEY2, VALUE, HEADER, URLPART];

#[tokio::test]
async fn no_value_header_or_key_reaches_logs_or_bodies() {
    let mut app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--allow-lookup-origin", "https://app.example.dev"],
        &[("SESSION_API_KEY", KEY), ("OH_SESSION_API_KEYS_0", KEY2)],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let conv = "0a1b2c3d4e5f6789abcdef0123456789";
    let good = json!({"secrets": {
        "PLAIN": VALUE,
        "STATIC": {"kind": "StaticSecret", "value": VALUE, "description": "d"},
        "LOOK": {"kind": "LookupSecret", "url": format!("https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/LOOK?token={URLPART}"),
                 "headers": {"X-Session-API-Key": HEADER, "Authorization": HEADER}},
    }});
    let bad_bodies = [
        json!({"secrets": {"X": {"kind": "LookupSecret", "value": VALUE}}}),
        json!({"secrets": {"X": {"kind": "StaticSecret", "value": [VALUE]}}}),
        json!({"secrets": {"X": {"kind": "LookupSecret", "url": format!("https://evil.example/{URLPART}"), "headers": {"A": HEADER}}}}),
        json!({"secrets": {"X": {"kind": "LookupSecret", "url": "https://app.example.dev/x", "headers": {"A": format!("{HEADER}\n")}}}}),
        json!({"secrets": {VALUE: VALUE}}),
        json!({"secrets": {"PATH": VALUE}}),
        json!({"secrets": VALUE}),
    ];
    let mut bodies = Vec::new();
    let send = |r: reqwest::RequestBuilder| {
        let fut = r.send();
        async move {
            let r = fut.await.unwrap();
            r.text().await.unwrap()
        }
    };
    for path in ["/api/secrets".to_owned(), format!("/api/conversations/{conv}/secrets")] {
        bodies.push(
            send(client.post(format!("{}{path}", app.base)).header("X-Session-API-Key", KEY).json(&good))
                .await,
        );
        for bad in &bad_bodies {
            bodies.push(
                send(client.post(format!("{}{path}", app.base)).header("X-Session-API-Key", KEY2).json(bad))
                    .await,
            );
        }
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .header("content-type", "application/json")
                    .body(format!("{{\"secrets\": {{\"A\": \"{VALUE}")),
            )
            .await,
        );
        bodies.push(send(client.get(format!("{}{path}", app.base)).header("X-Session-API-Key", KEY)).await);
        bodies.push(send(client.get(format!("{}{path}", app.base)).header("X-Session-API-Key", VALUE)).await);
        bodies.push(
            send(client.request(Method::PUT, format!("{}{path}", app.base)).header("X-Session-API-Key", KEY))
                .await,
        );
    }
    for path in [
        "/api/secrets/PLAIN".to_owned(),
        format!("/api/conversations/{conv}/secrets/LOOK"),
        format!("/api/conversations/{conv}"),
        format!("/api/conversations/{VALUE}"),
        format!("/api/{VALUE}"),
    ] {
        bodies
            .push(send(client.delete(format!("{}{path}", app.base)).header("X-Session-API-Key", KEY)).await);
    }
    for path in ["/alive", "/health", "/ready", "/server_info", "/nope"] {
        bodies.push(send(client.get(format!("{}{path}", app.base))).await);
    }
    // Commands, streams, masks and bash routes, with the value printed in many ways.
    let reg = json!({"secrets": {"RUNVAL": VALUE}});
    bodies.push(
        send(client.post(format!("{}/api/secrets", app.base)).header("X-Session-API-Key", KEY).json(&reg))
            .await,
    );
    let printing =
        "echo $RUNVAL; echo $RUNVAL >&2; printf %s \"$RUNVAL\" | base64; env | grep -i key; exit 3";
    for path in ["/api/commands", "/api/commands/stream", &format!("/api/conversations/{conv}/commands")] {
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .json(&json!({"command": printing})),
            )
            .await,
        );
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .json(&json!({"command": printing, "env": {"E": VALUE}, "timeout": 0})),
            )
            .await,
        );
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .json(&json!({"command": format!("echo {VALUE}"), "cwd": format!("/{VALUE}")})),
            )
            .await,
        );
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .json(&json!({"command": "echo $NOPE_MISSING", "secrets": ["NOPE_MISSING"]})),
            )
            .await,
        );
    }
    bodies.push(
        send(
            client
                .post(format!("{}/api/mask", app.base))
                .header("X-Session-API-Key", KEY)
                .json(&json!({"text": format!("a {VALUE} b")})),
        )
        .await,
    );
    for path in ["/api/bash/execute_bash_command", "/api/bash/start_bash_command"] {
        bodies.push(
            send(
                client
                    .post(format!("{}{path}", app.base))
                    .header("X-Session-API-Key", KEY)
                    .json(&json!({"command": format!("echo {VALUE}; {printing}")})),
            )
            .await,
        );
    }
    bodies.push(
        send(
            client.get(format!("{}/api/bash/bash_events/search", app.base)).header("X-Session-API-Key", KEY),
        )
        .await,
    );
    bodies.push(
        send(
            client
                .get(format!("{}/api/bash/bash_events/search?limit={VALUE}", app.base))
                .header("X-Session-API-Key", KEY),
        )
        .await,
    );
    bodies.push(send(client.get(format!("{}/api/secrets", app.base)).header("X-Forwarded-For", VALUE)).await);
    bodies.push(send(client.get(format!("{}/api/secrets", app.base)).header("Host", VALUE)).await);
    assert!(app.terminate().success());

    let logs = app.logs();
    assert!(logs.lines().count() > 20, "trace logging is on: {logs}");
    assert!(logs.contains("secrets updated"), "the driven routes were logged");
    assert!(bodies.iter().any(|b| b.contains("<secret-hidden>")), "commands printed the value, masked");
    for m in MARKERS {
        assert!(!logs.contains(m), "{m} leaked into the logs:\n{logs}");
        for b in &bodies {
            assert!(!b.contains(m), "{m} leaked into a response body: {b}");
        }
    }
}

#[tokio::test]
async fn one_json_log_line_per_request_with_the_route_template_and_id() {
    let app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", KEY)]).unwrap();
    let conv = "0a1b2c3d4e5f6789abcdef0123456789";
    let r = reqwest::Client::new()
        .get(format!("{}/api/conversations/{conv}/secrets?q={VALUE}", app.base))
        .header("X-Session-API-Key", KEY)
        .header("X-Request-Id", "req-canary-77")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-canary-77");
    let line = app
        .wait_for_log(|l| l.contains("req-canary-77"), std::time::Duration::from_secs(10))
        .expect("a request log line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    let fields = &v;
    assert_eq!(fields["route"], "/api/conversations/{id}/secrets", "{line}");
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert!(fields["ms"].as_f64().is_some(), "{line}");
    assert!(!line.contains(conv) && !line.contains(VALUE), "raw path or query logged: {line}");
}
