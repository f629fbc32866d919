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
        let ok = match discover_once(&cfg, &registry, &resolver).await {
            Ok(count) => {
                tracing::info!(count, "discovered secrets");
                metrics.run(RunResult::Ok);
                true
            }
            Err(e) => {
                tracing::warn!("secret discovery failed: {e}");
                metrics.run(RunResult::Error);
                false
            }
        };
        let wait = next_wait(ok, cfg.interval);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long to wait before the next run: the interval (at most [`RETRY_AFTER_FAILURE`] after
/// a failure), jittered ±10 % so sandboxes started together do not list in step.
fn next_wait(ok: bool, interval: Duration) -> Duration {
    jitter(if ok { interval } else { interval.min(RETRY_AFTER_FAILURE) })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_runs_are_jittered_so_a_fleet_drifts_apart() {
        let interval = Duration::from_secs(300);
        let waits: Vec<Duration> = (0..200).map(|_| next_wait(true, interval)).collect();
        let (low, high) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*low >= Duration::from_secs(270) && *high <= Duration::from_secs(330), "{low:?}..{high:?}");
        assert!(*high - *low > Duration::from_secs(30), "jittered, not in step: {low:?}..{high:?}");
        let retries: Vec<Duration> = (0..200).map(|_| next_wait(false, interval)).collect();
        assert!(retries.iter().all(|w| *w >= Duration::from_secs(27) && *w <= Duration::from_secs(33)));
        assert!(retries.iter().any(|w| *w != retries[0]), "retries jittered too");
    }
}
