//! Unauthenticated health routes (*(ref)* paths and bodies): liveness, readiness and server
//! info.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /alive`, `GET /health`.
pub async fn alive() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 once listening with state loaded, 503 before and while draining.
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if state.is_ready() {
        Ok((StatusCode::OK, Json(json!({"status": "ready"}))))
    } else {
        Err(ApiError::Unavailable)
    }
}

/// `GET /server_info`: name, version, uptime in seconds.
pub async fn server_info(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs_f64(),
    }))
}
