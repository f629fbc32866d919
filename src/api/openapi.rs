//! `GET /openapi.json`: the API as an OpenAPI 3.1 document.
//!
//! The document is generated while the router is assembled (`utoipa_axum`): every route is
//! registered from its handler's `#[utoipa::path]` annotation, so a route is described where
//! it is registered (an integration test walks the router and fails on any route served but
//! not described), and the wire models derive `ToSchema` (the shapes serialized by
//! hand have schema-only twins in `schema`). What the annotations would repeat on every route
//! is added here in one pass, by rule ([`Document::new`]): the session-key requirement and
//! the conversation `{id}` parameter under `/api`, and the error answers of the front door
//! and the JSON extractor, all with the `{"detail": …}` body.
//!
//! The document is served without the session key, as the reference agent-server serves its
//! own: it describes routes and shapes and holds no secret, no configuration and no state.

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};

#[cfg(doc)]
use super::gate::API_KEY_HEADER;
use super::gate::{KEYED, PROBES};
use super::schema::{ErrorBody, UUID_PATTERN};

/// The name of the session-key security scheme in the document.
const SESSION_KEY_SCHEME: &str = "session_key";

/// The session-key header ([`API_KEY_HEADER`]) as the reference spells it.
const SESSION_KEY_HEADER: &str = "X-Session-API-Key";

/// The prefix of every conversation-scoped path.
const CONVERSATION_PREFIX: &str = "/api/conversations/{id}";

/// The parts of the document no route adds: title, version, tags, the error schema.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "secret-sidecar",
        description = "Keeps secret descriptors, resolves them on demand, runs commands with \
            secrets exported as environment variables, and masks every secret value in what \
            they print."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Probes and server info; no session key"),
        (name = "meta", description = "This document; no session key"),
        (name = "secrets", description = "Secret descriptors of a conversation or of the whole sandbox"),
        (name = "conversations", description = "Conversation scopes"),
        (name = "commands", description = "Commands run with secrets, their output masked"),
        (name = "mask", description = "Masking text with the values held"),
        (name = "bash", description = "The reference agent-server's bash routes, with secrets and masking"),
    )
)]
pub(crate) struct ApiDoc;

/// The serialized document, handed to [`document`] as a request extension.
#[derive(Clone)]
pub(crate) struct Document(Bytes);

impl Document {
    /// Completes `doc` (see the module docs) and serializes it once.
    pub(crate) fn new(mut doc: utoipa::openapi::OpenApi) -> Self {
        complete(&mut doc);
        // The document is plain data built from string literals: it always serializes.
        Self(Bytes::from(doc.to_json().unwrap_or_else(|_| "{}".to_owned())))
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "openapi", responses(
    (status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json",
        body = Object),
))]
pub(crate) async fn document(Extension(doc): Extension<Document>) -> Response {
    ([(CONTENT_TYPE, "application/json")], doc.0).into_response()
}

/// Adds what every route has by rule: security, the `{id}` parameter, unique operation ids
/// and the error answers that do not depend on the handler.
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SESSION_KEY_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(SESSION_KEY_HEADER))),
    );
    for (path, item) in &mut doc.paths.paths {
        for op in operations(item) {
            complete_operation(path, op);
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn complete_operation(path: &str, op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let api = path.starts_with("/api/") || KEYED.contains(&path);
    let conversation = path.starts_with(CONVERSATION_PREFIX);
    if conversation {
        op.parameters.get_or_insert_with(Vec::new).insert(0, conversation_id());
    }
    // The scoped handlers are mounted twice; their ids must stay unique.
    if api && !path.starts_with("/api/bash/") {
        if let Some(id) = &mut op.operation_id {
            *id = format!("{}_{id}", if conversation { "conversation" } else { "sandbox" });
        }
    }
    if api {
        op.security = Some(vec![SecurityRequirement::new(SESSION_KEY_SCHEME, Vec::<String>::new())]);
    }
    let mut errors = vec![(400, "A forwarded request, a foreign `Host`, or a malformed body or path")];
    if api {
        errors.push((401, "Missing or wrong `X-Session-API-Key`"));
    }
    if !PROBES.contains(&path) {
        errors.push((408, "The body did not arrive in time"));
        errors.push((413, "The body is over the size limit"));
        errors.push((429, "Too many requests in flight; see `Retry-After`"));
    }
    if has_body {
        errors.push((415, "The body is not `application/json`"));
    }
    if has_body || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        errors.push((422, "A field or path parameter is invalid; `detail` names it"));
    }
    if api {
        errors.push((503, "The service could not complete the request (generic body)"));
    }
    for (status, description) in errors {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description).into());
    }
}

fn conversation_id() -> Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The conversation: a UUID, dashed or 32 hex digits"))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(UUID_PATTERN))))
        .build()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gate::API_KEY_HEADER;

    #[test]
    fn the_documented_header_is_the_checked_one() {
        assert!(SESSION_KEY_HEADER.eq_ignore_ascii_case(API_KEY_HEADER));
    }
}
