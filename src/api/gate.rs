//! The front door every request passes, in this order: forwarded headers (400), `Host`
//! (400), then for `/api/*` and `/metrics` the session key (401) — before routing, so an
//! unauthenticated caller cannot tell which routes exist — and a declared body size over the
//! limit (413, before any byte is read); then the body is read, within the body deadline
//! (408) and the size limit (413); only then the concurrency bound (429).
//!
//! Reading the body before taking a request slot is what keeps a slow sender from holding a
//! slot: a slot is held only while a request is being handled, never while its body trickles
//! in. What a stalled body holds instead is its connection and the bytes it sent (at most the
//! body limit), until the body deadline closes it.
//!
//! It also logs one line per request (method, route *template*, status, latency and a request
//! id), never the raw path or query, and returns the id as `X-Request-Id`; a well-formed id
//! the caller sent is kept. The same line is where the request is counted in the metrics, by
//! the same route template.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, HOST};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ListenAddr;
use crate::error::ApiError;
use crate::metrics::{Method, Route};
use crate::state::AppState;

/// Header carrying the caller's key (*(ref)* name; matched case-insensitively).
pub const API_KEY_HEADER: &str = "x-session-api-key";

/// Header carrying the request id, echoed on every answer.
const REQUEST_ID_HEADER: &str = "x-request-id";

/// Paths that are always served, even when the service is saturated (a scrape most of all
/// needs to see a saturated service).
pub(super) const PROBES: &[&str] = &["/alive", "/health", "/ready", "/metrics"];

/// Paths outside `/api` that need the session key too.
pub(super) const KEYED: &[&str] = &["/metrics"];

/// What the front door needs: the service state and the accepted `Host` names.
#[derive(Clone)]
pub(crate) struct FrontDoor {
    state: AppState,
    hosts: Arc<HostPolicy>,
}

impl FrontDoor {
    /// The front door of `state`'s service.
    pub(crate) fn new(state: AppState) -> Self {
        let hosts = Arc::new(HostPolicy::for_listen(&state.listen));
        Self { state, hosts }
    }
}

/// The middleware; see the module docs.
pub(crate) async fn gate(State(door): State<FrontDoor>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let state = &door.state;
    let method = req.method().clone();
    let route = Route::of(req.extensions().get::<MatchedPath>());
    let request_id = request_id(req.headers());
    let mut response = match check(&door, &req) {
        Err(e) => e.into_response(),
        Ok(()) if PROBES.contains(&req.uri().path()) => next.run(req).await,
        Ok(()) => match read_body(state, req).await {
            Err(e) => e.into_response(),
            Ok(req) => match state.request_slots.clone().try_acquire_owned() {
                Ok(_permit) => next.run(req).await,
                Err(_) => ApiError::Busy.into_response(),
            },
        },
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // One line and one count per request: the route template, never the raw path or query.
    let (status, elapsed) = (response.status().as_u16(), started.elapsed());
    tracing::info!(
        method = %method,
        route = %route,
        status,
        ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id,
        "request"
    );
    state.metrics.http.observe(Method::of(&method), &route, status, elapsed);
    response
}

/// The caller's `X-Request-Id` when it is well-formed (1 to 64 of `A-Z a-z 0-9 . _ -`), else
/// a new random one; it is logged and returned, so nothing else may ride in it.
fn request_id(headers: &axum::http::HeaderMap) -> String {
    let given = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|id| {
        (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    given.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

fn check(door: &FrontDoor, req: &Request) -> Result<(), ApiError> {
    let state = &door.state;
    let headers = req.headers();
    if headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded") {
        return Err(ApiError::Forwarded);
    }
    if let Some(host) = headers.get(HOST) {
        if !host.to_str().is_ok_and(|h| door.hosts.allows(h)) {
            return Err(ApiError::ForeignHost);
        }
    }
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") || KEYED.contains(&path) {
        let presented = headers.get(API_KEY_HEADER).map(|v| v.as_bytes());
        if !presented.is_some_and(|k| state.keys.verify(k)) {
            return Err(ApiError::Unauthorized);
        }
    }
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.http.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(state.http.max_body_bytes));
    }
    Ok(())
}

/// Which `Host` headers are accepted (DNS-rebinding guard).
#[derive(Clone, Debug)]
pub(crate) enum HostPolicy {
    /// Any host: unix sockets and wildcard binds (which require a configured key).
    Any,
    /// Only these host names (ports are not compared: a rebinding attack changes the name).
    Names(Vec<String>),
}

impl HostPolicy {
    fn for_listen(listen: &ListenAddr) -> Self {
        match listen {
            ListenAddr::Unix(_) => Self::Any,
            ListenAddr::Tcp(a) if a.ip().is_unspecified() => Self::Any,
            ListenAddr::Tcp(a) => {
                let ip = match a.ip() {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                };
                Self::Names(vec![ip, "localhost".to_owned()])
            }
        }
    }

    /// True when a request with this `Host` header value may be served.
    fn allows(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Names(names) => {
                let name = match host.rfind(':') {
                    // Strip a port, but not the colons of a bracketed IPv6 literal.
                    Some(i) if !host[i..].contains(']') => &host[..i],
                    _ => host,
                };
                names.iter().any(|n| n.eq_ignore_ascii_case(name.trim_end_matches('.')))
            }
        }
    }
}

/// Reads the whole body within the body deadline and the size limit, and hands the request on
/// with the bytes in memory (extractors then read them without waiting).
async fn read_body(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let (limit, deadline) = (state.http.max_body_bytes, state.http.body_timeout);
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => return Err(ApiError::RequestTimeout(deadline)),
        Ok(Err(e)) if is_length_limit(&e) => return Err(ApiError::PayloadTooLarge(limit)),
        Ok(Err(_)) => return Err(ApiError::UnreadableBody),
        Ok(Ok(bytes)) => bytes,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_policy() {
        let p = HostPolicy::for_listen(&ListenAddr::Tcp("127.0.0.1:8001".parse().unwrap()));
        for ok in ["127.0.0.1:8001", "127.0.0.1", "localhost", "LOCALHOST:9", "localhost."] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.example:8001", "127.0.0.2:8001", "localhost.evil.example", ""] {
            assert!(!p.allows(bad), "{bad}");
        }
        let p6 = HostPolicy::for_listen(&ListenAddr::Tcp("[::1]:8001".parse().unwrap()));
        assert!(p6.allows("[::1]:8001") && p6.allows("[::1]") && !p6.allows("::1x"));
        assert!(HostPolicy::for_listen(&ListenAddr::Tcp("0.0.0.0:1".parse().unwrap())).allows("anything"));
    }
}
