//! Gathering the secrets one command uses: select names from the scope, resolve them
//! concurrently, and sort the results into exported, skipped and missing.
//!
//! It applies the alias rule too: a discovered name with lowercase letters (`github_token`)
//! is also offered under its upper-case form unless that name is registered itself. It
//! decides nothing about HTTP: whether a missing explicit secret fails the request is the
//! caller's policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::registry::{Entry, Provenance, Registry, ScopeId};
use super::resolver::{ResolveError, Resolved, Resolver};
use super::select::{Requested, select};
use super::source::SecretSource;
use super::value::{SecretName, SecretValue};
use crate::egress::binding::Binding;

/// An explicit secret that could not be exported, and why (no value in the message).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason}")]
pub struct MissingSecret {
    pub name: String,
    pub reason: MissingReason,
}

/// Why a secret could not be exported.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MissingReason {
    #[error("secret {0} is not registered")]
    NotRegistered(String),
    #[error("secret {0} has no value")]
    NoValue(String),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("secret {0} is shorter than --mask-min-length and cannot be masked")]
    Unmaskable(String),
    #[error("secret {0} is too short to bind to egress hosts (a bound value must be at least 16 bytes)")]
    TooShortToBind(String),
    #[error("secret {0} is not text and cannot be bound to egress hosts")]
    NotBindable(String),
    #[error("secret {0} has the value of a secret bound to egress hosts and is not exported unbound")]
    BoundElsewhere(String),
}

/// What a command gets.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Name and value to export, sorted by name.
    pub exports: Vec<(String, SecretValue)>,
    /// Exported names served stale.
    pub stale: Vec<String>,
    /// Exported names that were selected implicitly (a caller may skip them rather than fail).
    pub implicit: Vec<String>,
    /// Implicit names that could not be exported.
    pub skipped: Vec<String>,
    /// Explicit names that could not be exported.
    pub missing: Vec<MissingSecret>,
    /// The descriptors' own egress bindings, by the name they are exported under.
    pub egress: BTreeMap<String, Arc<Binding>>,
}

impl Gathered {
    /// The exported names, sorted.
    pub fn exported(&self) -> Vec<String> {
        self.exports.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The names `scope` can export, aliases included, each with its entry.
pub fn exportable(registry: &Registry, scope: &ScopeId) -> BTreeMap<String, Arc<Entry>> {
    let mut names: BTreeMap<String, Arc<Entry>> = BTreeMap::new();
    let visible = registry.effective(scope);
    for v in &visible {
        names.insert(v.entry.name.to_string(), v.entry.clone());
    }
    for v in &visible {
        let name = v.entry.name.as_str();
        let upper = name.to_ascii_uppercase();
        if v.entry.provenance == Provenance::Discovery && upper != name && !names.contains_key(&upper) {
            names.insert(upper, v.entry.clone());
        }
    }
    names
}

/// Selects and resolves the secrets `command` uses in `scope`.
pub async fn gather(
    registry: &Registry,
    resolver: &Resolver,
    scope: &ScopeId,
    command: &str,
    requested: &Requested,
) -> Gathered {
    let names = exportable(registry, scope);
    // "all" means every name that has a value to export; an explicit unset is not one.
    let candidates = names.iter().filter(|(_, e)| *requested != Requested::All || !e.source.is_no_value());
    let selection = select(command, candidates.map(|(n, _)| n.as_str()), requested);
    let mut out = Gathered::default();
    let mut tasks = JoinSet::new();
    let mut spawned: HashMap<tokio::task::Id, (String, bool, SecretName)> = HashMap::new();
    for (name, explicit) in
        selection.explicit.iter().map(|n| (n, true)).chain(selection.implicit.iter().map(|n| (n, false)))
    {
        let Some(entry) = names.get(name).cloned() else {
            let reason = MissingReason::NotRegistered(name.clone());
            out.missing.push(MissingSecret { name: name.clone(), reason });
            continue;
        };
        if let Some(binding) = entry.source.egress() {
            out.egress.insert(name.clone(), binding.clone());
        }
        if let SecretSource::Static(s) = &entry.source {
            // Nothing to wait for: no task (this is on every command's path).
            let resolved = Ok(Resolved { value: s.value.clone(), stale: false });
            out.sort_result(name.clone(), explicit, resolved);
            continue;
        }
        let resolver = resolver.clone();
        let entry_name = entry.name.clone();
        let task = tasks.spawn(async move { resolver.resolve(&entry).await });
        spawned.insert(task.id(), (name.clone(), explicit, entry_name));
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            // A task that panicked still reports its name, as failed: never silently dropped.
            Err(e) => {
                let Some((_, _, entry_name)) = spawned.get(&e.id()) else { continue };
                tracing::error!(name = %entry_name, "resolving a secret panicked");
                (e.id(), Err(ResolveError::Internal(entry_name.clone().into())))
            }
        };
        if let Some((name, explicit, _)) = spawned.remove(&id) {
            out.sort_result(name, explicit, result);
        }
    }
    out.exports.sort_by(|a, b| a.0.cmp(&b.0));
    out.stale.sort();
    out.implicit.sort();
    out.skipped.sort();
    out.missing.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl Gathered {
    /// Files one resolution under exported, stale, skipped or missing.
    fn sort_result(&mut self, name: String, explicit: bool, result: Result<Resolved, ResolveError>) {
        let out = self;
        let reason = match result {
            Ok(r) => match r.value {
                Some(value) => {
                    if r.stale {
                        out.stale.push(name.clone());
                    }
                    if !explicit {
                        out.implicit.push(name.clone());
                    }
                    out.exports.push((name, value));
                    return;
                }
                None => MissingReason::NoValue(name.clone()),
            },
            Err(e) => MissingReason::Resolve(e),
        };
        if explicit {
            out.missing.push(MissingSecret { name, reason });
        } else {
            out.skipped.push(name);
        }
    }
}
