//! The HTTP API: [`router`] assembles every route behind the front door (`gate`).
//!
//! One file per group of routes; handlers are thin — they extract, call a component, and
//! turn the result into JSON. Errors become responses only in `crate::error`.

mod bash;
mod command_request;
mod commands;
mod env_fit;
mod extract;
mod frames;
mod gate;
mod health;
mod mask;
mod resolve;
mod secrets;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::state::AppState;

pub use gate::API_KEY_HEADER;
pub use mask::RateLimit;

/// Every route of the service, with the front door applied to matched and unmatched paths
/// alike (so 400/401 come before 404/405).
pub fn router(state: AppState) -> Router {
    let secrets = Router::new()
        .route("/api/conversations/{id}/secrets", post(secrets::update).get(secrets::list))
        .route("/api/conversations/{id}/secrets/{name}", delete(secrets::delete))
        .route("/api/conversations/{id}/secrets/resolve", post(resolve::resolve))
        .route("/api/conversations/{id}/secrets/refresh", post(resolve::refresh))
        .route("/api/conversations/{id}", delete(secrets::drop_conversation))
        .route("/api/conversations/{id}/commands", post(commands::run))
        .route("/api/conversations/{id}/commands/stream", post(commands::stream))
        .route("/api/conversations/{id}/mask", post(mask::mask))
        .route("/api/commands", post(commands::run))
        .route("/api/commands/stream", post(commands::stream))
        .route("/api/mask", post(mask::mask))
        .route("/api/bash/start_bash_command", post(bash::start_bash_command))
        .route("/api/bash/execute_bash_command", post(bash::execute_bash_command))
        .route("/api/bash/bash_events/search", get(bash::search))
        .route("/api/bash/bash_events/{event_id}", get(bash::get_event))
        .route("/api/secrets", post(secrets::update).get(secrets::list))
        .route("/api/secrets/{name}", delete(secrets::delete))
        .route("/api/secrets/resolve", post(resolve::resolve))
        .route("/api/secrets/refresh", post(resolve::refresh));
    Router::new()
        .route("/alive", get(health::alive))
        .route("/health", get(health::alive))
        .route("/ready", get(health::ready))
        .route("/server_info", get(health::server_info))
        .merge(secrets)
        .fallback(|| async { ApiError::NotFound("Not Found".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), gate::gate))
        .with_state(state)
}
