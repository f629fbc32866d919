//! Who may call: forwarded headers, Host, the session key, in that order, before routing.

use reqwest::Method;
use serde_json::json;

use crate::common::{KEY, TestApp, json_of};

#[tokio::test]
async fn key_is_required_on_every_api_path_before_routing() {
    let app = TestApp::spawn().await;
    let cases = [
        (Method::GET, "/api/secrets"),
        (Method::POST, "/api/conversations/not-a-uuid/secrets"),
        (Method::GET, "/api/no/such/route"),
        (Method::PUT, "/api/secrets"),
        (Method::GET, "/api"),
    ];
    for (method, path) in cases {
        for key in [None, Some("wrong"), Some("test-key-5f1"), Some("TEST-KEY-5F1D")] {
            let mut r = app.client.request(method.clone(), format!("{}{path}", app.base));
            if let Some(k) = key {
                r = r.header("X-Session-API-Key", k);
            }
            let (status, body) = json_of(r.send().await.unwrap()).await;
            assert_eq!((status, body), (401, json!({"detail": "Unauthorized"})), "{method} {path} {key:?}");
        }
    }
    // The header name is case-insensitive; the value is exact.
    let r = app.client.get(format!("{}/api/secrets", app.base)).header("x-session-api-key", KEY);
    assert_eq!(json_of(r.send().await.unwrap()).await.0, 200);
    // With the key, routing answers.
    assert_eq!(app.get("/api/no/such/route").await.0, 404);
    assert_eq!(json_of(app.req(Method::PUT, "/api/secrets").send().await.unwrap()).await.0, 405);
}

#[tokio::test]
async fn every_configured_key_works() {
    let app =
        TestApp::spawn_with(&[], &[("OH_SESSION_API_KEYS_0", "k0"), ("OH_SESSION_API_KEYS", r#"["k1"]"#)])
            .await;
    for k in ["k0", "k1", KEY] {
        let r = app.client.get(format!("{}/api/secrets", app.base)).header("X-Session-API-Key", k);
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 200, "{k}");
    }
}

#[tokio::test]
async fn forwarded_requests_are_refused_first() {
    let app = TestApp::spawn().await;
    for (h, v) in [("X-Forwarded-For", "10.0.0.1"), ("Forwarded", "for=10.0.0.1")] {
        // Without a key too: 400 comes before 401.
        let r = app.client.get(format!("{}/api/secrets", app.base)).header(h, v);
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 400, "{h}");
        let r = app.req(Method::GET, "/api/secrets").header(h, v);
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 400, "{h}");
        let r = app.client.get(format!("{}/health", app.base)).header(h, v);
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 400, "{h}");
    }
}

#[tokio::test]
async fn foreign_host_headers_are_refused() {
    let app = TestApp::spawn().await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for host in [format!("evil.example:{port}"), "localhost.evil.example".into(), "10.0.0.1".into()] {
        let r = app.req(Method::GET, "/api/secrets").header("Host", host.clone());
        let (status, body) = json_of(r.send().await.unwrap()).await;
        assert_eq!(status, 400, "{host}");
        assert!(body["detail"].as_str().unwrap().contains("host"));
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "localhost".into()] {
        let r = app.req(Method::GET, "/api/secrets").header("Host", host.clone());
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 200, "{host}");
    }
}

#[tokio::test]
async fn no_cors_headers() {
    let app = TestApp::spawn().await;
    let r = app
        .req(Method::OPTIONS, "/api/secrets")
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().keys().all(|h| !h.as_str().starts_with("access-control-")));
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn too_many_requests_in_flight_get_429() {
    let app = TestApp::spawn_with(&["--max-concurrent-requests", "1"], &[]).await;
    // Hold the only slot by hand, then ask.
    let _held = app.state.take_request_slot().unwrap();
    let r = app.req(Method::GET, "/api/secrets").send().await.unwrap();
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    assert_eq!(json_of(r).await.0, 429);
    // Probes are still answered.
    let r = app.client.get(format!("{}/ready", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
