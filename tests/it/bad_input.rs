//! Bad input: each gets a clear 4xx with a JSON body that echoes no value, and changes
//! nothing in the registry.

use reqwest::Method;
use secret_sidecar::secrets::registry::{ConversationId, ScopeId, ScopeKind};
use secret_sidecar::secrets::source::SecretSource;
use secret_sidecar::secrets::value::SecretName;
use serde_json::{Value, json};

use crate::common::{CONV_HEX, TestApp, json_of};

/// Appears in every bad body; must never come back.
const CANARY: &str = "canary-7c1e";

fn lookup(extra: Value) -> Value {
    let mut entry = json!({"kind": "LookupSecret", "url": "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/X", "headers": {"X-Token": CANARY}});
    for (k, v) in extra.as_object().unwrap() {
        entry[k] = v.clone();
    }
    json!({"secrets": {"GOOD": CANARY, "X": entry}})
}

fn entry(e: Value) -> Value {
    json!({"secrets": {"GOOD": CANARY, "X": e}})
}

/// (what, body, expected status)
fn schema_cases() -> Vec<(&'static str, Value, u16)> {
    let many_headers: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("H{i}"), json!(CANARY))).collect();
    let mut cases = vec![
        ("body not an object", json!([CANARY]), 422),
        ("missing secrets", json!({"secret": {"A": CANARY}}), 422),
        ("secrets not an object", json!({"secrets": [CANARY]}), 422),
        ("secrets a string", json!({"secrets": CANARY}), 422),
        ("null entry", entry(json!(null)), 422),
        ("number entry", entry(json!(42)), 422),
        ("bool entry", entry(json!(true)), 422),
        ("list entry", entry(json!([CANARY])), 422),
        ("unknown kind", entry(json!({"kind": CANARY, "value": CANARY})), 422),
        ("no kind, no value", entry(json!({"description": CANARY})), 422),
        ("value not a string", entry(json!({"kind": "StaticSecret", "value": [CANARY]})), 422),
        ("value a number", entry(json!({"kind": "StaticSecret", "value": 123})), 422),
        ("lookup without url", entry(json!({"kind": "LookupSecret", "value": CANARY})), 422),
        (
            "ttl on a static secret",
            entry(json!({"kind": "StaticSecret", "value": CANARY, "ttl_seconds": 5})),
            422,
        ),
        ("description too long", entry(json!({"value": CANARY, "description": "d".repeat(1025)})), 422),
        ("description not a string", entry(json!({"value": CANARY, "description": 5})), 422),
        (
            "url too long",
            lookup(json!({"url": format!("https://app.example.dev/{CANARY}{}", "a".repeat(8200))})),
            422,
        ),
        ("too many headers", lookup(json!({"headers": many_headers})), 422),
        (
            "header too long",
            lookup(json!({"headers": {"X-A": format!("{CANARY}{}", "a".repeat(8200))}})),
            422,
        ),
        (
            "header value with newline",
            lookup(json!({"headers": {"X-A": format!("{CANARY}\r\nX-B: 1")}})),
            422,
        ),
        ("header value not a string", lookup(json!({"headers": {"X-A": [CANARY]}})), 422),
        ("headers not an object", lookup(json!({"headers": [CANARY]})), 422),
        ("header name not a token", lookup(json!({"headers": {"X A": CANARY}})), 422),
        ("duplicate header names", lookup(json!({"headers": {"X-A": CANARY, "x-a": CANARY}})), 422),
        ("ttl too big", lookup(json!({"ttl_seconds": 86401})), 422),
        ("ttl negative", lookup(json!({"ttl_seconds": -1})), 422),
        ("ttl fractional", lookup(json!({"ttl_seconds": 0.5})), 422),
        ("ttl a string", lookup(json!({"ttl_seconds": "5"})), 422),
        ("origin not allowed", lookup(json!({"url": format!("https://evil.example/{CANARY}")})), 422),
        ("http to the https origin", lookup(json!({"url": format!("http://app.example.dev/{CANARY}")})), 422),
        ("userinfo", lookup(json!({"url": format!("https://{CANARY}:pw@app.example.dev/x")})), 422),
        ("file url", lookup(json!({"url": format!("file:///etc/{CANARY}")})), 422),
        ("metadata ip", lookup(json!({"url": format!("http://169.254.169.254/{CANARY}")})), 422),
        ("protocol-relative url", lookup(json!({"url": format!("//app.example.dev/{CANARY}")})), 422),
        ("path without slash", lookup(json!({"url": format!("api/{CANARY}")})), 422),
        ("host:port without scheme", lookup(json!({"url": format!("app.example.dev:443/{CANARY}")})), 422),
        (
            "relative url without OH_INTERNAL_SERVER_URL",
            lookup(json!({"url": format!("/api/{CANARY}")})),
            422,
        ),
        (
            "env_headers to a non-settings origin",
            lookup(json!({"env_headers": {"X-K": "SESSION_API_KEY"}})),
            422,
        ),
        ("bad name", json!({"secrets": {"1BAD": CANARY}}), 422),
        ("name with dash", json!({"secrets": {"A-B": CANARY}}), 422),
        ("name too long", json!({"secrets": {"A".repeat(129): CANARY}}), 422),
        ("empty name", json!({"secrets": {"": CANARY}}), 422),
    ];
    for reserved in [
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BASH_ENV",
        "ENV",
        "IFS",
        "PS4",
        "SHELLOPTS",
        "BASHOPTS",
        "PROMPT_COMMAND",
        "HOME",
        "SHELL",
        "_",
    ] {
        cases.push(("reserved name", json!({"secrets": {reserved: CANARY}}), 422));
    }
    cases
}

async fn assert_error(r: reqwest::Response, expected: u16, what: &str) -> Value {
    let (status, body) = json_of(r).await;
    assert_eq!(status, expected, "{what}: {body}");
    assert!(body.get("detail").is_some(), "{what}: {body}");
    let text = body.to_string();
    assert!(!text.contains(CANARY) && !text.contains("canary"), "{what} echoes input: {text}");
    body
}

#[tokio::test]
async fn schema_errors_are_422_name_the_entry_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.post("/api/secrets", &json!({"secrets": {"KEEP": "k"}})).await;
    app.post(&format!("/api/conversations/{CONV_HEX}/secrets"), &json!({"secrets": {"KEEP": "k"}})).await;
    let before = app.snapshot().await;
    for path in [
        "/api/secrets".to_owned(),
        format!("/api/conversations/{CONV_HEX}/secrets"),
        format!("/api/conversations/{}/secrets", "e".repeat(32)),
    ] {
        for (what, body, expected) in schema_cases() {
            let r = app.req(Method::POST, &path).json(&body).send().await.unwrap();
            let err = assert_error(r, expected, what).await;
            let detail = err["detail"].to_string();
            if body["secrets"].get("X").is_some() {
                assert!(detail.contains("\"X\""), "{what}: error should name entry X: {detail}");
            }
        }
        assert_eq!(app.snapshot().await, before, "registry changed");
        assert_eq!(app.state.registry().conversation_count(), 1, "a failed update created a scope");
    }
}

#[tokio::test]
async fn malformed_requests() {
    let app = TestApp::spawn_with(
        &["--allow-lookup-origin", "https://app.example.dev", "--max-body-bytes", "4096"],
        &[],
    )
    .await;
    let before = app.snapshot().await;
    let path = format!("/api/conversations/{CONV_HEX}/secrets");
    let post = |body: Vec<u8>, ct: Option<&str>| {
        let mut r = app.req(Method::POST, &path).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r
    };
    let json_ct = Some("application/json");
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("truncated json", post(format!(r#"{{"secrets": {{"A": "{CANARY}"#).into_bytes(), json_ct), 400),
        ("not json", post(CANARY.as_bytes().to_vec(), json_ct), 400),
        ("empty body", post(Vec::new(), json_ct), 400),
        (
            "invalid utf-8",
            post([&br#"{"secrets": {"A": ""#[..], &[0xff, 0xfe], br#""}}"#].concat(), json_ct),
            400,
        ),
        ("deep nesting", post(deep.into_bytes(), json_ct), 400),
        ("text/plain", post(br#"{"secrets": {}}"#.to_vec(), Some("text/plain")), 415),
        ("no content type", post(br#"{"secrets": {}}"#.to_vec(), None), 415),
        ("form", post(b"secrets=1".to_vec(), Some("application/x-www-form-urlencoded")), 415),
        ("declared too large", post(vec![b' '; 5000], json_ct), 413),
        (
            "chunked too large",
            app.req(Method::POST, &path)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures_stream(vec![b' '; 5000]))),
            413,
        ),
        (
            "bad conversation id",
            app.req(Method::POST, "/api/conversations/not-a-uuid/secrets").json(&json!({"secrets": {}})),
            422,
        ),
        (
            "braced id",
            app.req(Method::POST, "/api/conversations/{0a1b2c3d-4e5f-6789-abcd-ef0123456789}/secrets")
                .json(&json!({"secrets": {}})),
            422,
        ),
        ("bad name in delete", app.req(Method::DELETE, "/api/secrets/LD_PRELOAD"), 422),
        ("bad id in delete", app.req(Method::DELETE, "/api/conversations/xyz"), 422),
        ("unknown route", app.req(Method::GET, "/api/conversations"), 404),
        ("unknown top-level route", app.req(Method::GET, "/nope"), 404),
        ("wrong method", app.req(Method::PATCH, &path), 405),
        ("wrong method on health", app.req(Method::POST, "/health"), 405),
    ];
    for (what, req, expected) in cases {
        assert_error(req.send().await.unwrap(), expected, what).await;
    }
    // application/*+json and a charset are fine.
    let ok = app
        .req(Method::POST, &path)
        .header("content-type", "application/vnd.api+json; charset=utf-8")
        .body(r#"{"secrets":{}}"#);
    assert_eq!(ok.send().await.unwrap().status().as_u16(), 200);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn static_values_that_cannot_be_exported_are_422() {
    // Default --max-value-bytes: 65536, the cap on lookup bodies too.
    let app = TestApp::spawn().await;
    let before = app.snapshot().await;
    let big = format!("{CANARY}{}", "v".repeat(140 * 1024));
    let just_over = format!("{CANARY}{}", "v".repeat(65536 - CANARY.len() + 1));
    let cases = [
        ("NUL in a bare string", json!(format!("{CANARY}\u{0}tail"))),
        ("NUL in a tagged value", json!({"kind": "StaticSecret", "value": format!("\u{0}{CANARY}")})),
        ("NUL in an untagged value", json!({"value": format!("{CANARY}\u{0}")})),
        ("140 KB bare string", json!(big)),
        ("140 KB tagged value", json!({"kind": "StaticSecret", "value": big})),
        ("one byte over the limit", json!({"value": just_over})),
    ];
    for path in ["/api/secrets".to_owned(), format!("/api/conversations/{CONV_HEX}/secrets")] {
        for (what, e) in &cases {
            let r = app.req(Method::POST, &path).json(&entry(e.clone())).send().await.unwrap();
            let err = assert_error(r, 422, what).await;
            assert!(err["detail"].to_string().contains("\"X\""), "{what}: names the entry: {err}");
        }
    }
    assert_eq!(app.snapshot().await, before, "registry changed");
    // The limit itself is accepted.
    let at_limit = "v".repeat(65536);
    assert_eq!(app.post("/api/secrets", &json!({"secrets": {"AT_LIMIT": at_limit}})).await.0, 200);
}

#[tokio::test]
async fn control_characters_in_a_lookup_are_refused_not_normalised() {
    let app = TestApp::spawn().await;
    let good = "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/X";
    let registered = json!({"kind": "LookupSecret", "url": good, "headers": {"X-Token": "t"}});
    for path in ["/api/secrets".to_owned(), format!("/api/conversations/{CONV_HEX}/secrets")] {
        assert_eq!(app.post(&path, &json!({"secrets": {"X": registered}})).await.0, 200);
    }
    let before = app.snapshot().await;
    let x = |scope: &ScopeId| {
        let v = app.state.registry().get(scope, &SecretName::parse("X").unwrap()).unwrap();
        let SecretSource::Lookup(l) = &v.entry.source else { panic!("X is a lookup") };
        (v.scope, v.entry.generation, l.url.to_string())
    };
    let conv = ScopeId::Conversation(ConversationId::parse(CONV_HEX).unwrap());
    let (sandbox_x, conv_x) = (x(&ScopeId::Sandbox), x(&conv));
    assert_eq!((sandbox_x.0, conv_x.0), (ScopeKind::Sandbox, ScopeKind::Conversation));

    let url = |suffix: &str| format!("{good}/{CANARY}{suffix}");
    let cases = [
        ("trailing NUL", json!({"url": url("\u{0}")}), "url"),
        ("embedded newline", json!({"url": url("\nx")}), "url"),
        ("tab", json!({"url": url("\tx")}), "url"),
        ("leading space", json!({"url": format!(" {}", url(""))}), "url"),
        ("space", json!({"url": url(" x")}), "url"),
        ("backslash", json!({"url": url("\\x")}), "url"),
        ("DEL", json!({"url": url("\u{7f}")}), "url"),
        ("tab in a header value", json!({"headers": {"X-Token": format!("{CANARY}\t")}}), "headers"),
        ("blank header value of a newline", json!({"headers": {"X-Token": "\n"}}), "headers"),
        ("control character in a header name", json!({"headers": {"X-Token\u{1}": CANARY}}), "headers"),
        (
            "control character in an env_headers name",
            json!({"env_headers": {"X-K\n": "SESSION_API_KEY"}}),
            "env_headers",
        ),
    ];
    for path in ["/api/secrets".to_owned(), format!("/api/conversations/{CONV_HEX}/secrets")] {
        for (what, extra, field) in &cases {
            let r = app.req(Method::POST, &path).json(&lookup(extra.clone())).send().await.unwrap();
            let err = assert_error(r, 422, what).await;
            let detail = err["detail"].to_string();
            assert!(detail.contains("\"X\"") && detail.contains(&format!("\"{field}\"")), "{what}: {detail}");
        }
    }
    assert_eq!(app.snapshot().await, before, "registry changed");
    assert_eq!((x(&ScopeId::Sandbox), x(&conv)), (sandbox_x, conv_x), "X was replaced");
    assert_eq!(x(&ScopeId::Sandbox).2, good);
}

/// A body sent with chunked transfer encoding (no Content-Length).
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Once(Option<Vec<u8>>);
    impl futures_core::Stream for Once {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Once(Some(bytes))
}
