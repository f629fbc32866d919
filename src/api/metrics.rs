//! `GET /metrics`: the service's metrics in Prometheus text format, behind the session key
//! (the front door checks it, as for `/api/*`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Internal};
use crate::metrics;
use crate::state::AppState;

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
))]
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state.metrics.encode().map_err(Internal::Metrics)?;
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}

/// The metrics route.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}
