//! The HTTP API: [`router`] assembles every route behind the front door (`gate`).
//!
//! One file per group of routes, each with its own `routes()`. The groups that exist for a
//! conversation and sandbox-wide alike (secrets, resolve, commands, mask) are nested twice:
//! under `/api/conversations/{id}` and under `/api`. Handlers are thin — they extract a typed
//! model, call a component, and answer a typed model; errors become responses only in
//! `crate::error`. Every route is registered from its handler's OpenAPI annotation, so the
//! router and `/openapi.json` are built from the same list (`openapi`).

mod bash;
mod commands;
mod extract;
mod frames;
mod gate;
mod health;
mod mask;
mod metrics;
mod openapi;
mod resolve;
mod schema;
mod secrets;
mod unique_keys;

use axum::{Extension, Router, middleware};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, NotFound};
use crate::state::AppState;

pub use gate::API_KEY_HEADER;

/// Every route of the service, with the front door applied to matched and unmatched paths
/// alike (so 400/401 come before 404/405).
pub fn router(state: AppState) -> Router {
    let (routes, doc) = described().split_for_parts();
    routes
        .layer(Extension(openapi::Document::new(doc)))
        .fallback(|| async { ApiError::NotFound(NotFound::Route) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(gate::FrontDoor::new(state.clone()), gate::gate))
        .with_state(state)
}

/// Every route, each with its OpenAPI description.
fn described() -> OpenApiRouter<AppState> {
    let conversation = scoped().routes(routes!(secrets::drop_conversation));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::routes())
        .merge(metrics::routes())
        .routes(routes!(openapi::document))
        .nest("/api/conversations/{id}", conversation)
        .nest("/api", scoped())
        .merge(bash::routes())
}

/// The routes a conversation and the sandbox-wide scope both have, relative to the scope.
fn scoped() -> OpenApiRouter<AppState> {
    secrets::routes().merge(resolve::routes()).merge(commands::routes()).merge(mask::routes())
}
