//! Unauthenticated health routes (*(ref)* paths and bodies): liveness, readiness and server
//! info.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    status: &'static str,
}

/// Name, version and uptime.
#[derive(Debug, Serialize)]
pub(crate) struct ServerInfo {
    name: &'static str,
    version: &'static str,
    /// Seconds since start.
    uptime: f64,
}

/// `GET /alive`, `GET /health`.
pub(crate) async fn alive() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// `GET /ready`: 200 once listening with state loaded, 503 before and while draining.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.is_ready() { Ok(Json(Status { status: "ready" })) } else { Err(ApiError::NotReady) }
}

/// `GET /server_info`: name, version, uptime in seconds.
pub(crate) async fn server_info(State(state): State<AppState>) -> Json<ServerInfo> {
    Json(ServerInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs_f64(),
    })
}

/// The unauthenticated probes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/alive", get(alive))
        .route("/health", get(alive))
        .route("/ready", get(ready))
        .route("/server_info", get(server_info))
}
