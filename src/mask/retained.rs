//! The retained set: which values the mask set holds, under which keys, and
//! within which bounds. Pure bookkeeping; compiling patterns is the mask set's
//! job.
//!
//! A value is stored once, with its derived patterns, however many keys hold
//! it (a lookup value used by many conversations costs its patterns once).
//! Each key keeps its current value and up to [`MAX_PREVIOUS_VALUES`] previous
//! ones; the whole set keeps at most its pattern byte budget, dropping the
//! least recently recorded values first. Nothing else removes a value, so a
//! deleted secret stays masked.
//!
//! Values get increasing ids when they enter the set; a value recorded again
//! keeps its id. The mask set compares ids to know which values an automaton
//! already holds.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::ops::RangeBounds;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{MAX_PREVIOUS_VALUES, MaskError, derive_patterns, is_maskable};

/// The derived patterns of one value, shared with automaton builds.
pub(super) type PatternList = Vec<Zeroizing<Vec<u8>>>;

/// Values dropped to stay within the bounds, for logging (counts only).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    /// Dropped because a key had too many previous values.
    pub by_history: usize,
    /// Dropped to stay within the pattern byte budget.
    pub by_budget: usize,
    /// Pattern bytes freed by budget drops.
    pub budget_bytes: usize,
}

pub(super) struct Retained {
    min_len: usize,
    max_pattern_bytes: usize,
    /// Per key, ids of its values, oldest first. Ids of values dropped by the
    /// budget linger until the key is next recorded or swept.
    keys: HashMap<String, VecDeque<u64>>,
    values: BTreeMap<u64, Held>,
    /// Value hash → ids, to find a value without comparing it to every other.
    by_hash: HashMap<u64, Vec<u64>>,
    /// Last-recorded tick → id: the front is the next value the budget drops.
    recency: BTreeMap<u64, u64>,
    hasher: RandomState,
    next_id: u64,
    tick: u64,
    pattern_bytes: usize,
}

struct Held {
    value: Zeroizing<Vec<u8>>,
    hash: u64,
    patterns: Arc<PatternList>,
    bytes: usize,
    tick: u64,
    /// Keys whose history holds this value.
    refs: usize,
}

impl Retained {
    pub(super) fn new(min_len: usize, max_pattern_bytes: usize) -> Self {
        Self {
            min_len,
            max_pattern_bytes,
            keys: HashMap::new(),
            values: BTreeMap::new(),
            by_hash: HashMap::new(),
            recency: BTreeMap::new(),
            hasher: RandomState::new(),
            next_id: 0,
            tick: 0,
            pattern_bytes: 0,
        }
    }

    /// Whether `value` is held (under any key).
    pub(super) fn holds(&self, value: &[u8]) -> bool {
        self.find(self.hasher.hash_one(value), value).is_some()
    }

    /// Records `value` as the current value of `key` and returns its id. A
    /// value already held keeps its id and becomes the most recent again. A
    /// new value's patterns are `patterns` when the caller derived them
    /// already. Errors, recording nothing, when the value is too short to mask
    /// or its patterns alone exceed the budget.
    pub(super) fn record(
        &mut self,
        key: &str,
        value: &[u8],
        patterns: Option<PatternList>,
        dropped: &mut Dropped,
    ) -> Result<u64, MaskError> {
        let hash = self.hasher.hash_one(value);
        let tick = self.tick;
        self.tick += 1;
        let id = match self.find(hash, value) {
            Some(id) => {
                self.touch(id, tick);
                id
            }
            None => self.insert_new(hash, value, patterns, tick)?,
        };
        let history = self.keys.entry(key.to_owned()).or_default();
        history.retain(|i| self.values.contains_key(i));
        match history.iter().position(|&i| i == id) {
            Some(pos) => {
                history.remove(pos);
                history.push_back(id);
            }
            None => {
                history.push_back(id);
                if let Some(held) = self.values.get_mut(&id) {
                    held.refs += 1;
                }
            }
        }
        let mut released = Vec::new();
        while history.len() > MAX_PREVIOUS_VALUES + 1 {
            released.extend(history.pop_front());
        }
        for old in released {
            let unused = self.values.get_mut(&old).is_some_and(|held| {
                held.refs -= 1;
                held.refs == 0
            });
            if unused {
                self.remove(old);
                dropped.by_history += 1;
            }
        }
        Ok(id)
    }

    fn find(&self, hash: u64, value: &[u8]) -> Option<u64> {
        let ids = self.by_hash.get(&hash)?;
        ids.iter().copied().find(|id| self.values.get(id).is_some_and(|h| h.value.as_slice() == value))
    }

    fn touch(&mut self, id: u64, tick: u64) {
        if let Some(held) = self.values.get_mut(&id) {
            self.recency.remove(&held.tick);
            held.tick = tick;
            self.recency.insert(tick, id);
        }
    }

    fn insert_new(
        &mut self,
        hash: u64,
        value: &[u8],
        patterns: Option<PatternList>,
        tick: u64,
    ) -> Result<u64, MaskError> {
        if !is_maskable(value, self.min_len) {
            return Err(MaskError::TooShort { min_len: self.min_len });
        }
        let patterns = patterns.unwrap_or_else(|| derive_patterns(value, self.min_len));
        let bytes = patterns.iter().map(|p| p.len()).sum();
        if bytes > self.max_pattern_bytes {
            return Err(MaskError::TooLarge { bytes, limit: self.max_pattern_bytes });
        }
        let id = self.next_id;
        self.next_id += 1;
        let held = Held {
            value: Zeroizing::new(value.to_vec()),
            hash,
            patterns: Arc::new(patterns),
            bytes,
            tick,
            refs: 0,
        };
        self.values.insert(id, held);
        self.by_hash.entry(hash).or_default().push(id);
        self.recency.insert(tick, id);
        self.pattern_bytes += bytes;
        Ok(id)
    }

    fn remove(&mut self, id: u64) {
        let Some(held) = self.values.remove(&id) else { return };
        self.recency.remove(&held.tick);
        if let Some(ids) = self.by_hash.get_mut(&held.hash) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_hash.remove(&held.hash);
            }
        }
        self.pattern_bytes -= held.bytes;
    }

    /// Drops the least recently recorded values until the set fits its budget.
    pub(super) fn evict_over_budget(&mut self, dropped: &mut Dropped) {
        while self.pattern_bytes > self.max_pattern_bytes {
            let Some((_, &id)) = self.recency.iter().next() else { break };
            let bytes = self.values.get(&id).map_or(0, |h| h.bytes);
            self.remove(id);
            dropped.by_budget += 1;
            dropped.budget_bytes += bytes;
        }
    }

    /// Forgets keys whose values have all been dropped.
    pub(super) fn sweep(&mut self) {
        let values = &self.values;
        self.keys.retain(|_, history| {
            history.retain(|i| values.contains_key(i));
            !history.is_empty()
        });
    }

    /// The patterns of every value whose id is in `ids`.
    pub(super) fn patterns_in(&self, ids: impl RangeBounds<u64>) -> Vec<Arc<PatternList>> {
        self.values.range(ids).map(|(_, held)| Arc::clone(&held.patterns)).collect()
    }

    /// The id the next new value gets: every value held has a smaller one.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Forgets every value; ids keep increasing.
    pub(super) fn clear(&mut self) {
        let next_id = self.next_id;
        *self = Self::new(self.min_len, self.max_pattern_bytes);
        self.next_id = next_id;
    }

    pub(super) fn pattern_bytes(&self) -> usize {
        self.pattern_bytes
    }

    pub(super) fn value_count(&self) -> usize {
        self.values.len()
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(r: &mut Retained, key: &str, value: &str) -> u64 {
        r.record(key, value.as_bytes(), None, &mut Dropped::default()).expect("record")
    }

    #[test]
    fn a_value_is_stored_once_for_many_keys() {
        let mut r = Retained::new(4, 1 << 20);
        let a = record(&mut r, "c1/TOKEN", "shared-token-value");
        let bytes = r.pattern_bytes();
        let b = record(&mut r, "c2/TOKEN", "shared-token-value");
        assert_eq!(a, b);
        assert_eq!((r.value_count(), r.pattern_bytes(), r.key_count()), (1, bytes, 2));
        assert_eq!(r.next_id(), 1);
    }

    #[test]
    fn history_drops_a_value_only_when_no_key_holds_it() {
        let mut r = Retained::new(4, 1 << 20);
        record(&mut r, "other/KEEP", "value-00");
        let mut dropped = Dropped::default();
        for i in 0..MAX_PREVIOUS_VALUES + 3 {
            r.record("s/ROT", format!("value-{i:02}").as_bytes(), None, &mut dropped).expect("record");
        }
        // value-00 left ROT's history but other/KEEP still holds it; value-01 is gone.
        assert_eq!(dropped.by_history, 1);
        assert_eq!(r.value_count(), MAX_PREVIOUS_VALUES + 2);
        assert!(r.holds(b"value-00"));
        assert!(!r.holds(b"value-01"));
    }

    #[test]
    fn budget_drops_the_least_recently_recorded() {
        let bytes = |v: &str| derive_patterns(v.as_bytes(), 4).iter().map(|p| p.len()).sum::<usize>();
        let values = ["first-value-xyz", "other-value-xyz", "third-value-xyz"];
        assert!(values.iter().all(|v| bytes(v) == bytes(values[0])));
        let mut r = Retained::new(4, 2 * bytes(values[0]));
        let first = record(&mut r, "s/A", values[0]);
        record(&mut r, "s/B", values[1]);
        record(&mut r, "s/A2", values[0]); // recorded again: now the most recent
        let mut dropped = Dropped::default();
        r.record("s/C", values[2].as_bytes(), None, &mut dropped).expect("record");
        r.evict_over_budget(&mut dropped);
        assert_eq!((dropped.by_budget, dropped.budget_bytes), (1, bytes(values[1])));
        assert!(r.values.contains_key(&first), "the re-recorded value stays");
        assert!(!r.holds(values[1].as_bytes()));
        assert_eq!(r.pattern_bytes(), 2 * bytes(values[0]));
    }

    #[test]
    fn ids_survive_a_clear() {
        let mut r = Retained::new(4, 1 << 20);
        record(&mut r, "s/A", "value-one");
        r.clear();
        assert_eq!(r.value_count(), 0);
        assert_eq!(record(&mut r, "s/A", "value-one"), 1);
    }

    #[test]
    fn sweep_forgets_keys_without_values() {
        let mut r = Retained::new(4, 1 << 20);
        let id = record(&mut r, "s/GONE", "value-gone");
        record(&mut r, "s/KEPT", "value-kept");
        r.remove(id);
        r.sweep();
        assert_eq!(r.key_count(), 1);
    }
}
