//! `POST …/secrets/resolve` and `…/secrets/refresh`: resolve names (or everything a command
//! could export) through the cache, or around it, and report which worked — never values.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, PathParams};
use crate::error::{ApiError, FieldError};
use crate::secrets::registry::{ScopeId, Visible};
use crate::secrets::resolver::ResolveError;
use crate::secrets::value::SecretName;
use crate::state::AppState;

/// `{"names": [...]}`, or `{}` / `"names": null` for every entry with a value the scope
/// would export.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResolveBody {
    /// Secret names; absent or `null` means every entry the scope would export.
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::schema::NameSchema>>)]
    names: Option<Vec<String>>,
}

/// Which names resolved, were served stale, or failed (and why); sorted by name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResolveResponse {
    resolved: Vec<String>,
    stale: Vec<String>,
    failed: Vec<Failed>,
}

/// A name that did not resolve; the error names the secret and the cause, never a value.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, ToSchema)]
pub(crate) struct Failed {
    name: String,
    error: String,
}

/// `POST …/secrets/resolve`.
#[utoipa::path(post, path = "/secrets/resolve", tag = "secrets", request_body = ResolveBody, responses(
    (status = 200, description = "Which names resolved, were stale, or failed; never values", body = ResolveResponse),
))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<ResolveResponse>, ApiError> {
    run(state, params.scope()?, body, false).await
}

/// `POST …/secrets/refresh`: the same, bypassing the cache (at most once per second per
/// entry).
#[utoipa::path(post, path = "/secrets/refresh", tag = "secrets", request_body = ResolveBody, responses(
    (status = 200, description = "Which names resolved, were stale, or failed; never values", body = ResolveResponse),
))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<ResolveResponse>, ApiError> {
    run(state, params.scope()?, body, true).await
}

async fn run(
    state: AppState,
    scope: ScopeId,
    body: ResolveBody,
    refresh: bool,
) -> Result<Json<ResolveResponse>, ApiError> {
    let wanted = match body.names {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| SecretName::parse(n).map_err(|e| FieldError::new("names", e.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let mut failed = Vec::new();
    let targets: Vec<Visible> = match wanted {
        Some(names) => names
            .into_iter()
            .filter_map(|name| match state.registry.get(&scope, &name) {
                Some(v) => Some(v),
                None => {
                    failed.push(Failed {
                        error: format!("secret {name} is not registered"),
                        name: name.to_string(),
                    });
                    None
                }
            })
            .collect(),
        None => {
            state.registry.effective(&scope).into_iter().filter(|v| !v.entry.source.is_no_value()).collect()
        }
    };
    let mut tasks = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for v in targets {
        let resolver = state.resolver.clone();
        let name = v.entry.name.clone();
        let task = tasks.spawn(async move {
            if refresh { resolver.refresh(&v.entry).await } else { resolver.resolve(&v.entry).await }
        });
        names.insert(task.id(), name);
    }
    let (mut resolved, mut stale) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            // A task that panicked reports its name as failed.
            Err(e) => {
                let Some(name) = names.remove(&e.id()) else { continue };
                tracing::error!(name = %name, "resolving a secret panicked");
                let error = ResolveError::Internal(name.clone().into()).to_string();
                failed.push(Failed { error, name: name.to_string() });
                continue;
            }
        };
        let Some(name) = names.remove(&id) else { continue };
        match result {
            Ok(r) if r.value.is_none() => {
                failed.push(Failed { error: format!("secret {name} has no value"), name: name.to_string() })
            }
            Ok(r) if r.stale => stale.push(name.to_string()),
            Ok(_) => resolved.push(name.to_string()),
            Err(e) => failed.push(Failed { error: e.to_string(), name: name.to_string() }),
        }
    }
    resolved.sort();
    stale.sort();
    failed.sort();
    Ok(Json(ResolveResponse { resolved, stale, failed }))
}

/// The resolve routes of one scope, relative to it.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resolve)).routes(routes!(refresh))
}
