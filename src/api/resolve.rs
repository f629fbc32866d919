//! `POST …/secrets/resolve` and `…/secrets/refresh`: resolve names (or everything a command
//! could export) through the cache, or around it, and report which worked — never values.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::extract::{JsonBody, PathParams};
use crate::error::ApiError;
use crate::secrets::registry::{ScopeId, Visible};
use crate::secrets::value::SecretName;
use crate::state::AppState;

/// `POST …/secrets/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    run(state, params.scope()?, &body, false).await
}

/// `POST …/secrets/refresh`: the same, bypassing the cache (at most once per second per
/// entry).
pub async fn refresh(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    run(state, params.scope()?, &body, true).await
}

/// `{"names": [...]}` → those names; `{}` or `"names": null` → every entry with a value
/// source that the scope would export.
fn requested_names(body: &Value) -> Result<Option<Vec<SecretName>>, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::Unprocessable("body must be a JSON object".into()))?;
    match obj.get("names") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|n| {
                let raw =
                    n.as_str().ok_or_else(|| ApiError::Unprocessable("names must be strings".into()))?;
                SecretName::parse(raw).map_err(|e| ApiError::Unprocessable(format!("names: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::Unprocessable("names must be a list of secret names".into())),
    }
}

async fn run(state: AppState, scope: ScopeId, body: &Value, refresh: bool) -> Result<Json<Value>, ApiError> {
    let wanted = requested_names(body)?;
    let mut failed: Vec<(String, String)> = Vec::new();
    let targets: Vec<Visible> = match wanted {
        Some(names) => names
            .into_iter()
            .filter_map(|name| match state.registry.get(&scope, &name) {
                Some(v) => Some(v),
                None => {
                    failed.push((name.to_string(), format!("secret {name} is not registered")));
                    None
                }
            })
            .collect(),
        None => {
            state.registry.effective(&scope).into_iter().filter(|v| !v.entry.source.is_no_value()).collect()
        }
    };
    let mut tasks = JoinSet::new();
    for v in targets {
        let resolver = state.resolver.clone();
        tasks.spawn(async move {
            let result =
                if refresh { resolver.refresh(&v.entry).await } else { resolver.resolve(&v.entry).await };
            (v.entry.name.clone(), result)
        });
    }
    let (mut resolved, mut stale) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, result)) = joined else { return Err(ApiError::Unavailable) };
        match result {
            Ok(r) if r.value.is_none() => {
                failed.push((name.to_string(), format!("secret {name} has no value")))
            }
            Ok(r) if r.stale => stale.push(name.to_string()),
            Ok(_) => resolved.push(name.to_string()),
            Err(e) => failed.push((name.to_string(), e.to_string())),
        }
    }
    resolved.sort();
    stale.sort();
    failed.sort();
    let failed: Vec<Value> =
        failed.into_iter().map(|(name, error)| json!({"name": name, "error": error})).collect();
    Ok(Json(json!({"resolved": resolved, "stale": stale, "failed": failed})))
}
