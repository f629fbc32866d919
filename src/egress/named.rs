//! Bindings by secret name: `--egress-bind` and, with `--egress-defaults`, the built-in
//! table. They apply to descriptors that carry no binding of their own; a descriptor's own
//! binding always wins.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::binding::Binding;

/// Name → binding, for descriptors without their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedBindings(BTreeMap<String, Arc<Binding>>);

impl NamedBindings {
    /// `explicit` (`--egress-bind`, a later one for the same name wins), then `defaults` for
    /// names `explicit` does not bind.
    pub fn new(explicit: Vec<(String, Binding)>, defaults: Vec<(String, Binding)>) -> Self {
        let mut map: BTreeMap<String, Arc<Binding>> = BTreeMap::new();
        for (name, binding) in defaults {
            map.insert(name, Arc::new(binding));
        }
        for (name, binding) in explicit {
            map.insert(name, Arc::new(binding));
        }
        Self(map)
    }

    /// The binding for `name`, if one is configured.
    pub fn get(&self, name: &str) -> Option<&Arc<Binding>> {
        self.0.get(name)
    }

    /// True when no name is bound.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every bound name and its binding.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Binding>)> {
        self.0.iter().map(|(n, b)| (n.as_str(), b))
    }
}
