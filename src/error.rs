//! [`ApiError`]: every error the HTTP API can answer with, and the one place that maps them
//! to status codes and `{"detail": …}` bodies.
//!
//! Domain errors convert into it with `From`, so handlers use `?`. Messages are built by the
//! domain modules, which never put a value, header value, key, command text or lookup URL in
//! them; 5xx answers carry a generic body and are logged once here.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::secrets::registry::RegistryError;
use crate::secrets::source::EntryError;

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a request that is not well-formed (JSON syntax, forwarded headers, Host).
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong `X-Session-API-Key`.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404: no such route, scope or secret.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 408: the body did not arrive within the body deadline; the connection is closed.
    #[error("request body not received within {}s", .0.as_secs())]
    RequestTimeout(Duration),
    /// 413: the body is larger than the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 422: a body, path or field that is well-formed but invalid.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with FastAPI-style `[{loc, msg, type}]` details.
    #[error("invalid entry")]
    InvalidEntry(EntryError),
    /// 424: explicit secrets of a command could not be exported (`on_missing: "fail"`).
    #[error("secrets needed by the command could not be resolved")]
    MissingSecrets(Vec<crate::secrets::export::Unavailable>),
    /// 429: a bound was hit; retry later.
    #[error("{message}")]
    TooMany { message: String, retry_after: Duration },
    /// 503: not ready, draining, or a transient internal failure (generic body).
    #[error("service unavailable")]
    Unavailable,
    /// 503: the sidecar found no shell at start, so it cannot run commands; the detail tells
    /// the operator what to do (it holds nothing about the request).
    #[error("{}", crate::exec::ExecError::NoShell)]
    NoShell,
}

impl From<EntryError> for ApiError {
    fn from(e: EntryError) -> Self {
        Self::InvalidEntry(e)
    }
}

impl From<crate::exec::ExecError> for ApiError {
    fn from(e: crate::exec::ExecError) -> Self {
        if let crate::exec::ExecError::NoShell = e {
            // Warned about once at start; every command route answers the same.
            return Self::NoShell;
        }
        // Logged here once; the body stays generic.
        tracing::warn!("command could not be run: {e}");
        Self::Unavailable
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownConversation(_) | RegistryError::UnknownSecret(_) => {
                Self::NotFound(e.to_string())
            }
            RegistryError::TooManyScopes(_) | RegistryError::TooManySecrets(_) => {
                Self::TooMany { message: e.to_string(), retry_after: Duration::from_secs(1) }
            }
        }
    }
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) | Self::InvalidEntry(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MissingSecrets(_) => StatusCode::FAILED_DEPENDENCY,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::NoShell => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn detail(&self) -> Value {
        match self {
            Self::InvalidEntry(e) => json!([{ "loc": e.loc, "msg": e.msg, "type": "value_error" }]),
            other => Value::String(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, Self::NoShell) {
            tracing::warn!(status = status.as_u16(), "request failed: {self}");
        }
        let mut body = json!({ "detail": self.detail() });
        if let Self::MissingSecrets(missing) = &self {
            body["missing"] = missing.iter().map(|m| json!({"name": m.name, "error": m.error})).collect();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RequestTimeout(_) = &self {
            // The rest of the body may still come; the connection cannot be reused.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::TooMany { retry_after, .. } = &self {
            let secs = retry_after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
