//! The registry's API layers as one value: what the state file keeps, taken and put back
//! whole.
//!
//! A snapshot is `Arc` clones, so taking one is cheap and restoring one brings back the very
//! entries (and generations, so cached values stay valid) that were there. Discovered entries
//! are not part of it: discovery finds them again. Restoring and loading bypass the bounds
//! on purpose: they put back what was accepted before.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConversationId, Entry, Provenance, Registry, Scope, ScopeId};
use crate::secrets::source::SecretSource;
use crate::secrets::value::SecretName;

/// Every API-registered entry, per scope.
#[derive(Clone, Debug, Default)]
pub struct ApiLayers {
    /// The sandbox-wide scope's API entries.
    pub sandbox: BTreeMap<SecretName, Arc<Entry>>,
    /// Every conversation scope, including ones left empty by deletes.
    pub conversations: BTreeMap<ConversationId, BTreeMap<SecretName, Arc<Entry>>>,
}

impl ApiLayers {
    /// Number of entries in all scopes.
    pub fn len(&self) -> usize {
        self.sandbox.len() + self.conversations.values().map(BTreeMap::len).sum::<usize>()
    }

    /// True when no scope holds an entry and there is no conversation scope.
    pub fn is_empty(&self) -> bool {
        self.sandbox.is_empty() && self.conversations.is_empty()
    }
}

impl Registry {
    /// The API layers as they are now.
    pub fn api_layers(&self) -> ApiLayers {
        let inner = self.read();
        ApiLayers {
            sandbox: inner.sandbox.api.clone(),
            conversations: inner.conversations.iter().map(|(id, s)| (id.clone(), s.api.clone())).collect(),
        }
    }

    /// Puts back `layers` as the API layers of every scope (conversation scopes not in it are
    /// dropped); the sandbox's discovered layer is kept.
    pub fn restore_api_layers(&self, layers: ApiLayers) {
        let mut inner = self.write();
        inner.sandbox.api = layers.sandbox;
        inner.conversations = layers
            .conversations
            .into_iter()
            .map(|(id, api)| (id, Scope { api, discovered: BTreeMap::new() }))
            .collect();
    }

    /// Adds entries read back from storage to their scopes as API entries with fresh
    /// generations, creating conversation scopes (even empty ones) as listed.
    pub fn load_api(&self, scopes: Vec<(ScopeId, Vec<(SecretName, SecretSource)>)>) {
        let mut inner = self.write();
        for (scope, entries) in scopes {
            let fresh: Vec<_> =
                entries.into_iter().map(|(n, s)| (n.clone(), self.entry(n, s, Provenance::Api))).collect();
            let target = match &scope {
                ScopeId::Sandbox => &mut inner.sandbox,
                ScopeId::Conversation(id) => inner.conversations.entry(id.clone()).or_default(),
            };
            target.api.extend(fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::registry::Limits;
    use crate::secrets::source::StaticSecret;
    use crate::secrets::value::SecretValue;

    fn stat(v: &str) -> SecretSource {
        SecretSource::Static(StaticSecret {
            value: SecretValue::from_bytes(v.as_bytes().to_vec()),
            description: None,
            egress: None,
        })
    }

    #[test]
    fn restore_brings_back_the_same_entries_and_keeps_discovery() {
        let r = Registry::new(Limits { max_conversations: 4, max_secrets_per_scope: 4 });
        let a = SecretName::parse("A").unwrap();
        let conv = ConversationId::parse(&format!("{:032x}", 1)).unwrap();
        r.update(&ScopeId::Sandbox, vec![(a.clone(), stat("one"))]).unwrap();
        r.update(&ScopeId::Conversation(conv.clone()), vec![(a.clone(), stat("c"))]).unwrap();
        r.set_discovered(vec![(SecretName::parse("D").unwrap(), stat("disc"))]);
        let before = r.api_layers();
        assert_eq!(before.len(), 2);
        let generation = before.sandbox[&a].generation;
        r.update(&ScopeId::Sandbox, vec![(a.clone(), stat("two"))]).unwrap();
        r.drop_conversation(&conv).unwrap();
        r.restore_api_layers(before);
        assert_eq!(r.get(&ScopeId::Sandbox, &a).unwrap().entry.generation, generation);
        assert!(r.has_conversation(&conv));
        assert_eq!(r.list(&ScopeId::Sandbox).len(), 2, "the discovered entry is still there");
        let loaded = Registry::new(Limits { max_conversations: 1, max_secrets_per_scope: 1 });
        loaded.load_api(vec![
            (ScopeId::Sandbox, vec![(a.clone(), stat("x")), (SecretName::parse("B").unwrap(), stat("y"))]),
            (ScopeId::Conversation(conv.clone()), vec![]),
        ]);
        assert_eq!(loaded.api_layers().len(), 2, "loading is not held to the bounds");
        assert!(loaded.has_conversation(&conv));
    }
}
