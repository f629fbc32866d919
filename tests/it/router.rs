//! The router without sockets (`tower::ServiceExt::oneshot`): status codes, the front door's
//! order, and the error shape of every kind of refusal.

use axum::body::Body;
use http_body_util::BodyExt;
use secret_sidecar::{AppState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{KEY, TestApp};

async fn call(state: &AppState, req: axum::http::Request<Body>) -> (u16, Value, Option<String>) {
    let response = router(state.clone()).oneshot(req).await.expect("infallible");
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{status}: not JSON: {bytes:?}"));
    (status, body, retry)
}

fn req(method: &str, path: &str) -> axum::http::request::Builder {
    axum::http::Request::builder().method(method).uri(path).header("host", "localhost")
}

fn authed(method: &str, path: &str) -> axum::http::request::Builder {
    req(method, path).header("x-session-api-key", KEY)
}

fn json_req(method: &str, path: &str, body: &Value) -> axum::http::Request<Body> {
    authed(method, path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn statuses_and_error_shapes() {
    let state = TestApp::state_with(&[]);
    let empty = Body::empty;
    // Not serving yet: /ready is 503, liveness is fine.
    assert_eq!(call(&state, req("GET", "/ready").body(empty()).unwrap()).await.0, 503);
    assert_eq!(call(&state, req("GET", "/alive").body(empty()).unwrap()).await.1, json!({"status": "ok"}));
    state.set_ready(true);
    assert_eq!(call(&state, req("GET", "/ready").body(empty()).unwrap()).await.1, json!({"status": "ready"}));

    let cases: Vec<(axum::http::Request<Body>, u16, &str)> = vec![
        // The front door, in its order: forwarded, host, key (before routing), body size.
        (
            authed("GET", "/api/secrets").header("x-forwarded-for", "1.2.3.4").body(empty()).unwrap(),
            400,
            "forwarded",
        ),
        (
            axum::http::Request::builder()
                .uri("/alive")
                .header("host", "evil.example")
                .body(empty())
                .unwrap(),
            400,
            "host header",
        ),
        (req("GET", "/api/secrets").body(empty()).unwrap(), 401, "Unauthorized"),
        (req("GET", "/api/no/such/route").body(empty()).unwrap(), 401, "Unauthorized"),
        (
            authed("POST", "/api/secrets").header("content-length", "999999999").body(empty()).unwrap(),
            413,
            "larger",
        ),
        // Routing.
        (authed("GET", "/api/no/such/route").body(empty()).unwrap(), 404, "Not Found"),
        (authed("PUT", "/api/secrets").body(empty()).unwrap(), 405, "Method Not Allowed"),
        (authed("GET", "/api/bash/bash_events/nope").body(empty()).unwrap(), 404, "bash event not found"),
        // Bodies.
        (
            authed("POST", "/api/secrets")
                .header("content-type", "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
            415,
            "content type",
        ),
        (
            authed("POST", "/api/mask")
                .header("content-type", "application/json")
                .body(Body::from("{\"text\": "))
                .unwrap(),
            400,
            "malformed JSON",
        ),
        (
            json_req("POST", "/api/commands", &json!({"command": "true", "timeout": "canary-t"})),
            422,
            "timeout: expected u64",
        ),
        (
            json_req("POST", "/api/commands", &json!({"command": "true", "timeout": 0})),
            422,
            "timeout: must be",
        ),
        (json_req("POST", "/api/commands", &json!({"command": "true", "cwd": "/no/such/dir"})), 422, "cwd"),
        (json_req("POST", "/api/commands", &json!({"cmd": "true"})), 422, "body: missing field `command`"),
        (
            json_req("POST", "/api/commands", &json!({"command": "true", "secrets": ["NOPE_X"]})),
            424,
            "could not be resolved",
        ),
        (json_req("POST", "/api/mask", &json!({"text": 5})), 422, "text: expected a string"),
        (json_req("POST", "/api/secrets/resolve", &json!({"names": ["1bad"]})), 422, "names"),
        (
            json_req("POST", "/api/conversations/not-a-uuid/secrets", &json!({"secrets": {}})),
            422,
            "conversation id",
        ),
        (authed("DELETE", "/api/secrets/NOPE").body(empty()).unwrap(), 404, "NOPE"),
        (authed("GET", "/api/bash/bash_events/search?limit=1000").body(empty()).unwrap(), 422, "limit"),
    ];
    for (request, status, detail) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, body, _) = call(&state, request).await;
        assert_eq!(got, status, "{what}: {body}");
        let shown = body["detail"].to_string();
        assert!(shown.contains(detail), "{what}: {body}");
        assert!(!shown.contains("canary"), "{what} echoes input: {body}");
    }
    // A missing explicit secret is listed by name.
    let (_, body, _) =
        call(&state, json_req("POST", "/api/commands", &json!({"command": "true", "secrets": ["NOPE_X"]})))
            .await;
    assert_eq!(body["missing"][0]["name"], "NOPE_X");
}

#[tokio::test]
async fn bounds_answer_429_with_retry_after() {
    let state = TestApp::state_with(&["--max-concurrent-requests", "1", "--mask-rate", "1"]);
    state.set_ready(true);
    let held = state.take_request_slot().expect("a free slot");
    let (status, body, retry) =
        call(&state, authed("GET", "/api/secrets").body(Body::empty()).unwrap()).await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    // Probes are exempt from the bound.
    assert_eq!(call(&state, req("GET", "/alive").body(Body::empty()).unwrap()).await.0, 200);
    drop(held);
    let mut limited = false;
    for _ in 0..5 {
        let (status, _, retry) = call(&state, json_req("POST", "/api/mask", &json!({"text": "x"}))).await;
        if status == 429 {
            assert!(retry.is_some());
            limited = true;
            break;
        }
    }
    assert!(limited, "the mask rate limit never applied");
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let state = TestApp::state_with(&[]);
    let id_of = |r: &axum::response::Response| {
        r.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    let r = router(state.clone()).oneshot(req("GET", "/alive").body(Body::empty()).unwrap()).await.unwrap();
    let generated = id_of(&r);
    assert!(generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()), "{generated}");
    // A well-formed id from the caller is kept, on errors too.
    let r = router(state.clone())
        .oneshot(
            req("GET", "/api/secrets").header("x-request-id", "trace-42.a_b").body(Body::empty()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), id_of(&r).as_str()), (401, "trace-42.a_b"));
    // Anything else is replaced, so nothing can ride in the id into the logs.
    for bad in ["has space", "x".repeat(65).as_str(), "semi;colon"] {
        let r = router(state.clone())
            .oneshot(req("GET", "/alive").header("x-request-id", bad).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let id = id_of(&r);
        assert!(id != bad && id.len() == 32, "{bad:?} -> {id}");
    }
}
