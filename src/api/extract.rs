//! Extractors that reject with our error shape instead of axum's plain-text rejections.
//!
//! [`JsonBody<T>`] checks the content type (415), reads at most the body limit (413), parses
//! JSON (400 with serde_json's syntax message, which names a line and column, never the
//! input; a duplicate object key is a syntax error too, see `unique_keys`), then deserializes
//! the typed model `T`. A schema error is a 422 naming the failing field path; serde's own
//! message can quote the submitted value (`invalid type: string "…"`), so only the parts
//! that cannot are kept ([`field_error`]). [`PathParams`] does the same for path segments.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, FieldError};
use crate::secrets::registry::{ConversationId, ScopeId};
use crate::secrets::value::{SecretName, is_env_name};
use crate::state::AppState;

/// A JSON request body deserialized into the model `T`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
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
        // Syntax first, for the whole body (400), then the schema (422).
        let value: Value =
            super::unique_keys::parse(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        // Every body of this API is an object; a derived model would also take its fields
        // from a JSON array (`["ls"]` as a command), which the schema does not allow.
        if value.is_array() {
            return Err(ApiError::Invalid(FieldError::new("body", "expected an object")));
        }
        serde_path_to_error::deserialize(value).map(Self).map_err(|e| ApiError::Invalid(field_error(&e)))
    }
}

/// The 422 for a schema error: the field path (map keys that are not variable names shown
/// as `<invalid name>`) and the part of serde's message that cannot hold the value.
fn field_error(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    use serde_path_to_error::Segment;
    let mut loc = String::new();
    for segment in e.path().iter() {
        match segment {
            Segment::Seq { index } => loc.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !loc.is_empty() {
                    loc.push('.');
                }
                loc.push_str(if is_env_name(key) { key } else { "<invalid name>" });
            }
            Segment::Unknown => loc.push_str(".?"),
        }
    }
    if loc.is_empty() {
        loc.push_str("body");
    }
    let message = e.inner().to_string();
    // serde_json appends " at line L column C"; values only ever appear before ", expected".
    let message = message.split(" at line ").next().unwrap_or_default();
    let msg = if message.starts_with("missing field") || message.starts_with("duplicate field") {
        message.to_owned()
    } else if let Some(i) = message.find(", expected ") {
        message[i + 2..].to_owned()
    } else {
        "invalid value".to_owned()
    };
    FieldError::new(loc, msg)
}

/// The path parameters of a route, checked by the accessors below.
pub(crate) struct PathParams(HashMap<String, String>);

impl FromRequestParts<AppState> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| Self(p))
            .map_err(|_| ApiError::BadPath)
    }
}

impl PathParams {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }

    /// A path parameter as it is (empty when absent).
    pub(crate) fn raw(&self, key: &str) -> &str {
        self.get(key)
    }

    /// The conversation named by `{id}`.
    pub(crate) fn conversation(&self) -> Result<ConversationId, ApiError> {
        ConversationId::parse(self.get("id")).ok_or_else(|| {
            FieldError::new("conversation id", "must be a UUID (dashed or 32 hex digits)").into()
        })
    }

    /// The scope of the route: a conversation when `{id}` is present, else sandbox-wide.
    pub(crate) fn scope(&self) -> Result<ScopeId, ApiError> {
        if self.0.contains_key("id") {
            self.conversation().map(ScopeId::Conversation)
        } else {
            Ok(ScopeId::Sandbox)
        }
    }

    /// The secret named by `{name}`.
    pub(crate) fn name(&self) -> Result<SecretName, ApiError> {
        SecretName::parse(self.get("name")).map_err(|e| FieldError::new("name", e.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Model {
        command: String,
        timeout: Option<u64>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        list: Vec<u64>,
    }

    fn error_of(v: Value) -> String {
        match serde_path_to_error::deserialize::<_, Model>(v) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => field_error(&e).to_string(),
        }
    }

    #[test]
    fn field_errors_name_the_path_and_never_echo() {
        let cases = [
            (json!({}), "body: missing field `command`"),
            (json!({"command": "x", "timeout": "canary-1"}), "timeout: expected u64"),
            (json!({"command": "x", "timeout": -5}), "timeout: expected u64"),
            (json!({"command": "x", "timeout": 1.5}), "timeout: expected u64"),
            (json!({"command": "x", "env": {"A": 5}}), "env.A: expected a string"),
            (json!({"command": "x", "env": {"canary value": 5}}), "env.<invalid name>: expected a string"),
            (json!({"command": "x", "list": [1, "canary-2"]}), "list[1]: expected u64"),
            (json!({"command": null}), "command: expected a string"),
            (json!("canary-3"), "body: expected struct Model"),
        ];
        for (body, want) in cases {
            let got = error_of(body.clone());
            assert_eq!(got, want, "{body}");
            assert!(!got.contains("canary"), "{got}");
        }
    }
}
