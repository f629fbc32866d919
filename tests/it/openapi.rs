//! `GET /openapi.json`: every route the router serves is in the document and nothing else is;
//! the document is valid OpenAPI 3.1 with every `$ref` resolving; and what the routes really
//! answer validates against the schemas the document gives for them.

use std::collections::BTreeSet;

use axum::body::Body;
use http_body_util::BodyExt;
use secret_sidecar::router;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{CONV_HEX, KEY, TestApp};

/// The methods OpenAPI has a field for, as the document spells them.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The document, fetched through the router without the key (it is served without one).
async fn document() -> Value {
    let state = TestApp::state_with(&[]);
    let req =
        axum::http::Request::get("/openapi.json").header("host", "localhost").body(Body::empty()).unwrap();
    let response = router(state).oneshot(req).await.expect("infallible");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

/// `(path, method)` of every operation of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.insert((path.clone(), (*method).to_owned()));
            }
        }
    }
    ops
}

/// `(path, method)` of every route the real router serves, read from its `Debug` form (axum
/// has no other way to list routes): the path router's `RouteId -> path` table and, per
/// `RouteId`, which method endpoints are set. Fails loudly if that form changes.
fn served() -> BTreeSet<(String, String)> {
    let text = format!("{:?}", router(TestApp::state_with(&[])));
    // Only the path router: the fallback router's routes are not routes.
    let text = text.split("fallback_router:").next().expect("a Router");
    let (routes, node) = text.split_once("node: Node").expect("the path router's node");
    let mut paths = std::collections::BTreeMap::new();
    for segment in node.split("RouteId(").skip(1) {
        let (id, rest) = segment.split_once("): \"").expect("RouteId(n): \"path\"");
        let path = rest.split('"').next().expect("a quoted path");
        paths.insert(id.to_owned(), path.to_owned());
    }
    let mut ops = BTreeSet::new();
    for segment in routes.split("RouteId(").skip(1) {
        let (id, endpoint) = segment.split_once(')').expect("RouteId(n)");
        let path = paths.get(id).unwrap_or_else(|| panic!("route {id} has no path in {text}"));
        // HEAD is served by GET handlers implicitly; only an explicit one would count.
        for method in METHODS {
            let Some((_, value)) = endpoint.split_once(&format!(" {method}: ")) else {
                panic!("route {id} has no `{method}` field in {endpoint}");
            };
            if !value.starts_with("None") {
                ops.insert((path.clone(), (*method).to_owned()));
            }
        }
    }
    assert!(ops.len() > 10, "could not read the router's routes from its Debug form:\n{text}");
    ops
}

#[tokio::test]
async fn every_served_route_is_documented_and_nothing_else() {
    let doc = document().await;
    let documented = documented(&doc);
    let served = served();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in /openapi.json: {undocumented:?}");
    assert!(phantom.is_empty(), "in /openapi.json but not served: {phantom:?}");
    // The routes of the contract are among them (a guard on the walk itself).
    for (path, method) in [
        ("/alive", "get"),
        ("/openapi.json", "get"),
        ("/api/conversations/{id}", "delete"),
        ("/api/conversations/{id}/secrets", "post"),
        ("/api/secrets/{name}", "delete"),
        ("/api/commands/stream", "post"),
        ("/api/bash/bash_events/{event_id}", "get"),
    ] {
        assert!(served.contains(&(path.to_owned(), method.to_owned())), "{method} {path} not served");
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    // Independent of the Debug walk: a request to each operation is not the router's 404/405.
    let doc = document().await;
    let state = TestApp::state_with(&[]);
    for (path, method) in documented(&doc) {
        let uri = path.replace("{id}", CONV_HEX).replace("{name}", "NOPE").replace("{event_id}", "0");
        let req = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header("host", "localhost")
            .header("x-session-api-key", KEY)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = router(state.clone()).oneshot(req).await.expect("infallible");
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
            .unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}");
        assert!(
            status != 404 || body["detail"] != "Not Found",
            "{method} {path} fell through to the router's 404"
        );
    }
}

/// Every `"$ref"` string in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let doc = document().await;
    let spec = oas3::from_json(doc.to_string()).expect("the document deserializes as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3.1."), "{}", spec.openapi);
    assert_eq!(spec.info.version, env!("CARGO_PKG_VERSION"));

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} resolves to nothing");
    }

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["session_key"],
        json!({"type": "apiKey", "in": "header", "name": "X-Session-API-Key"})
    );
    let mut ids = BTreeSet::new();
    for (path, method) in documented(&doc) {
        let op = &doc["paths"][&path][&method];
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        // Every templated segment is a declared path parameter, and no other is declared.
        let templated: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(templated, declared, "{method} {path}: path parameters");
        // The key is required exactly under /api and for /metrics.
        let keyed = path.starts_with("/api/") || path == "/metrics";
        let secured = op["security"] == json!([{"session_key": []}]);
        assert_eq!(secured, keyed, "{method} {path}: security");
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("200"), "{method} {path}: no 200");
        if keyed {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(status), "{method} {path}: no {status}");
            }
        }
        // Every error answer has the `{"detail": …}` shape.
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                    "{method} {path}: {status}"
                );
            }
        }
    }
    assert!(doc["components"]["schemas"]["Detail"]["oneOf"].is_array());
}

/// Validates `instance` against `schema`, resolving `$ref`s in the document's components.
fn validate(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: {instance} does not match {schema}: {errors:?}");
}

/// The schema the document gives for the answer `status` of `method path` (its one content type).
fn response_schema<'d>(doc: &'d Value, method: &str, path: &str, status: u16) -> &'d Value {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let content = response["content"].as_object().unwrap_or_else(|| panic!("{method} {path}: no {status}"));
    assert_eq!(content.len(), 1, "{method} {path} {status}");
    &content.values().next().unwrap()["schema"]
}

/// Sends a request as the document describes it, checks the request body against the
/// documented request schema and the answer against the documented response schema, and
/// returns the status and the answer.
async fn exchange(
    app: &TestApp,
    doc: &Value,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.req(method.to_uppercase().parse().unwrap(), path);
    if let Some(body) = &body {
        let schema = &doc["paths"][template][method]["requestBody"]["content"]["application/json"]["schema"];
        validate(doc, schema, body, &format!("request of {method} {template}"));
        req = req.json(body);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let ndjson = response.headers()["content-type"] == "application/x-ndjson";
    let text = response.text().await.unwrap();
    let schema = response_schema(doc, method, template, status);
    let what = format!("{status} of {method} {template}");
    if ndjson {
        let frames: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(frames.len() >= 2, "{what}: {text}");
        for frame in &frames {
            validate(doc, schema, frame, &what);
        }
        return (status, Value::Array(frames));
    }
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    validate(doc, schema, &answer, &what);
    (status, answer)
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let doc = document().await;
    // The check itself rejects a wrong shape (a `$ref` that resolved to nothing would not).
    let mut root = json!({"$ref": "#/components/schemas/Status"});
    root["components"] = doc["components"].clone();
    assert!(!jsonschema::is_valid(&root, &json!({"status": 5})));
    assert!(!jsonschema::is_valid(&root, &json!({})));
    let app = TestApp::spawn().await;
    let conv = format!("/api/conversations/{CONV_HEX}");
    let ex = |method: &'static str, template: &'static str, path: String, body: Option<Value>| {
        let (app, doc) = (&app, &doc);
        async move { exchange(app, doc, method, template, &path, body).await }
    };

    for path in ["/alive", "/health", "/ready", "/server_info", "/openapi.json"] {
        assert_eq!(ex("get", path, path.to_owned(), None).await.0, 200, "{path}");
    }

    let secrets = json!({"secrets": {
        "A_TOKEN": "value-5e8c1f",
        "B_LOOKUP": {"kind": "LookupSecret", "url": "https://app.example.dev/s/B", "headers": {"X-K": "v"},
            "ttl_seconds": 60, "description": "looked up"},
        "C_UNSET": {"value": null, "description": "no value"},
        "D_STATIC": {"kind": "StaticSecret", "value": "value-77aa01"},
    }});
    assert_eq!(ex("post", "/api/secrets", "/api/secrets".into(), Some(secrets.clone())).await.0, 200);
    let conv_secrets = format!("{conv}/secrets");
    let t = "/api/conversations/{id}/secrets";
    assert_eq!(
        ex("post", t, conv_secrets.clone(), Some(json!({"secrets": {"E": "value-0c0c0c"}}))).await.0,
        200
    );
    let (status, bad) =
        ex("post", "/api/secrets", "/api/secrets".into(), Some(json!({"secrets": {"PATH": "x"}}))).await;
    assert_eq!(status, 422);
    assert!(bad["detail"].is_array(), "{bad}");
    let (status, list) = ex("get", "/api/secrets", "/api/secrets".into(), None).await;
    assert_eq!((status, list["secrets"].as_array().unwrap().len()), (200, 4));
    assert_eq!(ex("get", t, conv_secrets, None).await.0, 200);

    let resolve = Some(json!({"names": ["A_TOKEN", "NOT_THERE"]}));
    let (status, resolved) = ex("post", "/api/secrets/resolve", "/api/secrets/resolve".into(), resolve).await;
    assert_eq!((status, &resolved["resolved"]), (200, &json!(["A_TOKEN"])));
    let mask = Some(json!({"text": "x value-5e8c1f y"}));
    assert_eq!(ex("post", "/api/mask", "/api/mask".into(), mask).await.0, 200);

    let run = Some(json!({"command": "echo $A_TOKEN; echo err >&2", "timeout": 60, "env": {"X": "1"}}));
    let (status, done) = ex("post", "/api/commands", "/api/commands".into(), run.clone()).await;
    assert_eq!((status, done["exit_code"].as_i64()), (200, Some(0)), "{done}");
    let missing = Some(json!({"command": "true", "secrets": ["NOT_THERE"], "on_missing": "fail"}));
    let (status, refused) = ex("post", "/api/commands", "/api/commands".into(), missing).await;
    assert_eq!(status, 424, "{refused}");
    assert!(refused["missing"].is_array(), "{refused}");
    let (status, frames) = ex("post", "/api/commands/stream", "/api/commands/stream".into(), run).await;
    assert_eq!((status, &frames[0]["type"]), (200, &json!("start")));
    let all = Some(json!({"command": "true", "secrets": "all", "cwd": "/", "on_missing": "skip"}));
    assert_eq!(ex("post", "/api/conversations/{id}/commands", format!("{conv}/commands"), all).await.0, 200);

    let bash = |body: Value| Some(body);
    let start = "/api/bash/start_bash_command";
    let (status, started) =
        ex("post", start, start.into(), bash(json!({"command": "echo hi", "cwd": null}))).await;
    assert_eq!((status, &started["kind"]), (200, &json!("BashCommand")));
    let execute = "/api/bash/execute_bash_command";
    let body = bash(json!({"command": "echo $A_TOKEN", "timeout": 30, "conversation_id": CONV_HEX}));
    let (status, output) = ex("post", execute, execute.into(), body).await;
    assert_eq!((status, &output["kind"], &output["exit_code"]), (200, &json!("BashOutput"), &json!(0)));
    let search = "/api/bash/bash_events/search";
    let (status, page) = ex("get", search, format!("{search}?sort_order=TIMESTAMP_DESC&limit=5"), None).await;
    assert_eq!(status, 200);
    assert!(!page["items"].as_array().unwrap().is_empty());
    assert_eq!(ex("get", search, format!("{search}?limit=0"), None).await.0, 422);
    let event = "/api/bash/bash_events/{event_id}";
    let id = started["id"].as_str().unwrap();
    assert_eq!(ex("get", event, format!("/api/bash/bash_events/{id}"), None).await.0, 200);
    assert_eq!(ex("get", event, "/api/bash/bash_events/nope".into(), None).await.0, 404);

    let one = "/api/secrets/{name}";
    assert_eq!(ex("delete", one, "/api/secrets/C_UNSET".into(), None).await.0, 200);
    assert_eq!(ex("delete", one, "/api/secrets/C_UNSET".into(), None).await.0, 404);
    assert_eq!(ex("delete", "/api/conversations/{id}", conv.clone(), None).await.0, 200);
    assert_eq!(ex("delete", "/api/conversations/{id}", conv, None).await.0, 404);

    // Without the key: 401 with the error shape.
    let r = app.client.get(format!("{}/api/secrets", app.base)).send().await.unwrap();
    let (status, body) = crate::common::json_of(r).await;
    assert_eq!(status, 401);
    validate(&doc, response_schema(&doc, "get", "/api/secrets", 401), &body, "401");
}

#[tokio::test]
async fn an_array_body_is_refused_not_read_as_fields() {
    // Fuzzing against the document found `[]` accepted where an object is required; a derived
    // model took its fields from an array, so `["…"]` ran as a command.
    let app = TestApp::spawn().await;
    for (path, body) in [
        ("/api/commands", json!(["echo ran"])),
        ("/api/secrets/resolve", json!([])),
        ("/api/mask", json!(["text"])),
        ("/api/bash/execute_bash_command", json!(["echo ran"])),
        ("/api/secrets", json!([])),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert!(answer["detail"].is_string() || answer["detail"].is_array(), "{path}: {answer}");
    }
}
