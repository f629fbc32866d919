//! [`ApiError`]: every error the HTTP API can answer with, and the one place that maps them
//! to status codes and `{"detail": …}` bodies.
//!
//! Domain errors ([`RunError`], [`RegistryError`], [`EntryError`], …) convert into it with
//! `From`, so handlers use `?`; they carry names, bounds and causes, never a value, header
//! value, key, command text or lookup URL. An internal failure (5xx) is logged here, once,
//! with its cause, and answered with a generic body.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::bash::SearchError;
use crate::persist::{PersistError, UpdateError};
use crate::run::RunError;
use crate::secrets::registry::RegistryError;
use crate::secrets::source::EntryError;

/// A field of a request that is well-formed but invalid: where, and which rule it broke.
#[derive(Debug, thiserror::Error)]
#[error("{loc}: {msg}")]
pub(crate) struct FieldError {
    /// The field path (`timeout`, `env.NAME`, `id`).
    pub loc: Cow<'static, str>,
    /// The rule, in words of our own (never the submitted value).
    pub msg: Cow<'static, str>,
}

impl FieldError {
    /// A field error at `loc`.
    pub(crate) fn new(loc: impl Into<Cow<'static, str>>, msg: impl Into<Cow<'static, str>>) -> Self {
        Self { loc: loc.into(), msg: msg.into() }
    }
}

/// What a 404 did not find.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub(crate) enum NotFound {
    #[error("Not Found")]
    Route,
    #[error("bash event not found")]
    BashEvent,
}

/// A failure inside the service; answered 503 with a generic body, its cause logged once.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Internal {
    #[error("masking failed")]
    Mask(#[source] crate::mask::MaskError),
    #[error("a background task failed")]
    Task,
    #[error("a response could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the bash event store refused an event")]
    EventStore,
    #[error("the metrics could not be encoded")]
    Metrics(#[source] std::fmt::Error),
}

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: `X-Forwarded-For` or `Forwarded` present.
    #[error("forwarded requests are not accepted")]
    Forwarded,
    /// 400: a `Host` that is neither the listen address nor `localhost`.
    #[error("host header is not the listen address or localhost")]
    ForeignHost,
    /// 400: the body is not JSON (serde_json's syntax message names a line and column only).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// 400: the body could not be read.
    #[error("request body could not be read")]
    UnreadableBody,
    /// 400: a path segment is not UTF-8 after percent-decoding.
    #[error("path is not valid UTF-8 after percent-decoding")]
    BadPath,
    /// 401: missing or wrong `X-Session-API-Key`.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404: no such route or event (scopes and secrets: [`RegistryError`]).
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// 405: the route exists, the method does not.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 408: the body did not arrive within the body deadline.
    #[error("request body not received within {} seconds", .0.as_secs())]
    RequestTimeout(Duration),
    /// 413: the body is larger than the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 422: a field that is well-formed but invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// 422 with FastAPI-style `[{loc, msg, type}]` details.
    #[error("invalid entry")]
    InvalidEntry(#[from] EntryError),
    /// 422: a bad search parameter of the bash routes.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// 404 or 429 from the registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// 422, 424, 429 or 503 from the command pipeline.
    #[error(transparent)]
    Run(#[from] RunError),
    /// 429: `/mask` is rate-limited.
    #[error("too many mask requests")]
    MaskRate(Duration),
    /// 429: too many requests in flight.
    #[error("too many requests in flight")]
    Busy,
    /// 503: not ready, or draining.
    #[error("service unavailable")]
    NotReady,
    /// 503: an internal failure (generic body, cause logged once).
    #[error("service unavailable")]
    Internal(#[from] Internal),
    /// 507: an update could not be written to the state file (and was not applied).
    #[error(transparent)]
    Persist(#[from] PersistError),
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Registry(e) => Self::Registry(e),
            UpdateError::Persist(e) => Self::Persist(e),
        }
    }
}

impl ApiError {
    /// The status code of this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Forwarded
            | Self::ForeignHost
            | Self::MalformedJson(_)
            | Self::UnreadableBody
            | Self::BadPath => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) | Self::InvalidEntry(_) | Self::Search(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Registry(e) => match e {
                RegistryError::UnknownConversation(_) | RegistryError::UnknownSecret(_) => {
                    StatusCode::NOT_FOUND
                }
                RegistryError::TooManyScopes(_) | RegistryError::TooManySecrets(_) => {
                    StatusCode::TOO_MANY_REQUESTS
                }
            },
            Self::Run(e) => match e {
                RunError::Timeout { .. } | RunError::Cwd | RunError::TooLarge(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                RunError::Missing(_) => StatusCode::FAILED_DEPENDENCY,
                RunError::Busy => StatusCode::TOO_MANY_REQUESTS,
                RunError::Mask(_) | RunError::Exec(_) | RunError::NoShell => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::MaskRate(_) | Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::NotReady | Self::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Persist(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// Seconds a 429 asks the caller to wait.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::MaskRate(wait) => Some(wait.as_secs().max(1)),
            _ if self.status() == StatusCode::TOO_MANY_REQUESTS => Some(1),
            _ => None,
        }
    }

    fn detail(&self) -> Value {
        match self {
            Self::InvalidEntry(e) => json!([{ "loc": e.loc, "msg": e.msg, "type": "value_error" }]),
            // What the operator must do; it holds nothing about the request.
            Self::Run(RunError::NoShell) => Value::String(RunError::NoShell.to_string()),
            // What happened to the update; the cause (a path, an errno) is logged by the writer.
            Self::Persist(e) => Value::String(e.to_string()),
            // Internal causes are logged, never sent.
            _ if self.status().is_server_error() => Value::String("service unavailable".into()),
            other => Value::String(other.to_string()),
        }
    }

    /// Logs a server-side failure once, with its cause chain (causes carry no values).
    fn log(&self) {
        let mut causes = String::new();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            causes.push_str(": ");
            causes.push_str(&e.to_string());
            source = e.source();
        }
        tracing::warn!(status = self.status().as_u16(), "request failed: {self}{causes}");
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Not ready and no shell are states, not failures: warned about once elsewhere.
        if status.is_server_error() && !matches!(self, Self::NotReady | Self::Run(RunError::NoShell)) {
            self.log();
        }
        let mut body = json!({ "detail": self.detail() });
        if let Self::Run(RunError::Missing(missing)) = &self {
            body["missing"] =
                missing.iter().map(|m| json!({"name": m.name, "error": m.to_string()})).collect();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
