//! Health routes: no auth, reference bodies.

use crate::common::TestApp;

#[tokio::test]
async fn health_routes_need_no_key() {
    let app = TestApp::spawn().await;
    for path in ["/alive", "/health"] {
        let r = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        let (status, body) = crate::common::json_of(r).await;
        assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})), "{path}");
    }
    let (status, body) =
        crate::common::json_of(app.client.get(format!("{}/ready", app.base)).send().await.unwrap()).await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ready"})));
    let (status, info) =
        crate::common::json_of(app.client.get(format!("{}/server_info", app.base)).send().await.unwrap())
            .await;
    assert_eq!(status, 200);
    assert_eq!(info["name"], "secret-sidecar");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn ready_is_503_while_draining() {
    let app = TestApp::spawn().await;
    // Once a request is answered, the serving task has marked the service ready.
    assert_eq!(app.get("/ready").await.0, 200);
    app.state.set_ready(false);
    let (status, body) =
        crate::common::json_of(app.client.get(format!("{}/ready", app.base)).send().await.unwrap()).await;
    assert_eq!(status, 503);
    assert!(body["detail"].is_string());
    app.state.set_ready(true);
    let (status, _) =
        crate::common::json_of(app.client.get(format!("{}/ready", app.base)).send().await.unwrap()).await;
    assert_eq!(status, 200);
}
