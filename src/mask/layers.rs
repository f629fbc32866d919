//! Which compiled layer holds which values: the bookkeeping behind the mask
//! set's published masker. Pure; compiling and threads are the set's job.
//!
//! Values have increasing ids, and each layer holds a contiguous id range:
//! the *stable* layer everything below `stable_upto`, then *sealed* layers,
//! then the *recent* layer from `recent_from` to `recent_upto`. An update
//! recompiles only the recent layer, which is sealed once it passes
//! [`RECENT_MAX_BYTES`], so an update never compiles much more than its own
//! values. A merge folds the stable and sealed layers into a new stable layer
//! in the background.
//!
//! Invariant: the layers' ranges are contiguous and cover every id below
//! `recent_upto`; a layer may also hold values dropped since it was compiled.

use std::sync::Arc;

use super::matcher::{Layer, Masker};

/// The recent layer is sealed past this many pattern bytes: an update
/// compiles at most this much besides its own values.
const RECENT_MAX_BYTES: usize = 64 * 1024;

/// A merge is due once the layers above the stable one hold this many
/// pattern bytes, or a sixteenth of the stable layer if that is more: a merge
/// costs about as much as compiling the stable layer, so merging every
/// sixteenth of its size keeps the work per added value constant.
const MERGE_MIN_BYTES: usize = 64 * 1024;
const MERGE_FRACTION: usize = 16;

/// A compiled layer and the pattern bytes it holds.
pub(super) struct Compiled {
    pub layer: Option<Arc<Layer>>,
    pub bytes: usize,
}

struct Sealed {
    compiled: Compiled,
    upto: u64,
}

pub(super) struct Layers {
    stable: Compiled,
    stable_upto: u64,
    sealed: Vec<Sealed>,
    recent: Compiled,
    recent_from: u64,
    recent_upto: u64,
    /// A merge is running (at most one at a time).
    pub merging: bool,
}

impl Layers {
    /// No layers; ids start at `next_id`.
    pub(super) fn new(next_id: u64) -> Self {
        Self {
            stable: Compiled { layer: None, bytes: 0 },
            stable_upto: next_id,
            sealed: Vec::new(),
            recent: Compiled { layer: None, bytes: 0 },
            recent_from: next_id,
            recent_upto: next_id,
            merging: false,
        }
    }

    /// A masker searching every layer.
    pub(super) fn masker(&self) -> Masker {
        let sealed = self.sealed.iter().map(|s| &s.compiled.layer);
        let all = [&self.stable.layer].into_iter().chain(sealed).chain([&self.recent.layer]);
        Masker::from_layers(all.flatten().cloned().collect())
    }

    /// First id the recent layer holds: an update compiles ids from here on.
    pub(super) fn recent_from(&self) -> u64 {
        self.recent_from
    }

    /// Installs a recompiled recent layer holding ids up to `upto`, sealing
    /// it when it has grown large.
    pub(super) fn set_recent(&mut self, compiled: Compiled, upto: u64) {
        self.recent = compiled;
        self.recent_upto = upto;
        if self.recent.bytes > RECENT_MAX_BYTES {
            self.seal();
        }
    }

    /// Ends the recent layer; later values start a new one.
    fn seal(&mut self) {
        if self.recent_upto > self.recent_from {
            let compiled = std::mem::replace(&mut self.recent, Compiled { layer: None, bytes: 0 });
            self.sealed.push(Sealed { compiled, upto: self.recent_upto });
            self.recent_from = self.recent_upto;
        }
    }

    /// Whether the layers above the stable one have outgrown their share.
    pub(super) fn merge_due(&self) -> bool {
        let above: usize = self.sealed.iter().map(|s| s.compiled.bytes).sum::<usize>() + self.recent.bytes;
        above > MERGE_MIN_BYTES.max(self.stable.bytes / MERGE_FRACTION)
    }

    /// Seals the recent layer and returns the merge target: every id below
    /// it goes into the next stable layer.
    pub(super) fn merge_target(&mut self) -> u64 {
        self.seal();
        self.recent_from
    }

    /// Installs the stable layer of a merge up to `target`, dropping the
    /// sealed layers it replaces.
    pub(super) fn set_stable(&mut self, compiled: Compiled, target: u64) {
        self.stable = compiled;
        self.stable_upto = target;
        self.sealed.retain(|s| s.upto > target);
    }

    /// After a failed merge: the sealed layers are dropped, and the next
    /// recent layer covers everything above the stable one again.
    pub(super) fn unseal(&mut self) {
        self.sealed.clear();
        self.recent_from = self.stable_upto;
    }

    /// Pattern bytes of the stable layer and of the recent one.
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.stable.bytes, self.recent.bytes)
    }

    /// Number of sealed layers.
    #[cfg(test)]
    pub(super) fn sealed_count(&self) -> usize {
        self.sealed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(bytes: usize) -> Compiled {
        Compiled { layer: None, bytes }
    }

    #[test]
    fn large_recent_layers_are_sealed_and_merged_away() {
        let mut l = Layers::new(0);
        l.set_recent(compiled(1000), 10);
        assert_eq!((l.recent_from(), l.sealed_count()), (0, 0));
        assert!(!l.merge_due());
        l.set_recent(compiled(RECENT_MAX_BYTES + 1), 20);
        assert_eq!((l.recent_from(), l.sealed_count()), (20, 1));
        assert!(l.merge_due());
        l.set_recent(compiled(1000), 30);
        let target = l.merge_target();
        assert_eq!((target, l.sealed_count()), (30, 2));
        // Values recorded during the merge stay above the new stable layer.
        l.set_recent(compiled(RECENT_MAX_BYTES + 1), 40);
        l.set_stable(compiled(10 * RECENT_MAX_BYTES), target);
        assert_eq!((l.sealed_count(), l.recent_from()), (1, 40));
        l.unseal();
        assert_eq!((l.sealed_count(), l.recent_from()), (0, 30));
    }

    #[test]
    fn merges_are_due_at_a_fraction_of_the_stable_layer() {
        let mut l = Layers::new(0);
        l.set_stable(compiled(32 * MERGE_MIN_BYTES), 0);
        l.set_recent(compiled(MERGE_MIN_BYTES + 1), 1);
        assert!(!l.merge_due());
        l.set_recent(compiled(2 * MERGE_MIN_BYTES + 1), 2);
        assert!(l.merge_due());
    }
}
