//! `POST …/mask`: `{"text": "..."}` → `{"text": "<masked>"}` with the global mask set.
//!
//! Rate-limited (a token bucket shared by all callers), so the route cannot become an
//! oracle for guessing short values one request at a time. Fails closed: if the text cannot
//! be masked, it is not returned.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, PathParams};
use super::schema::ErrorBody;
use crate::error::{ApiError, Internal};
use crate::state::AppState;

/// `{"text": "..."}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MaskBody {
    text: String,
}

/// `{"text": "<masked>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MaskResponse {
    text: String,
}

/// `POST /api/conversations/{id}/mask` and `POST /api/mask`.
#[utoipa::path(post, path = "/mask", tag = "mask", request_body = MaskBody, responses(
    (status = 200, description = "The text with every held value masked", body = MaskResponse),
    (status = 429, description = "Rate-limited; see `Retry-After`", body = ErrorBody),
))]
pub(crate) async fn mask(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<MaskBody>,
) -> Result<Json<MaskResponse>, ApiError> {
    params.scope()?;
    state.mask_rate.take().map_err(ApiError::MaskRate)?;
    let masked = state.masks.masker().mask(body.text.as_bytes()).map_err(Internal::Mask)?;
    Ok(Json(MaskResponse { text: String::from_utf8_lossy(&masked).into_owned() }))
}

/// The mask route of one scope, relative to it.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mask))
}
