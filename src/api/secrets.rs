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
use crate::secrets::resolver::EntryState;
use crate::secrets::source::{SecretSource, StaticSecret, parse_update};
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
    // Static values are held from now on, so they are masked from now on (even after a
    // later delete or rotation): all of them with one compilation, off the async workers.
    let statics = entries.iter().filter_map(|(name, source)| match source {
        SecretSource::Static(StaticSecret { value: Some(value), .. }) => Some((name.as_str(), value)),
        _ => None,
    });
    state.remember(&scope, statics).await?;
    let replaced = state.registry.update(&scope, entries)?;
    state.resolver.forget(&replaced).await;
    tracing::info!(scope = %scope_label(&scope), count, "secrets updated");
    Ok(Json(json!({"success": true})))
}

/// `GET …/secrets`: own and inherited entries, sorted by name.
pub async fn list(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let mut items = Vec::new();
    for visible in state.registry.list(&scope) {
        let entry_state = state.resolver.state(&visible.entry).await;
        items.push(list_entry(&state, &visible, &entry_state));
    }
    Ok(Json(json!({"secrets": items})))
}

/// `DELETE …/secrets/{name}` → `{"deleted": true}` or 404.
pub async fn delete(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let name = params.name()?;
    let removed = state.registry.remove(&scope, &name)?;
    state.resolver.forget(&[removed]).await;
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
    state.resolver.forget(&dropped).await;
    tracing::info!(conversation = %id, count = dropped.len(), "conversation dropped");
    Ok(Json(json!({"deleted": true})))
}

fn scope_label(scope: &ScopeId) -> String {
    match scope {
        ScopeId::Sandbox => "sandbox".to_owned(),
        ScopeId::Conversation(id) => id.to_string(),
    }
}

fn list_entry(state: &AppState, v: &Visible, st: &EntryState) -> Value {
    let entry = &v.entry;
    let origin = match &entry.source {
        SecretSource::Static(_) => None,
        SecretSource::Lookup(l) => Some(l.origin.to_string()),
    };
    json!({
        "name": entry.name.as_str(),
        "kind": entry.source.kind(),
        "description": entry.source.description(),
        "scope": v.scope.as_str(),
        "shadowed": v.shadowed,
        "source": entry.provenance.as_str(),
        "origin": origin,
        "state": {
            "status": st.status,
            "stale": st.stale,
            "age_seconds": st.age.map(|a| a.as_secs()),
            "last_error": st.last_error,
            "masked": st.value_len.is_none_or(|len| len >= state.mask_min_length),
        },
    })
}
