//! Unauthenticated health routes (*(ref)* paths and bodies): liveness, readiness and server
//! info.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schema::ErrorBody;
use crate::error::ApiError;
use crate::state::AppState;

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (liveness) or `ready`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Name, version and uptime.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerInfo {
    name: &'static str,
    version: &'static str,
    /// Seconds since start.
    uptime: f64,
}

/// `GET /alive`.
#[utoipa::path(get, path = "/alive", tag = "health", responses((status = 200, body = Status)))]
pub(crate) async fn alive() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// `GET /health`: the same as `/alive` *(ref)*.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Status)))]
pub(crate) async fn health() -> Json<Status> {
    alive().await
}

/// `GET /ready`: 200 once listening with state loaded, 503 before and while draining.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, body = Status),
    (status = 503, description = "Not ready yet, or draining", body = ErrorBody),
))]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.is_ready() { Ok(Json(Status { status: "ready" })) } else { Err(ApiError::NotReady) }
}

/// `GET /server_info`: name, version, uptime in seconds.
#[utoipa::path(get, path = "/server_info", tag = "health", responses((status = 200, body = ServerInfo)))]
pub(crate) async fn server_info(State(state): State<AppState>) -> Json<ServerInfo> {
    Json(ServerInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs_f64(),
    })
}

/// The unauthenticated probes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alive))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(server_info))
}
