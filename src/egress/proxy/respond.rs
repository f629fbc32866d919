//! The proxy's own answers: a status and a one-line reason, never anything from the request.

use http::header::{CONTENT_TYPE, PROXY_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::body::{ProxyBody, full};

/// A plain-text answer with `status` and `reason`.
pub(crate) fn status(status: StatusCode, reason: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{reason}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// 407: the request presented no live credential.
pub(crate) fn proxy_auth_required() -> Response<ProxyBody> {
    let mut response = status(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "this proxy needs the credential of a running command",
    );
    response
        .headers_mut()
        .insert(PROXY_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"secret-sidecar egress\""));
    response
}
