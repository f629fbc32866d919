//! The global mask set as the routes feed it: every value the service holds is masked,
//! however it came to hold it; large updates are compiled once and off the async workers;
//! the derived patterns hide what the usual encoders print and nothing that is not secret.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::common::fake_settings::FakeSettings;
use crate::common::{CONV, KEY, TestApp};

const HIDDEN: &str = "<secret-hidden>";

async fn mask(app: &TestApp, text: &str) -> String {
    let (status, body) = app.post("/api/mask", &json!({"text": text})).await;
    assert_eq!(status, 200, "{body}");
    body["text"].as_str().expect("text").to_owned()
}

/// Polls `cond` (no fixed sleeps): true within `timeout` or the test fails.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn resolved_and_refreshed_values_are_masked() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("TOK", b"looked-up-value-one", None);
    fake.set("CTOK", b"conversation-lookup-value", None);
    let app = TestApp::spawn_with(&["--settings-url", fake.base.as_str()], &[]).await;
    let register = json!({"secrets": {"TOK": {"kind": "LookupSecret", "url": fake.url("TOK")}}});
    assert_eq!(app.post("/api/secrets", &register).await.0, 200);
    let (status, body) = app.post("/api/secrets/resolve", &json!({"names": ["TOK"]})).await;
    assert_eq!((status, &body["resolved"]), (200, &json!(["TOK"])), "{body}");
    assert_eq!(mask(&app, "v=looked-up-value-one;").await, format!("v={HIDDEN};"));

    // A rotated value fetched by a refresh joins the set; the previous one stays.
    fake.set("TOK", b"looked-up-value-two", None);
    eventually("the refreshed value to be masked", Duration::from_secs(20), || async {
        let (status, _) = app.post("/api/secrets/refresh", &json!({})).await;
        assert_eq!(status, 200);
        mask(&app, "looked-up-value-two").await == HIDDEN
    })
    .await;
    assert_eq!(mask(&app, "looked-up-value-one").await, HIDDEN);

    // A conversation's own lookup, resolved through its route.
    let path = format!("/api/conversations/{CONV}/secrets");
    let register = json!({"secrets": {"CTOK": {"kind": "LookupSecret", "url": fake.url("CTOK")}}});
    assert_eq!(app.post(&path, &register).await.0, 200);
    let (status, body) = app.post(&format!("{path}/resolve"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["resolved"].as_array().unwrap().contains(&json!("CTOK")), "{body}");
    assert_eq!(mask(&app, "conversation-lookup-value").await, HIDDEN);
}

fn many_secrets(n: usize) -> (Map<String, Value>, Vec<String>) {
    let values: Vec<String> = (0..n).map(|i| format!("bulk-secret-{i:05}-{}", "q".repeat(i % 20))).collect();
    let map = values.iter().enumerate().map(|(i, v)| (format!("BULK_{i}"), json!(v))).collect();
    (map, values)
}

#[tokio::test]
async fn an_update_is_compiled_once_whatever_its_size() {
    let app = TestApp::spawn().await;
    let (map, values) = many_secrets(300);
    let before = app.state.masks().stats().builds;
    let (status, body) = app.post("/api/secrets", &json!({"secrets": map})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.state.masks().stats().builds - before, 1, "one compilation for the whole update");
    for v in [&values[0], &values[150], &values[299]] {
        assert_eq!(mask(&app, v).await, HIDDEN);
    }
}

/// The in-process app shares this test's single-threaded runtime: an update compiled on
/// the runtime's thread would hold up every other request until it is done.
#[tokio::test(flavor = "current_thread")]
async fn requests_are_served_while_an_update_compiles() {
    let app = TestApp::spawn_with(&["--max-secrets-per-scope", "4096"], &[]).await;
    let (map, values) = many_secrets(3000);
    let last = values.last().expect("values").clone();
    let (client, url) = (app.client.clone(), format!("{}/api/secrets", app.base));
    let update = tokio::spawn(async move {
        let r = client.post(url).header("X-Session-API-Key", KEY).json(&json!({"secrets": map})).send().await;
        r.expect("update").status().as_u16()
    });
    let hidden =
        |app: &TestApp| app.state.masks().masker().mask(last.as_bytes()).expect("mask") == HIDDEN.as_bytes();
    let mut served_while_compiling = 0;
    while !update.is_finished() {
        if app.state.masks().value_count() > 0 && !hidden(&app) {
            let r = app.client.get(format!("{}/alive", app.base)).send().await.expect("alive");
            assert_eq!(r.status(), 200);
            if !hidden(&app) {
                served_while_compiling += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(update.await.expect("update task"), 200);
    assert!(hidden(&app), "masked once the update is answered");
    assert!(served_while_compiling > 0, "no request was served while the update compiled");
}

#[tokio::test]
async fn blank_lines_of_a_multi_line_secret_are_not_patterns() {
    let app = TestApp::spawn().await;
    let secret = "first-line-of-secret\n    \nlast-line-of-secret";
    assert_eq!(app.post("/api/secrets", &json!({"secrets": {"ML": secret}})).await.0, 200);
    assert_eq!(mask(&app, "a    b\tc        d").await, "a    b\tc        d");
    assert_eq!(mask(&app, "x last-line-of-secret").await, format!("x {HIDDEN}"));
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
    assert_eq!(app.post("/api/secrets", &json!({"secrets": {"PEM": pem}})).await.0, 200);
    assert_eq!(mask(&app, "-----END PRIVATE KEY-----").await, "-----END PRIVATE KEY-----");
    assert_eq!(mask(&app, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC").await, HIDDEN);
}

#[tokio::test]
async fn url_encoded_forms_are_masked() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post("/api/secrets", &json!({"secrets": {"PW": "p@ss word!2024"}})).await.0, 200);
    for printed in ["p%40ss%20word!2024", "p%40ss%20word%212024", "p%40ss+word%212024", "p@ss%20word%212024"]
    {
        assert_eq!(mask(&app, &format!("q={printed}&x=1")).await, format!("q={HIDDEN}&x=1"), "{printed}");
    }
}
