//! `GET /metrics`: the service's metrics in Prometheus text format, behind the session key
//! (the front door checks it, as for `/api/*`).

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::{ApiError, Internal};
use crate::metrics;
use crate::state::AppState;

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state.metrics.encode().map_err(Internal::Metrics)?;
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}

/// The metrics route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}
