//! A fake OpenHands settings API (axum, port 0) that behaves like the real one: the list of
//! a sandbox's secrets as JSON, each value as `text/plain`, 401 for a missing or unknown key,
//! 403 for another sandbox's key, 404 for a missing name. It counts requests per path,
//! records the session key each request carried, and can inject faults per secret name.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One injected answer for a secret, used once, in order.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and an optional `Retry-After`).
    Status(u16, Option<String>),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// 302 to this URL.
    Redirect(String),
    /// 200 with this body.
    Body(Vec<u8>),
}

#[derive(Default)]
struct Inner {
    /// sandbox id -> accepted key
    keys: HashMap<String, String>,
    /// name -> (value, description)
    secrets: HashMap<String, (Vec<u8>, Option<String>)>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// A fault applied to every value request while set (an outage).
    outage: Option<u16>,
    hits: HashMap<String, usize>,
    completed: HashMap<String, usize>,
    seen_keys: Vec<Option<String>>,
    seen_headers: Vec<HeaderMap>,
}

/// Handle to a running fake settings server.
#[derive(Clone)]
pub struct FakeSettings {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSettings {
    /// Starts the server; sandbox `sb-1` accepts `key`.
    pub async fn start(key: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        inner.lock().unwrap().keys.insert("sb-1".into(), key.into());
        inner.lock().unwrap().keys.insert("sb-other".into(), "other-sandbox-key".into());
        let app = Router::new()
            .route("/api/v1/sandboxes/{sid}/settings/secrets", get(list))
            .route("/api/v1/sandboxes/{sid}/settings/secrets/{name}", get(value))
            .route("/plain/{name}", get(plain))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, inner }
    }

    /// The per-secret URL in sandbox `sb-1`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/api/v1/sandboxes/sb-1/settings/secrets/{name}", self.base)
    }

    /// A URL outside `/api/v1/sandboxes/` (no session key is added there).
    pub fn plain_url(&self, name: &str) -> String {
        format!("{}/plain/{name}", self.base)
    }

    pub fn set(&self, name: &str, value: &[u8], description: Option<&str>) {
        self.inner.lock().unwrap().secrets.insert(name.into(), (value.to_vec(), description.map(Into::into)));
    }

    pub fn remove(&self, name: &str) {
        self.inner.lock().unwrap().secrets.remove(name);
    }

    pub fn set_key(&self, key: &str) {
        self.inner.lock().unwrap().keys.insert("sb-1".into(), key.into());
    }

    pub fn fault(&self, name: &str, fault: Fault) {
        self.inner.lock().unwrap().faults.entry(name.into()).or_default().push_back(fault);
    }

    pub fn outage(&self, status: Option<u16>) {
        self.inner.lock().unwrap().outage = status;
    }

    /// Requests received for a secret name (or `"<list>"`).
    pub fn hits(&self, name: &str) -> usize {
        self.inner.lock().unwrap().hits.get(name).copied().unwrap_or(0)
    }

    /// Requests for a name that were answered (after any delay).
    pub fn completed(&self, name: &str) -> usize {
        self.inner.lock().unwrap().completed.get(name).copied().unwrap_or(0)
    }

    /// `X-Session-API-Key` of every request so far, in order.
    pub fn seen_keys(&self) -> Vec<Option<String>> {
        self.inner.lock().unwrap().seen_keys.clone()
    }

    /// All request headers, in order.
    pub fn seen_headers(&self) -> Vec<HeaderMap> {
        self.inner.lock().unwrap().seen_headers.clone()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

fn record(inner: &Arc<Mutex<Inner>>, name: &str, headers: &HeaderMap) {
    let mut s = inner.lock().unwrap();
    *s.hits.entry(name.into()).or_default() += 1;
    s.seen_keys.push(headers.get("x-session-api-key").map(|v| v.to_str().unwrap_or("?").to_owned()));
    s.seen_headers.push(headers.clone());
}

fn detail(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({"detail": msg}))).into_response()
}

/// The real API's key check: 401 missing/unknown, 403 another sandbox's key (the error response, if any).
fn check_key(inner: &Inner, sid: &str, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = headers.get("x-session-api-key").and_then(|v| v.to_str().ok()) else {
        return Some(detail(StatusCode::UNAUTHORIZED, "X-Session-API-Key header is required"));
    };
    match inner.keys.iter().find(|(_, k)| k.as_str() == key) {
        None => Some(detail(StatusCode::UNAUTHORIZED, "Invalid session API key")),
        Some((owner, _)) if owner != sid => {
            Some(detail(StatusCode::FORBIDDEN, "Session API key does not match sandbox"))
        }
        Some(_) => None,
    }
}

async fn list(State(inner): Shared, Path(sid): Path<String>, headers: HeaderMap) -> Response {
    record(&inner, "<list>", &headers);
    let s = inner.lock().unwrap();
    if let Some(r) = check_key(&s, &sid, &headers) {
        return r;
    }
    let mut items: Vec<_> =
        s.secrets.iter().map(|(n, (_, d))| serde_json::json!({"name": n, "description": d})).collect();
    items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    axum::Json(serde_json::json!({"secrets": items})).into_response()
}

async fn value(
    State(inner): Shared,
    Path((sid, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    record(&inner, &name, &headers);
    let response = answer(&inner, &name, Some(&sid), &headers).await;
    *inner.lock().unwrap().completed.entry(name).or_default() += 1;
    response
}

async fn plain(State(inner): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    record(&inner, &name, &headers);
    let response = answer(&inner, &name, None, &headers).await;
    *inner.lock().unwrap().completed.entry(name).or_default() += 1;
    response
}

async fn answer(inner: &Arc<Mutex<Inner>>, name: &str, sid: Option<&str>, headers: &HeaderMap) -> Response {
    let fault = inner.lock().unwrap().faults.get_mut(name).and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            let mut r = detail(StatusCode::from_u16(code).unwrap(), "injected");
            if let Some(ra) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, ra.parse().unwrap());
            }
            return r;
        }
        Some(Fault::Redirect(to)) => {
            return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
        }
        Some(Fault::Body(b)) => return ([(header::CONTENT_TYPE, "text/plain")], b).into_response(),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let s = inner.lock().unwrap();
    if let Some(code) = s.outage {
        return detail(StatusCode::from_u16(code).unwrap(), "outage");
    }
    if let Some(sid) = sid {
        if let Some(r) = check_key(&s, sid, headers) {
            return r;
        }
    }
    match s.secrets.get(name) {
        Some((v, _)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], v.clone()).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Secret not found"),
    }
}
