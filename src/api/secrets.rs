//! Secrets routes, for one conversation (`/api/conversations/{id}/secrets…`) and sandbox-wide
//! (`/api/secrets…`): register (merge, all-or-nothing), list, delete.
//!
//! Listings show names, kinds, descriptions, scope and the lookup *origin* — never a value,
//! a URL path or query, a header, or a length.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, PathParams};
use super::schema::{ErrorBody, Provenance, ScopeName, SecretKind, UpdateBody, ValueStatus};
use crate::error::ApiError;
use crate::secrets::registry::Visible;
use crate::secrets::resolver::EntryState;
use crate::secrets::source::{SecretSource, StaticSecret, parse_update};
use crate::state::AppState;

/// `{"success": true}` *(ref)*.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Success {
    success: bool,
}

/// `{"deleted": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    deleted: bool,
}

/// `{"secrets": [entry…]}`, sorted by name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretList {
    secrets: Vec<ListEntry>,
}

/// One listed secret: never a value, a URL path or query, a header, or a length.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListEntry {
    name: String,
    /// `StaticSecret` or `LookupSecret`.
    #[schema(value_type = SecretKind)]
    kind: &'static str,
    description: Option<String>,
    /// `conversation` or `sandbox`.
    #[schema(value_type = ScopeName)]
    scope: &'static str,
    /// Hidden by a conversation's own entry of the same name.
    shadowed: bool,
    /// `api` or `discovery`.
    #[schema(value_type = Provenance)]
    source: &'static str,
    /// The lookup's `scheme://host[:port]`.
    origin: Option<String>,
    state: ListState,
    /// The effective egress binding (the descriptor's own or one configured by name), for
    /// bound secrets only; never the placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    egress: Option<ListEgress>,
}

/// Where a bound secret may go.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListEgress {
    hosts: Vec<String>,
    headers: Vec<String>,
    query: Vec<String>,
}

/// What is known of an entry's value, without the value.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListState {
    /// `unresolved`, `resolved`, `stale`, `failed` or `no_value`.
    #[schema(value_type = ValueStatus)]
    status: &'static str,
    stale: bool,
    age_seconds: Option<u64>,
    last_error: Option<String>,
    /// False when the value is shorter than `--mask-min-length`.
    masked: bool,
}

/// `POST …/secrets`: `{"secrets": {NAME: entry}}` → `{"success": true}`. The descriptor
/// shapes are the reference's and are parsed by hand (`secrets::source`).
#[utoipa::path(post, path = "/secrets", tag = "secrets", request_body = UpdateBody, responses(
    (status = 200, description = "Every entry was stored (merge; all-or-nothing)", body = Success),
    (status = 429, description = "Too many conversations or secrets in the scope", body = ErrorBody),
))]
pub(crate) async fn update(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Success>, ApiError> {
    let scope = params.scope()?;
    let entries = parse_update(&body, &state.sources)?;
    state.runner.egress().check_update(&entries)?;
    let count = entries.len();
    // Static values are held from now on, so they are masked from now on (even after a
    // later delete or rotation): one compilation for the whole update.
    let statics = entries.iter().filter_map(|(name, source)| match source {
        SecretSource::Static(StaticSecret { value: Some(value), .. }) => Some((name.as_str(), value)),
        _ => None,
    });
    state.runner.remember(&scope, statics).await?;
    let replaced = state.durable.update(&scope, entries).await?;
    state.resolver.forget(&replaced).await;
    tracing::info!(scope = %scope, count, "secrets updated");
    Ok(Json(Success { success: true }))
}

/// `GET …/secrets`: own and inherited entries, sorted by name.
#[utoipa::path(get, path = "/secrets", tag = "secrets", responses(
    (status = 200, description = "Own and inherited entries, sorted by name", body = SecretList),
))]
pub(crate) async fn list(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<SecretList>, ApiError> {
    let scope = params.scope()?;
    let mut secrets = Vec::new();
    for visible in state.registry.list(&scope) {
        let entry_state = state.resolver.state(&visible.entry).await;
        secrets.push(list_entry(&state, &visible, entry_state));
    }
    Ok(Json(SecretList { secrets }))
}

/// `DELETE …/secrets/{name}` → `{"deleted": true}` or 404.
#[utoipa::path(delete, path = "/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name",
        pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")),
    responses(
        (status = 200, body = Deleted),
        (status = 404, description = "No such secret in the scope", body = ErrorBody),
    ),
)]
pub(crate) async fn delete_one(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<Deleted>, ApiError> {
    let scope = params.scope()?;
    let name = params.name()?;
    let removed = state.durable.remove(&scope, &name).await?;
    state.resolver.forget(&[removed]).await;
    tracing::info!(scope = %scope, name = %name, "secret deleted");
    Ok(Json(Deleted { deleted: true }))
}

/// `DELETE /api/conversations/{id}`: drop the scope → `{"deleted": true}` or 404.
#[utoipa::path(delete, path = "/", tag = "conversations", responses(
    (status = 200, description = "The scope and its cached values are gone", body = Deleted),
    (status = 404, description = "No such conversation", body = ErrorBody),
))]
pub(crate) async fn drop_conversation(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<Deleted>, ApiError> {
    let id = params.conversation()?;
    let dropped = state.durable.drop_conversation(&id).await?;
    state.resolver.forget(&dropped).await;
    tracing::info!(conversation = %id, count = dropped.len(), "conversation dropped");
    Ok(Json(Deleted { deleted: true }))
}

fn list_entry(state: &AppState, v: &Visible, st: EntryState) -> ListEntry {
    let entry = &v.entry;
    let origin = match &entry.source {
        SecretSource::Static(_) => None,
        SecretSource::Lookup(l) => Some(l.origin.to_string()),
    };
    ListEntry {
        name: entry.name.to_string(),
        kind: entry.source.kind(),
        description: entry.source.description().map(str::to_owned),
        scope: v.scope.as_str(),
        shadowed: v.shadowed,
        source: entry.provenance.as_str(),
        origin,
        egress: state.runner.egress().binding(entry.name.as_str(), entry.source.egress()).map(|b| {
            ListEgress {
                hosts: b.hosts.iter().map(ToString::to_string).collect(),
                headers: b.headers.iter().map(|h| h.as_str().to_owned()).collect(),
                query: b.query.clone(),
            }
        }),
        state: ListState {
            status: st.status,
            stale: st.stale,
            age_seconds: st.age.map(|a| a.as_secs()),
            last_error: st.last_error,
            masked: st.value_len.is_none_or(|len| len >= state.mask_min_length),
        },
    }
}

/// The secrets routes of one scope, relative to it.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(update, list)).routes(routes!(delete_one))
}
