//! The front door every request passes, in this order: forwarded headers (400), `Host`
//! (400), then for `/api/*` the session key (401) — before routing, so an unauthenticated
//! caller cannot tell which routes exist — and a declared body size over the limit (413,
//! before any byte is read); then the body is read, within the body deadline (408) and the
//! size limit (413); only then the concurrency bound (429).
//!
//! Reading the body before taking a request slot is what keeps a slow sender from holding a
//! slot: a slot is held only while a request is being handled, never while its body trickles
//! in. What a stalled body holds instead is its connection and the bytes it sent (at most the
//! body limit), until the body deadline closes it.
//!
//! It also logs one line per request with the route *template*, never the raw path or query.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_LENGTH, HOST};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Header carrying the caller's key (*(ref)* name; matched case-insensitively).
pub const API_KEY_HEADER: &str = "x-session-api-key";

/// Paths that are always served, even when the service is saturated.
const PROBES: &[&str] = &["/alive", "/health", "/ready"];

/// The middleware; see the module docs.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = match check(&state, &req) {
        Err(e) => e.into_response(),
        Ok(()) if PROBES.contains(&req.uri().path()) => next.run(req).await,
        Ok(()) => match read_body(&state, req).await {
            Err(e) => e.into_response(),
            Ok(req) => match state.request_slots.clone().try_acquire_owned() {
                Ok(_permit) => next.run(req).await,
                Err(_) => ApiError::TooMany {
                    message: "too many requests in flight".into(),
                    retry_after: std::time::Duration::from_secs(1),
                }
                .into_response(),
            },
        },
    };
    tracing::debug!(
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    if headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded") {
        return Err(ApiError::BadRequest("forwarded requests are not accepted".into()));
    }
    if let Some(host) = headers.get(HOST) {
        let ok = host.to_str().is_ok_and(|h| state.hosts.allows(h));
        if !ok {
            return Err(ApiError::BadRequest("host header is not the listen address or localhost".into()));
        }
    }
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
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

/// Reads the whole body within the body deadline and the size limit, and hands the request on
/// with the bytes in memory (extractors then read them without waiting).
async fn read_body(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let (limit, deadline) = (state.http.max_body_bytes, state.http.body_timeout);
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => return Err(ApiError::RequestTimeout(deadline)),
        Ok(Err(e)) if is_length_limit(&e) => return Err(ApiError::PayloadTooLarge(limit)),
        Ok(Err(_)) => return Err(ApiError::BadRequest("request body could not be read".into())),
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
