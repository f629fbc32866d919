//! The secrets routes: register, list, delete, per conversation and sandbox-wide.

use serde_json::{Value, json};

use crate::common::{CONV, CONV_HEX, TestApp};

/// The exact body the reference Python SDK sends (`RemoteConversation.update_secrets`).
fn sdk_body() -> Value {
    serde_json::from_str(r#"{"secrets":{"PLAIN":"plain-value","STATIC":{"description":"d","value":"static-value","kind":"StaticSecret"},"GITHUB_TOKEN":{"description":"GitHub token","url":"https://app.example.dev/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN","headers":{"X-Session-API-Key":"sess-key"},"kind":"LookupSecret"}}}"#).unwrap()
}

fn names(list: &Value) -> Vec<(String, String)> {
    list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["scope"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn reference_sdk_body_is_accepted_and_listed_without_values() {
    let app = TestApp::spawn().await;
    let (status, body) = app.post(&format!("/api/conversations/{CONV}/secrets"), &sdk_body()).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    // Dashed and hex ids address the same scope.
    let (status, list) = app.get(&format!("/api/conversations/{CONV_HEX}/secrets")).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"secrets": [
            {"name": "GITHUB_TOKEN", "kind": "LookupSecret", "description": "GitHub token", "scope": "conversation",
             "shadowed": false, "source": "api", "origin": "https://app.example.dev",
             "state": {"status": "unresolved", "stale": false, "age_seconds": null, "last_error": null, "masked": true}},
            {"name": "PLAIN", "kind": "StaticSecret", "description": null, "scope": "conversation",
             "shadowed": false, "source": "api", "origin": null,
             "state": {"status": "resolved", "stale": false, "age_seconds": null, "last_error": null, "masked": true}},
            {"name": "STATIC", "kind": "StaticSecret", "description": "d", "scope": "conversation",
             "shadowed": false, "source": "api", "origin": null,
             "state": {"status": "resolved", "stale": false, "age_seconds": null, "last_error": null, "masked": true}},
        ]})
    );
    let text = list.to_string();
    for leaked in ["plain-value", "static-value", "sess-key", "/api/v1/sandboxes", "sb-1"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}

#[tokio::test]
async fn updates_merge_and_replace() {
    let app = TestApp::spawn().await;
    let path = format!("/api/conversations/{CONV_HEX}/secrets");
    assert_eq!(app.post(&path, &json!({"secrets": {"A": "1", "B": "2"}})).await.0, 200);
    assert_eq!(
        app.post(&path, &json!({"secrets": {"B": {"value": "3", "description": "new"}, "C": "4"}})).await.0,
        200
    );
    let list = app.get(&path).await.1;
    assert_eq!(names(&list).len(), 3);
    assert_eq!(list["secrets"][1]["description"], "new");
    assert_eq!(app.post(&path, &json!({"secrets": {}})).await.0, 200);
    assert_eq!(names(&app.get(&path).await.1).len(), 3);
}

#[tokio::test]
async fn conversations_inherit_the_sandbox_scope() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/api/secrets", &json!({"secrets": {"SHARED": "s", "OVERRIDDEN": "o"}})).await.0,
        200
    );
    let path = format!("/api/conversations/{CONV_HEX}/secrets");
    // An unknown conversation shows the inherited entries.
    assert_eq!(
        names(&app.get(&path).await.1),
        [("OVERRIDDEN".into(), "sandbox".into()), ("SHARED".into(), "sandbox".into())]
    );
    // An own entry with no value shadows the inherited one (an explicit unset).
    assert_eq!(app.post(&path, &json!({"secrets": {"OVERRIDDEN": ""}})).await.0, 200);
    let list = app.get(&path).await.1;
    let entries = list["secrets"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        (&entries[0]["scope"], &entries[0]["shadowed"], &entries[0]["state"]["status"]),
        (&json!("conversation"), &json!(false), &json!("no_value"))
    );
    assert_eq!((&entries[1]["scope"], &entries[1]["shadowed"]), (&json!("sandbox"), &json!(true)));
    // The sandbox list is unaffected.
    assert_eq!(names(&app.get("/api/secrets").await.1).len(), 2);
}

#[tokio::test]
async fn delete_secret_and_conversation() {
    let app = TestApp::spawn().await;
    let path = format!("/api/conversations/{CONV_HEX}/secrets");
    app.post(&path, &json!({"secrets": {"A": "1", "B": "2"}})).await;
    app.post("/api/secrets", &json!({"secrets": {"S": "s"}})).await;
    assert_eq!(app.delete(&format!("{path}/A")).await, (200, json!({"deleted": true})));
    assert_eq!(app.delete(&format!("{path}/A")).await.0, 404);
    // An inherited entry cannot be deleted through the conversation.
    assert_eq!(app.delete(&format!("{path}/S")).await.0, 404);
    assert_eq!(app.delete(&format!("/api/conversations/{CONV}")).await, (200, json!({"deleted": true})));
    assert_eq!(app.delete(&format!("/api/conversations/{CONV}")).await.0, 404);
    assert_eq!(names(&app.get(&path).await.1), [("S".into(), "sandbox".into())]);
    assert_eq!(app.delete("/api/secrets/S").await, (200, json!({"deleted": true})));
    assert_eq!(app.delete("/api/secrets/S").await.0, 404);
    assert_eq!(app.delete(&format!("/api/conversations/{}/secrets/X", "1".repeat(32))).await.0, 404);
}

#[tokio::test]
async fn scope_and_entry_bounds_answer_429_and_change_nothing() {
    let app = TestApp::spawn_with(&["--max-conversations", "1", "--max-secrets-per-scope", "2"], &[]).await;
    let first = format!("/api/conversations/{CONV_HEX}/secrets");
    assert_eq!(app.post(&first, &json!({"secrets": {"A": "1"}})).await.0, 200);
    let second = format!("/api/conversations/{}/secrets", "f".repeat(32));
    let r =
        app.req(reqwest::Method::POST, &second).json(&json!({"secrets": {"A": "1"}})).send().await.unwrap();
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    let (status, body) = crate::common::json_of(r).await;
    assert_eq!(status, 429);
    assert!(body["detail"].as_str().unwrap().contains("conversation"));
    let (status, _) = app.post(&first, &json!({"secrets": {"B": "2", "C": "3"}})).await;
    assert_eq!(status, 429);
    assert_eq!(names(&app.get(&first).await.1).len(), 1);
    // Reading an unknown conversation does not create a scope.
    assert_eq!(app.get(&second).await.0, 200);
    assert_eq!(app.state.registry().conversation_count(), 1);
    // Dropping frees the slot.
    assert_eq!(app.delete(&format!("/api/conversations/{CONV_HEX}")).await.0, 200);
    assert_eq!(app.post(&second, &json!({"secrets": {"A": "1"}})).await.0, 200);
}

#[tokio::test]
async fn relative_urls_join_the_internal_server_url() {
    let app = TestApp::spawn_with(&[], &[("OH_INTERNAL_SERVER_URL", "http://127.0.0.1:8000")]).await;
    let body = json!({"secrets": {"R": {"kind": "LookupSecret", "url": "/api/settings/secrets/R"}}});
    assert_eq!(app.post("/api/secrets", &body).await.0, 200);
    let list = app.get("/api/secrets").await.1;
    assert_eq!(list["secrets"][0]["origin"], "http://127.0.0.1:8000");
}

#[tokio::test]
async fn case_folding_and_default_ports_are_accepted() {
    let app = TestApp::spawn().await;
    let url = "HTTPS://App.Example.DEV:443/api/v1/sandboxes/sb-1/settings/secrets/T";
    let body = json!({"secrets": {"T": {"kind": "LookupSecret", "url": url}}});
    assert_eq!(app.post("/api/secrets", &body).await.0, 200);
    let list = app.get("/api/secrets").await.1;
    assert_eq!(list["secrets"][0]["origin"], "https://app.example.dev");
    // The same URL with a space in it is refused, not stored as `%20`.
    let spaced = json!({"secrets": {"T": {"kind": "LookupSecret", "url": format!("{url} x")}}});
    let (status, err) = app.post("/api/secrets", &spaced).await;
    assert_eq!(status, 422, "{err}");
}
