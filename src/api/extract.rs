//! Extractors that reject with our error shape instead of axum's plain-text rejections.
//!
//! [`JsonBody`] checks the content type (415), reads at most the body limit (413), and
//! parses JSON into a `serde_json::Value` (400). It parses to `Value` on purpose: syntax
//! errors from serde_json name a line and column, never the input, while typed
//! deserialization errors quote the offending value — schema checks are done afterwards by
//! hand, with messages that name the field only. [`PathParams`] does the same for path
//! segments.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::Value;

use crate::error::ApiError;
use crate::secrets::registry::{ConversationId, ScopeId};
use crate::secrets::value::SecretName;
use crate::state::AppState;

/// A JSON request body, parsed but not yet checked against a schema.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if json != Some(true) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.http.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(limit))?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))
    }
}

/// The path parameters of a route, checked by the accessors below.
pub struct PathParams(HashMap<String, String>);

impl FromRequestParts<AppState> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| Self(p))
            .map_err(|_| ApiError::BadRequest("path is not valid UTF-8 after percent-decoding".into()))
    }
}

impl PathParams {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }

    /// A path parameter as it is (empty when absent).
    pub fn raw(&self, key: &str) -> &str {
        self.get(key)
    }

    /// The conversation scope named by `{id}`.
    pub fn conversation(&self) -> Result<ScopeId, ApiError> {
        ConversationId::parse(self.get("id")).map(ScopeId::Conversation).ok_or_else(|| {
            ApiError::Unprocessable("conversation id must be a UUID (dashed or 32 hex digits)".into())
        })
    }

    /// The scope of the route: a conversation when `{id}` is present, else sandbox-wide.
    pub fn scope(&self) -> Result<ScopeId, ApiError> {
        if self.0.contains_key("id") { self.conversation() } else { Ok(ScopeId::Sandbox) }
    }

    /// The secret named by `{name}`.
    pub fn name(&self) -> Result<SecretName, ApiError> {
        SecretName::parse(self.get("name")).map_err(|e| ApiError::Unprocessable(format!("secret {e}")))
    }
}
