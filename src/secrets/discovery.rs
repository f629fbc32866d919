//! Discovery: registers a LookupSecret for every secret the settings API lists for this
//! sandbox, in the sandbox-wide scope, at start and then periodically.
//!
//! Discovered entries live in their own layer of the registry: they never replace an entry
//! registered through the API, they disappear when the list drops them, and they are not
//! persisted. A failing run is logged and retried; it never blocks start-up or readiness.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::origin::{Origin, OriginKind};
use super::registry::Registry;
use super::resolver::{Resolver, jitter};
use super::source::{LookupSecret, SecretSource};
use super::value::SecretName;
use crate::config::DiscoveryConfig;
use crate::metrics::{DiscoveryMetrics, RunResult};

/// Longest wait before retrying a failed run.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Longest description kept from the list.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Runs discovery until `shutdown` is cancelled, counting each run in `metrics`.
pub(crate) async fn run(
    cfg: DiscoveryConfig,
    registry: Arc<Registry>,
    resolver: Resolver,
    metrics: DiscoveryMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match discover_once(&cfg, &registry, &resolver).await {
            Ok(count) => {
                tracing::info!(count, "discovered secrets");
                metrics.run(RunResult::Ok);
                jitter(cfg.interval)
            }
            Err(e) => {
                tracing::warn!("secret discovery failed: {e}");
                metrics.run(RunResult::Error);
                jitter(cfg.interval.min(RETRY_AFTER_FAILURE))
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One discovery run; returns how many entries are now discovered.
pub async fn discover_once(
    cfg: &DiscoveryConfig,
    registry: &Registry,
    resolver: &Resolver,
) -> Result<usize, String> {
    let body = resolver.fetch_list(&cfg.list_url).await.map_err(|e| e.to_string())?;
    let list: Value = serde_json::from_slice(&body).map_err(|_| "the secret list is not JSON".to_owned())?;
    let items = list
        .get("secrets")
        .and_then(Value::as_array)
        .ok_or_else(|| "the secret list has no \"secrets\" array".to_owned())?;
    let origin = Origin::of(&cfg.list_url).map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for item in items {
        let Some(raw) = item.get("name").and_then(Value::as_str) else { continue };
        let Ok(name) = SecretName::parse(raw) else {
            tracing::debug!("skipping a discovered secret whose name is not a valid variable name");
            continue;
        };
        let mut url = cfg.list_url.clone();
        let Ok(mut segments) = url.path_segments_mut() else { continue };
        segments.push(raw);
        drop(segments);
        let description = item
            .get("description")
            .and_then(Value::as_str)
            .map(|d| d.chars().take(MAX_DESCRIPTION_CHARS).collect());
        let source = SecretSource::Lookup(LookupSecret {
            url,
            origin: origin.clone(),
            origin_kind: OriginKind::Settings,
            headers: Vec::new(),
            env_headers: Vec::new(),
            ttl_seconds: None,
            description,
            egress: None,
        });
        found.push((name, source));
    }
    let count = found.len();
    let gone = registry.set_discovered(found);
    resolver.forget(&gone).await;
    Ok(count)
}
