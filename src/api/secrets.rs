//! Secrets routes, for one conversation (`/api/conversations/{id}/secrets…`) and sandbox-wide
//! (`/api/secrets…`): register (merge, all-or-nothing), list, delete.
//!
//! Listings show names, kinds, descriptions, scope and the lookup *origin* — never a value,
//! a URL path or query, a header, or a length.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::extract::{JsonBody, PathParams};
use crate::error::ApiError;
use crate::secrets::registry::{ScopeId, Visible};
use crate::secrets::source::{SecretSource, parse_update};
use crate::state::AppState;

/// `POST …/secrets`: `{"secrets": {NAME: entry}}` → `{"success": true}`.
pub async fn update(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let entries = parse_update(&body, &state.sources)?;
    let count = entries.len();
    state.registry.update(&scope, entries)?;
    tracing::info!(scope = %scope_label(&scope), count, "secrets updated");
    Ok(Json(json!({"success": true})))
}

/// `GET …/secrets`: own and inherited entries, sorted by name.
pub async fn list(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let items: Vec<Value> = state.registry.list(&scope).iter().map(|v| list_entry(&state, v)).collect();
    Ok(Json(json!({"secrets": items})))
}

/// `DELETE …/secrets/{name}` → `{"deleted": true}` or 404.
pub async fn delete(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let name = params.name()?;
    state.registry.remove(&scope, &name)?;
    tracing::info!(scope = %scope_label(&scope), name = %name, "secret deleted");
    Ok(Json(json!({"deleted": true})))
}

/// `DELETE /api/conversations/{id}`: drop the scope → `{"deleted": true}` or 404.
pub async fn drop_conversation(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<Value>, ApiError> {
    let ScopeId::Conversation(id) = params.conversation()? else {
        unreachable!("conversation() only returns conversation scopes")
    };
    let dropped = state.registry.drop_conversation(&id)?;
    tracing::info!(conversation = %id, count = dropped.len(), "conversation dropped");
    Ok(Json(json!({"deleted": true})))
}

fn scope_label(scope: &ScopeId) -> String {
    match scope {
        ScopeId::Sandbox => "sandbox".to_owned(),
        ScopeId::Conversation(id) => id.to_string(),
    }
}

fn list_entry(state: &AppState, v: &Visible) -> Value {
    let entry = &v.entry;
    let (origin, status, masked) = match &entry.source {
        SecretSource::Static(s) => match &s.value {
            Some(value) => (None, "resolved", value.len() >= state.mask_min_length),
            None => (None, "no_value", true),
        },
        SecretSource::Lookup(l) => (Some(l.origin.to_string()), "unresolved", true),
    };
    json!({
        "name": entry.name.as_str(),
        "kind": entry.source.kind(),
        "description": entry.source.description(),
        "scope": v.scope.as_str(),
        "shadowed": v.shadowed,
        "source": entry.origin.as_str(),
        "origin": origin,
        "state": {
            "status": status,
            "stale": false,
            "age_seconds": null,
            "last_error": null,
            "masked": masked,
        },
    })
}
