//! The registry: which descriptors exist, per conversation scope and sandbox-wide.
//!
//! It owns scoping rules — a conversation inherits the sandbox-wide scope, its own entry of
//! the same name wins, and an own entry with no value shadows the inherited one — and the
//! bounds on scopes and entries. Updates are all-or-nothing: they are checked in full before
//! anything changes. It does not resolve values or know about HTTP; every entry carries a
//! unique `generation` so caches keyed by it are invalidated by a replacement for free.
//!
//! Invariant: the lock is a std `RwLock` held only for map operations, never across an
//! `.await`; callers get `Arc<Entry>` clones.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::source::SecretSource;
use super::value::SecretName;

mod layers;

pub use layers::ApiLayers;

/// A conversation id, normalised to 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(String);

impl ConversationId {
    /// Accepts a UUID written dashed (36 chars) or as 32 hex digits, any case.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 32 && raw.len() != 36 {
            return None;
        }
        let uuid = uuid::Uuid::try_parse(raw).ok()?;
        Some(Self(uuid.simple().to_string()))
    }

    /// The normalised form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which scope a request addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopeId {
    /// The sandbox-wide scope every conversation inherits.
    Sandbox,
    /// One conversation's own scope.
    Conversation(ConversationId),
}

impl fmt::Display for ScopeId {
    /// `sandbox`, or the conversation's 32-hex id: how logs name a scope.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sandbox => f.write_str("sandbox"),
            Self::Conversation(id) => fmt::Display::fmt(id, f),
        }
    }
}

/// Where an entry lives, as reported in listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    Conversation,
    Sandbox,
}

impl ScopeKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conversation => "conversation",
            Self::Sandbox => "sandbox",
        }
    }
}

/// How an entry got into the registry (listed as its `source`). Not to be confused with
/// [`crate::secrets::origin::Origin`], where a lookup goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Registered through the HTTP API.
    Api,
    /// Registered by settings discovery (sandbox scope only, never persisted).
    Discovery,
}

impl Provenance {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Discovery => "discovery",
        }
    }
}

/// One registered descriptor.
#[derive(Debug)]
pub struct Entry {
    pub name: SecretName,
    pub source: SecretSource,
    pub provenance: Provenance,
    /// Unique across the process; a replaced descriptor gets a new one.
    pub generation: u64,
}

/// An entry as a scope sees it.
#[derive(Clone, Debug)]
pub struct Visible {
    pub scope: ScopeKind,
    /// True for an inherited entry hidden by the conversation's own entry of that name.
    pub shadowed: bool,
    pub entry: Arc<Entry>,
}

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("conversation {0} has no secrets")]
    UnknownConversation(ConversationId),
    #[error("secret {0} is not registered in this scope")]
    UnknownSecret(SecretName),
    #[error("too many conversation scopes (limit {0})")]
    TooManyScopes(usize),
    #[error("too many secrets in one scope (limit {0})")]
    TooManySecrets(usize),
}

/// Bounds, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_conversations: usize,
    pub max_secrets_per_scope: usize,
}

#[derive(Default)]
struct Scope {
    api: BTreeMap<SecretName, Arc<Entry>>,
    discovered: BTreeMap<SecretName, Arc<Entry>>,
}

impl Scope {
    fn get(&self, name: &SecretName) -> Option<&Arc<Entry>> {
        self.api.get(name).or_else(|| self.discovered.get(name))
    }

    /// Effective entries in name order: API entries win over discovered ones.
    fn effective(&self) -> impl Iterator<Item = &Arc<Entry>> {
        let mut merged: BTreeMap<&SecretName, &Arc<Entry>> = self.discovered.iter().collect();
        merged.extend(self.api.iter());
        merged.into_values()
    }

    fn len(&self) -> usize {
        self.api.len() + self.discovered.keys().filter(|k| !self.api.contains_key(*k)).count()
    }
}

#[derive(Default)]
struct Inner {
    sandbox: Scope,
    conversations: HashMap<ConversationId, Scope>,
}

/// Descriptors per scope. See the module docs for the rules.
pub struct Registry {
    // std lock: every critical section is a few map operations with no `.await` inside.
    inner: RwLock<Inner>,
    limits: Limits,
    next_generation: AtomicU64,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Registry")
            .field("sandbox_entries", &inner.sandbox.len())
            .field("conversations", &inner.conversations.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry with the given bounds.
    pub fn new(limits: Limits) -> Self {
        Self { inner: RwLock::default(), limits, next_generation: AtomicU64::new(1) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (updates are
        // applied after all checks), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, name: SecretName, source: SecretSource, provenance: Provenance) -> Arc<Entry> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        Arc::new(Entry { name, source, provenance, generation })
    }

    /// Merges API entries into `scope` (named entries replace), creating a conversation
    /// scope if needed. All-or-nothing. Returns the entries that were replaced.
    pub fn update(
        &self,
        scope: &ScopeId,
        entries: Vec<(SecretName, SecretSource)>,
    ) -> Result<Vec<Arc<Entry>>, RegistryError> {
        let mut inner = self.write();
        let existing = match scope {
            ScopeId::Sandbox => Some(&inner.sandbox),
            ScopeId::Conversation(id) => inner.conversations.get(id),
        };
        if existing.is_none() && inner.conversations.len() >= self.limits.max_conversations {
            return Err(RegistryError::TooManyScopes(self.limits.max_conversations));
        }
        let (len, added) = existing.map_or((0, entries.len()), |s| {
            (s.len(), entries.iter().filter(|(n, _)| s.get(n).is_none()).count())
        });
        if len + added > self.limits.max_secrets_per_scope {
            return Err(RegistryError::TooManySecrets(self.limits.max_secrets_per_scope));
        }
        let fresh: Vec<_> =
            entries.into_iter().map(|(n, s)| (n.clone(), self.entry(n, s, Provenance::Api))).collect();
        let target = match scope {
            ScopeId::Sandbox => &mut inner.sandbox,
            ScopeId::Conversation(id) => inner.conversations.entry(id.clone()).or_default(),
        };
        let mut replaced = Vec::new();
        for (name, entry) in fresh {
            replaced.extend(target.api.insert(name, entry));
        }
        Ok(replaced)
    }

    /// Removes the named entry registered in `scope` itself (an API entry first, else a
    /// discovered one). Inherited entries are not touched.
    pub fn remove(&self, scope: &ScopeId, name: &SecretName) -> Result<Arc<Entry>, RegistryError> {
        let mut inner = self.write();
        let target = match scope {
            ScopeId::Sandbox => &mut inner.sandbox,
            ScopeId::Conversation(id) => {
                inner.conversations.get_mut(id).ok_or_else(|| RegistryError::UnknownSecret(name.clone()))?
            }
        };
        target
            .api
            .remove(name)
            .or_else(|| target.discovered.remove(name))
            .ok_or_else(|| RegistryError::UnknownSecret(name.clone()))
    }

    /// Drops a conversation scope and returns its entries.
    pub fn drop_conversation(&self, id: &ConversationId) -> Result<Vec<Arc<Entry>>, RegistryError> {
        let scope = self
            .write()
            .conversations
            .remove(id)
            .ok_or_else(|| RegistryError::UnknownConversation(id.clone()))?;
        Ok(scope.api.into_values().chain(scope.discovered.into_values()).collect())
    }

    /// Every entry `scope` can see, sorted by name, own entries before the inherited entry
    /// of the same name (which is then `shadowed`).
    pub fn list(&self, scope: &ScopeId) -> Vec<Visible> {
        let inner = self.read();
        let own = match scope {
            ScopeId::Sandbox => None,
            ScopeId::Conversation(id) => inner.conversations.get(id),
        };
        let (own_kind, own) = match own {
            Some(own) => (ScopeKind::Conversation, Some(own)),
            None if *scope == ScopeId::Sandbox => (ScopeKind::Sandbox, Some(&inner.sandbox)),
            None => (ScopeKind::Conversation, None),
        };
        let mut out: Vec<Visible> = own
            .into_iter()
            .flat_map(Scope::effective)
            .map(|e| Visible { scope: own_kind, shadowed: false, entry: e.clone() })
            .collect();
        if own_kind == ScopeKind::Conversation {
            for e in inner.sandbox.effective() {
                let shadowed = own.is_some_and(|s| s.get(&e.name).is_some());
                out.push(Visible { scope: ScopeKind::Sandbox, shadowed, entry: e.clone() });
            }
        }
        out.sort_by(|a, b| (&a.entry.name, a.scope).cmp(&(&b.entry.name, b.scope)));
        out
    }

    /// The entries `scope` actually uses (no shadowed ones), sorted by name.
    pub fn effective(&self, scope: &ScopeId) -> Vec<Visible> {
        let mut all = self.list(scope);
        all.retain(|v| !v.shadowed);
        all
    }

    /// The entry `scope` uses for `name`, if any.
    pub fn get(&self, scope: &ScopeId, name: &SecretName) -> Option<Visible> {
        let inner = self.read();
        if let ScopeId::Conversation(id) = scope {
            if let Some(e) = inner.conversations.get(id).and_then(|s| s.get(name)) {
                return Some(Visible { scope: ScopeKind::Conversation, shadowed: false, entry: e.clone() });
            }
        }
        inner.sandbox.get(name).map(|e| Visible {
            scope: ScopeKind::Sandbox,
            shadowed: false,
            entry: e.clone(),
        })
    }

    /// True when the conversation has a scope of its own.
    pub fn has_conversation(&self, id: &ConversationId) -> bool {
        self.read().conversations.contains_key(id)
    }

    /// Replaces the discovered layer of the sandbox scope with `found`. Entries whose
    /// descriptor did not change keep their generation (and so their cached value). Returns
    /// the entries that were removed or replaced.
    pub fn set_discovered(&self, found: Vec<(SecretName, SecretSource)>) -> Vec<Arc<Entry>> {
        let mut inner = self.write();
        let old = std::mem::take(&mut inner.sandbox.discovered);
        let mut gone = Vec::new();
        let mut next = BTreeMap::new();
        let mut old = old;
        for (name, source) in found {
            match old.remove(&name) {
                Some(prev) if prev.source == source => {
                    next.insert(name, prev);
                }
                prev => {
                    gone.extend(prev);
                    let entry = self.entry(name.clone(), source, Provenance::Discovery);
                    next.insert(name, entry);
                }
            }
        }
        gone.extend(old.into_values());
        inner.sandbox.discovered = next;
        gone
    }

    /// Number of conversation scopes.
    pub fn conversation_count(&self) -> usize {
        self.read().conversations.len()
    }

    /// Entries registered now: in the sandbox-wide scope (an API entry and a discovered one of
    /// the same name count once), and in all conversation scopes together.
    pub fn entry_counts(&self) -> (usize, usize) {
        let inner = self.read();
        (inner.sandbox.len(), inner.conversations.values().map(Scope::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::source::StaticSecret;
    use crate::secrets::value::SecretValue;

    fn name(s: &str) -> SecretName {
        SecretName::parse(s).unwrap()
    }

    fn stat(v: &str) -> SecretSource {
        SecretSource::Static(StaticSecret {
            value: SecretValue::from_bytes(v.as_bytes().to_vec()),
            description: None,
            egress: None,
        })
    }

    fn conv(n: u8) -> ScopeId {
        ScopeId::Conversation(ConversationId::parse(&format!("{n:032x}")).unwrap())
    }

    fn reg(max_conversations: usize, max_secrets_per_scope: usize) -> Registry {
        Registry::new(Limits { max_conversations, max_secrets_per_scope })
    }

    #[test]
    fn conversation_ids() {
        let a = ConversationId::parse("0A1B2C3D-4E5F-6789-ABCD-EF0123456789").unwrap();
        let b = ConversationId::parse("0a1b2c3d4e5f6789abcdef0123456789").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "0a1b2c3d4e5f6789abcdef0123456789");
        for bad in [
            "",
            "x",
            "{0a1b2c3d-4e5f-6789-abcd-ef0123456789}",
            "0a1b2c3d4e5f6789abcdef012345678g",
            "urn:uuid:0a1b2c3d-4e5f-6789-abcd-ef0123",
        ] {
            assert!(ConversationId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_display_as_logs_name_them() {
        assert_eq!(ScopeId::Sandbox.to_string(), "sandbox");
        let id = ConversationId::parse("0A1B2C3D-4E5F-6789-ABCD-EF0123456789").unwrap();
        assert_eq!(ScopeId::Conversation(id).to_string(), "0a1b2c3d4e5f6789abcdef0123456789");
    }

    #[test]
    fn provenance_wire_names() {
        assert_eq!(Provenance::Api.as_str(), "api");
        assert_eq!(Provenance::Discovery.as_str(), "discovery");
    }

    #[test]
    fn inheritance_and_shadowing() {
        let r = reg(10, 10);
        r.update(&ScopeId::Sandbox, vec![(name("A"), stat("sa")), (name("B"), stat("sb"))]).unwrap();
        r.update(&conv(1), vec![(name("B"), stat("")), (name("C"), stat("c"))]).unwrap();
        let list: Vec<_> =
            r.list(&conv(1)).iter().map(|v| (v.entry.name.to_string(), v.scope, v.shadowed)).collect();
        assert_eq!(
            list,
            [
                ("A".into(), ScopeKind::Sandbox, false),
                ("B".into(), ScopeKind::Conversation, false),
                ("B".into(), ScopeKind::Sandbox, true),
                ("C".into(), ScopeKind::Conversation, false),
            ]
        );
        assert!(r.get(&conv(1), &name("B")).unwrap().entry.source.is_no_value());
        assert_eq!(r.get(&conv(2), &name("B")).unwrap().scope, ScopeKind::Sandbox);
        assert_eq!(r.effective(&conv(1)).len(), 3);
        assert_eq!(r.list(&conv(2)).len(), 2, "an unknown conversation sees the inherited entries");
    }

    #[test]
    fn bounds_are_all_or_nothing() {
        let r = reg(1, 2);
        r.update(&conv(1), vec![(name("A"), stat("a"))]).unwrap();
        assert_eq!(
            r.update(&conv(2), vec![(name("A"), stat("a"))]).unwrap_err(),
            RegistryError::TooManyScopes(1)
        );
        assert!(!r.has_conversation(&ConversationId::parse(&format!("{:032x}", 2)).unwrap()));
        assert_eq!(
            r.update(&conv(1), vec![(name("B"), stat("b")), (name("C"), stat("c"))]).unwrap_err(),
            RegistryError::TooManySecrets(2)
        );
        assert_eq!(r.list(&conv(1)).len(), 1);
        // Replacing does not count against the bound.
        let replaced = r.update(&conv(1), vec![(name("A"), stat("a2")), (name("B"), stat("b"))]).unwrap();
        assert_eq!(replaced.len(), 1);
    }

    #[test]
    fn remove_and_drop() {
        let r = reg(10, 10);
        r.update(&conv(1), vec![(name("A"), stat("a"))]).unwrap();
        assert!(matches!(r.remove(&conv(1), &name("B")), Err(RegistryError::UnknownSecret(_))));
        assert!(matches!(r.remove(&conv(2), &name("A")), Err(RegistryError::UnknownSecret(_))));
        r.remove(&conv(1), &name("A")).unwrap();
        let ScopeId::Conversation(id) = conv(1) else { unreachable!() };
        r.drop_conversation(&id).unwrap();
        assert!(matches!(r.drop_conversation(&id), Err(RegistryError::UnknownConversation(_))));
    }

    #[test]
    fn discovery_never_replaces_api_entries() {
        let r = reg(10, 10);
        r.update(&ScopeId::Sandbox, vec![(name("A"), stat("api"))]).unwrap();
        r.set_discovered(vec![(name("A"), stat("disc")), (name("B"), stat("disc"))]);
        let list = r.list(&ScopeId::Sandbox);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].entry.provenance, Provenance::Api);
        assert_eq!(list[1].entry.provenance, Provenance::Discovery);
        let gen_b = list[1].entry.generation;
        let gone = r.set_discovered(vec![(name("B"), stat("disc"))]);
        assert_eq!(gone.len(), 1, "A's discovered entry dropped");
        assert_eq!(
            r.get(&ScopeId::Sandbox, &name("B")).unwrap().entry.generation,
            gen_b,
            "unchanged entry kept"
        );
        r.set_discovered(vec![]);
        assert_eq!(r.list(&ScopeId::Sandbox).len(), 1);
    }
}
