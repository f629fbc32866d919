//! Schema-only models for `/openapi.json`: the wire shapes that are not written by a derived
//! serde model, so that the document can still describe them.
//!
//! Three kinds of shape live here: the descriptor body of `POST …/secrets` (parsed by hand in
//! `crate::secrets::source`, which keeps serde's value-quoting messages out of error bodies),
//! the bash events (serialized by hand in `crate::bash::model` to match the reference key for
//! key), and the `{"detail": …}` error body (built in `crate::error`). None of these types is
//! ever constructed: they exist for their `ToSchema` impls only. Invariant: each mirrors the
//! code that really reads or writes the shape; the integration tests check real answers
//! against these schemas, so a drift fails there.

// Never constructed: the types are read only by the `ToSchema` derive.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a conversation id must match: a UUID, dashed or as 32 hex digits.
pub(crate) const UUID_PATTERN: &str =
    "^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$";

/// A secret name: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, and not one that changes how a shell,
/// loader or interpreter runs (`PATH`, `HOME`, `LD_*`, `PYTHONPATH`, …).
#[derive(Deserialize, ToSchema)]
#[schema(as = SecretName, pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
pub(crate) struct NameSchema(String);

/// Every error answer: `{"detail": …}`, FastAPI style.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// A message naming the thing at fault, or (for an invalid secret entry) a list of
    /// `{loc, msg, type}`. Never a secret value, header value, key, command text or URL.
    detail: Detail,
    /// Only on a 424: the explicitly named secrets that could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    missing: Option<Vec<MissingSecret>>,
}

/// The `detail` of an error: a message or a list of field errors.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Detail {
    /// A message.
    Message(String),
    /// FastAPI-style validation errors.
    Fields(Vec<FieldDetail>),
}

/// One validation error: where (`["body", "secrets", NAME, field]`) and which rule it broke.
#[derive(Serialize, ToSchema)]
pub(crate) struct FieldDetail {
    loc: Vec<String>,
    msg: String,
    /// Always `value_error`.
    #[serde(rename = "type")]
    kind: String,
}

/// A secret a command named that could not be resolved, and why.
#[derive(Serialize, ToSchema)]
pub(crate) struct MissingSecret {
    name: String,
    error: String,
}

/// The body of `POST …/secrets`: named entries, merged into the scope all-or-nothing.
///
/// Names match `^[A-Za-z_][A-Za-z0-9_]{0,127}$` and are not one that changes how a shell or
/// loader runs (`PATH`, `LD_*`, `BASH_ENV`, `HOME`, …).
#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateBody {
    #[schema(value_type = BTreeMap<NameSchema, SecretEntry>)]
    secrets: BTreeMap<String, SecretEntry>,
}

/// One descriptor: a bare string (a `StaticSecret` value), a `StaticSecret` object (its
/// `kind` may be left out when `value` is given), or a `LookupSecret` object. Unknown fields
/// are ignored.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum SecretEntry {
    /// The value of a `StaticSecret`.
    Value(String),
    /// A value given inline.
    Static(StaticSecretEntry),
    /// A value fetched from a URL when a command needs it.
    Lookup(LookupSecretEntry),
}

/// `StaticSecret`: `"**********"`, `""` and whitespace-only values mean "no value" (the
/// entry exports nothing and shadows an inherited one).
#[derive(Deserialize, ToSchema)]
#[schema(as = StaticSecret)]
pub(crate) struct StaticSecretEntry {
    #[serde(default)]
    #[schema(nullable = false)]
    kind: Option<StaticKind>,
    /// At most `--max-value-bytes`, without NUL; `null` means no value.
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: Option<String>,
    /// Egress mode: the hosts the value may be sent to (exact names or `*.` wildcards not over
    /// a public suffix; no IP literals). A bound value must be at least 16 bytes.
    #[serde(default)]
    egress_hosts: Option<Vec<String>>,
    /// Header names the proxy may put the value in, besides `Authorization`.
    #[serde(default)]
    egress_headers: Option<Vec<String>>,
    /// Query parameter names the proxy may put the value in.
    #[serde(default)]
    egress_query: Option<Vec<String>>,
}

/// `LookupSecret`: `GET url` with `headers`; the body is the value.
#[derive(Deserialize, ToSchema)]
#[schema(as = LookupSecret)]
pub(crate) struct LookupSecretEntry {
    kind: LookupKind,
    /// An absolute http(s) URL on an allowed origin, or a path starting with exactly one `/`
    /// (joined to `OH_INTERNAL_SERVER_URL`). No whitespace, backslash or control character.
    #[schema(max_length = 8192)]
    url: String,
    /// Header name to value; placeholder values are dropped. At most 32 headers in all.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// Header name to the name of an environment variable of the service that supplies the
    /// value at request time (settings origins only, allow-listed variables only).
    #[serde(default)]
    env_headers: Option<BTreeMap<String, String>>,
    /// Cache lifetime override; 0 = never cache.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: Option<String>,
    /// Egress mode: the hosts the value may be sent to (exact names or `*.` wildcards not over
    /// a public suffix; no IP literals). A bound value must be at least 16 bytes.
    #[serde(default)]
    egress_hosts: Option<Vec<String>>,
    /// Header names the proxy may put the value in, besides `Authorization`.
    #[serde(default)]
    egress_headers: Option<Vec<String>>,
    /// Query parameter names the proxy may put the value in.
    #[serde(default)]
    egress_query: Option<Vec<String>>,
}

/// The tag of a static descriptor.
#[derive(Deserialize, ToSchema)]
pub(crate) enum StaticKind {
    StaticSecret,
}

/// The tag of a lookup descriptor.
#[derive(Deserialize, ToSchema)]
pub(crate) enum LookupKind {
    LookupSecret,
}

/// The kind of a listed secret.
#[derive(Serialize, ToSchema)]
pub(crate) enum SecretKind {
    StaticSecret,
    LookupSecret,
}

/// Which scope a listed entry belongs to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ScopeName {
    Conversation,
    Sandbox,
}

/// Where a listed entry came from.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Provenance {
    Api,
    Discovery,
}

/// What is known of a listed entry's value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ValueStatus {
    Unresolved,
    Resolved,
    Stale,
    Failed,
    NoValue,
}

/// A bash event: a `BashCommand` or a `BashOutput`, told apart by `kind`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = BashEvent)]
pub(crate) enum BashEventSchema {
    Command(BashCommandEvent),
    Output(BashOutputEvent),
}

/// A command accepted for execution *(ref)*; `conversation_id` is ours and written only when
/// set.
#[derive(Serialize, ToSchema)]
#[schema(as = BashCommand)]
pub(crate) struct BashCommandEvent {
    /// The command text, masked.
    command: String,
    #[schema(required = true)]
    cwd: Option<String>,
    /// Seconds.
    timeout: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    conversation_id: Option<String>,
    /// 32 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    /// UTC, ISO-8601.
    #[schema(format = DateTime)]
    timestamp: String,
    kind: BashCommandKind,
}

/// A piece of a command's output *(ref)*; the last one has `exit_code` (`-1` after a timeout
/// or a failure to run).
#[derive(Serialize, ToSchema)]
#[schema(as = BashOutput)]
pub(crate) struct BashOutputEvent {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    id: String,
    #[schema(format = DateTime)]
    timestamp: String,
    /// The id of the `BashCommand`.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    command_id: String,
    order: u64,
    /// `null` while the command runs.
    #[schema(required = true)]
    exit_code: Option<i32>,
    #[schema(required = true)]
    stdout: Option<String>,
    #[schema(required = true)]
    stderr: Option<String>,
    kind: BashOutputKind,
}

/// The tag of a command event.
#[derive(Serialize, ToSchema)]
pub(crate) enum BashCommandKind {
    BashCommand,
}

/// The tag of an output event.
#[derive(Serialize, ToSchema)]
pub(crate) enum BashOutputKind {
    BashOutput,
}

/// A page of `GET /api/bash/bash_events/search`.
#[derive(Serialize, ToSchema)]
pub(crate) struct BashEventPage {
    items: Vec<BashEventSchema>,
    /// Pass as `page_id` for the next page; `null` on the last one.
    #[schema(required = true)]
    next_page_id: Option<String>,
}

/// The query of `GET /api/bash/bash_events/search`; unknown parameters are ignored.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// Only events of this kind.
    #[serde(rename = "kind__eq")]
    #[param(inline)]
    kind_eq: Option<EventKindParam>,
    /// Only the outputs of this command (a UUID).
    #[serde(rename = "command_id__eq")]
    #[param(
        pattern = "^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"
    )]
    command_id_eq: Option<String>,
    /// Only outputs with a greater `order`.
    #[serde(rename = "order__gt")]
    order_gt: Option<i64>,
    /// Only events at or after this instant: an ISO-8601 date-time (no zone = UTC) or Unix
    /// seconds.
    #[serde(rename = "timestamp__gte")]
    #[param(min_length = 1)]
    timestamp_gte: Option<String>,
    /// Only events before this instant, in the same forms.
    #[serde(rename = "timestamp__lt")]
    #[param(min_length = 1)]
    timestamp_lt: Option<String>,
    #[param(inline)]
    sort_order: Option<SortOrderParam>,
    /// The `next_page_id` of a previous page.
    page_id: Option<String>,
    /// 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// `kind__eq`.
#[derive(Deserialize, ToSchema)]
pub(crate) enum EventKindParam {
    BashCommand,
    BashOutput,
}

/// `sort_order`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum SortOrderParam {
    Timestamp,
    TimestampDesc,
}
