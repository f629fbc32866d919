//! [`MaskSet`]: every value the service has held, and the masker that hides
//! them.
//!
//! Adding values must stay cheap however large the set is, and must never
//! stall the async runtime. So the published masker searches a few layers
//! (see `layers`): a large stable layer compiled by a background merge, and
//! small layers above it for the values recorded since. An update compiles
//! only the small recent layer, once for all its values; concurrent updates
//! share one compilation. All layers are searched together, so matches across
//! them merge exactly as in one automaton.
//!
//! Invariant: when [`Staged::publish`] (or [`MaskSet::extend`]) returns, the
//! current masker hides every value recorded before the call. A failed
//! compilation publishes a failed masker, which refuses to mask (fail closed).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use super::layers::{Compiled, Layers};
use super::matcher::{Layer, Masker};
use super::retained::{Dropped, PatternList, Retained};
use super::tally::{OutputTotals, Tally};
use super::{DEFAULT_MAX_PATTERN_BYTES, MaskError, derive_patterns, is_maskable};

/// Updates of at most this many values are recorded on the caller's thread by
/// [`MaskSet::extend_async`] (deriving a few values' patterns is cheap).
const INLINE_ITEMS: usize = 4;

/// Every secret value the service has held, and the masker compiled from
/// them. Thread-safe; share it in an `Arc`.
///
/// Values are grouped under opaque caller-chosen keys. Each key keeps its
/// current value and up to [`MAX_PREVIOUS_VALUES`](super::MAX_PREVIOUS_VALUES)
/// previous ones, and the set keeps at most its pattern byte budget in total;
/// beyond either bound the least recently recorded values are dropped (and
/// logged, by count only). Nothing else removes a value, so secrets deleted
/// elsewhere stay masked.
pub struct MaskSet {
    shared: Arc<Shared>,
}

struct Shared {
    min_len: usize,
    // std lock: bookkeeping only, never held while compiling.
    retained: Mutex<Retained>,
    // std lock: held while the recent layer is compiled and published, so
    // publications are ordered; updates waiting here usually find their values
    // already covered by the build they waited for. Never held across `.await`.
    layers: Mutex<Layers>,
    /// Signalled when a background merge ends.
    merge_done: Condvar,
    /// Every value with a smaller id is hidden by `current`.
    covered: AtomicU64,
    current: ArcSwap<Masker>,
    builds: AtomicU64,
    merges: AtomicU64,
    /// What every masker of this set has masked.
    tally: Arc<Tally>,
}

/// Counters of compilations, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Recent-layer compilations (one per update that added a value).
    pub builds: u64,
    /// Stable-layer compilations (merges).
    pub merges: u64,
}

/// Values recorded by [`MaskSet::stage`], not necessarily hidden yet.
#[must_use = "the values are hidden only once published"]
pub struct Staged {
    shared: Arc<Shared>,
    upto: u64,
    error: Option<MaskError>,
}

impl Staged {
    /// Whether the current masker already hides the staged values, so
    /// [`publish`](Self::publish) returns at once without compiling.
    pub fn is_published(&self) -> bool {
        self.shared.covered.load(Ordering::Acquire) >= self.upto
    }

    /// Compiles and publishes the staged values (unless a concurrent update
    /// already did), blocking. Returns the compilation's error, else the
    /// first error of staging, if any.
    pub fn publish(self) -> Result<(), MaskError> {
        Shared::publish(&self.shared, self.upto)?;
        self.error.map_or(Ok(()), Err)
    }
}

impl MaskSet {
    /// An empty set whose derived patterns must be at least `min_len` bytes,
    /// with the default budget of [`DEFAULT_MAX_PATTERN_BYTES`].
    pub fn new(min_len: usize) -> Self {
        Self::with_max_pattern_bytes(min_len, DEFAULT_MAX_PATTERN_BYTES)
    }

    /// Like [`new`](Self::new) with a custom pattern byte budget.
    pub fn with_max_pattern_bytes(min_len: usize, max_pattern_bytes: usize) -> Self {
        let tally = Arc::new(Tally::default());
        Self {
            shared: Arc::new(Shared {
                min_len,
                retained: Mutex::new(Retained::new(min_len, max_pattern_bytes)),
                layers: Mutex::new(Layers::new(0)),
                merge_done: Condvar::new(),
                covered: AtomicU64::new(0),
                current: ArcSwap::from_pointee(Masker::empty().counted(&tally)),
                builds: AtomicU64::new(0),
                merges: AtomicU64::new(0),
                tally,
            }),
        }
    }

    /// Minimum pattern length of this set.
    pub fn min_len(&self) -> usize {
        self.shared.min_len
    }

    /// Whether `value` can be masked by this set (see [`is_maskable`]).
    pub fn is_maskable(&self, value: &[u8]) -> bool {
        is_maskable(value, self.min_len())
    }

    /// Records `value` as the current value of `key`, blocking until the
    /// masker hides it (see [`extend`](Self::extend)).
    pub fn insert(&self, key: &str, value: &[u8]) -> Result<(), MaskError> {
        self.extend([(key, value)])
    }

    /// Records several values and publishes them with a single compilation,
    /// blocking; when this returns, [`masker`](Self::masker) hides them. This
    /// is how start-up code adds the service's own keys. A value already held
    /// only becomes recent again, without a compilation.
    ///
    /// Every item is processed; the first error is returned: a value too short
    /// or too large (not recorded), or a failed compilation (the values are
    /// recorded and the masker refuses to mask until a later compilation
    /// succeeds). Either way the caller must not expose the values.
    pub fn extend<'a, I>(&self, items: I) -> Result<(), MaskError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.stage(items).publish()
    }

    /// Records values without compiling: cheap apart from deriving the
    /// patterns of new values, which happens outside the set's lock.
    /// [`Staged::publish`] makes them hidden.
    pub fn stage<'a, I>(&self, items: I) -> Staged
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let items: Vec<(&str, &[u8])> = items.into_iter().collect();
        let held: Vec<bool> = {
            let retained = self.shared.retained();
            items.iter().map(|(_, value)| retained.holds(value)).collect()
        };
        let mut derived: Vec<Option<PatternList>> = items
            .iter()
            .zip(&held)
            .map(|((_, value), &held)| {
                (!held && self.is_maskable(value)).then(|| derive_patterns(value, self.shared.min_len))
            })
            .collect();
        let mut dropped = Dropped::default();
        let mut error = None;
        let mut upto = 0;
        {
            let mut retained = self.shared.retained();
            for ((key, value), patterns) in items.into_iter().zip(derived.iter_mut()) {
                match retained.record(key, value, patterns.take(), &mut dropped) {
                    Ok(id) => upto = upto.max(id + 1),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            retained.evict_over_budget(&mut dropped);
        }
        log_dropped(&dropped);
        Staged { shared: Arc::clone(&self.shared), upto, error }
    }

    /// Like [`extend`](Self::extend), for async callers: a few values are
    /// recorded on the caller's thread, and every compilation (and the
    /// recording of large batches) runs on the blocking pool, so the async
    /// workers keep serving. Returns once the values are hidden.
    pub async fn extend_async(&self, items: Vec<(String, Zeroizing<Vec<u8>>)>) -> Result<(), MaskError> {
        if items.is_empty() {
            return Ok(());
        }
        if items.len() <= INLINE_ITEMS {
            let staged = self.stage(items.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            if staged.is_published() {
                return staged.publish();
            }
            return blocking(move || staged.publish()).await;
        }
        let set = Self { shared: Arc::clone(&self.shared) };
        blocking(move || set.extend(items.iter().map(|(k, v)| (k.as_str(), v.as_slice())))).await
    }

    /// The current masker. Lock-free; hides every value recorded by a call
    /// that returned before this one.
    pub fn masker(&self) -> Arc<Masker> {
        self.shared.current.load_full()
    }

    /// Merges every value into the stable layer now, on this thread (the
    /// service leaves this to a background thread). Waits for a running
    /// background merge first.
    pub fn compact(&self) {
        let target = {
            let mut layers = self.shared.layers();
            while layers.merging {
                layers = self.shared.merge_done.wait(layers).unwrap_or_else(PoisonError::into_inner);
            }
            layers.merging = true;
            layers.merge_target()
        };
        self.shared.merge(target);
        let mut layers = self.shared.layers();
        layers.merging = false;
        self.shared.merge_done.notify_all();
    }

    /// Waits until no background merge is running.
    pub fn settle(&self) {
        let mut layers = self.shared.layers();
        while layers.merging {
            layers = self.shared.merge_done.wait(layers).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Compilations so far.
    pub fn stats(&self) -> MaskStats {
        MaskStats {
            builds: self.shared.builds.load(Ordering::Relaxed),
            merges: self.shared.merges.load(Ordering::Relaxed),
        }
    }

    /// Output bytes searched and regions replaced by this set's maskers since it was made.
    pub fn output_totals(&self) -> OutputTotals {
        self.shared.tally.totals()
    }

    /// Total pattern bytes held (counted per value, before deduplication).
    pub fn pattern_bytes(&self) -> usize {
        self.shared.retained().pattern_bytes()
    }

    /// Number of distinct values held across all keys.
    pub fn value_count(&self) -> usize {
        self.shared.retained().value_count()
    }

    /// Forgets every value. Meant for tests: in service code values are
    /// never removed, so that deleted secrets stay masked.
    pub fn clear(&self) {
        self.settle();
        let mut layers = self.shared.layers();
        let mut retained = self.shared.retained();
        retained.clear();
        let next = retained.next_id();
        *layers = Layers::new(next);
        self.shared.current.store(Arc::new(Masker::empty().counted(&self.shared.tally)));
        self.shared.covered.store(next, Ordering::Release);
    }
}

impl Shared {
    fn retained(&self) -> MutexGuard<'_, Retained> {
        self.retained.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn layers(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every value with an id below `upto` hidden.
    fn publish(this: &Arc<Self>, upto: u64) -> Result<(), MaskError> {
        if this.covered.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        let mut layers = this.layers();
        // The build this caller waited for may have covered its values.
        if this.covered.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        let result = this.rebuild_recent(&mut layers);
        Self::start_merge_if_due(this, &mut layers);
        result
    }

    /// Compiles the values recorded since the recent layer began and
    /// publishes them beside the other layers.
    fn rebuild_recent(&self, layers: &mut Layers) -> Result<(), MaskError> {
        let (lists, upto) = {
            let retained = self.retained();
            (retained.patterns_in(layers.recent_from()..), retained.next_id())
        };
        self.builds.fetch_add(1, Ordering::Relaxed);
        let result = match compile(&lists) {
            Ok(recent) => {
                layers.set_recent(recent, upto);
                self.current.store(Arc::new(layers.masker().counted(&self.tally)));
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                self.current.store(Arc::new(Masker::failed(e).counted(&self.tally)));
                Err(MaskError::Unavailable(reason))
            }
        };
        self.covered.fetch_max(upto, Ordering::AcqRel);
        result
    }

    fn start_merge_if_due(this: &Arc<Self>, layers: &mut Layers) {
        if layers.merging || !layers.merge_due() {
            return;
        }
        layers.merging = true;
        let target = layers.merge_target();
        let shared = Arc::clone(this);
        let spawned = std::thread::Builder::new().name("mask-merge".into()).spawn(move || {
            let mut target = target;
            loop {
                shared.merge(target);
                let mut layers = shared.layers();
                if !layers.merge_due() {
                    layers.merging = false;
                    shared.merge_done.notify_all();
                    break;
                }
                target = layers.merge_target();
            }
        });
        if spawned.is_err() {
            // The sealed layers stay published until a later merge can start.
            tracing::warn!("cannot start the mask merge thread");
            layers.merging = false;
        }
    }

    /// Compiles every value with an id below `target` into a new stable
    /// layer, which replaces the layers holding those ids.
    fn merge(&self, target: u64) {
        let lists = {
            let mut retained = self.retained();
            retained.sweep();
            retained.patterns_in(..target)
        };
        let compiled = compile(&lists);
        let mut layers = self.layers();
        match compiled {
            Ok(stable) => {
                layers.set_stable(stable, target);
                self.merges.fetch_add(1, Ordering::Relaxed);
                self.current.store(Arc::new(layers.masker().counted(&self.tally)));
            }
            Err(_) => {
                tracing::error!("mask merge failed; recompiling the values above the stable layer");
                layers.unseal();
                // A failure here publishes a failed masker: fail closed until a later
                // compilation succeeds.
                let _ = self.rebuild_recent(&mut layers);
            }
        }
    }
}

/// One layer from the patterns of several values, deduplicated; with the
/// pattern bytes it holds.
fn compile(lists: &[Arc<PatternList>]) -> Result<Compiled, MaskError> {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let patterns: Vec<&[u8]> =
        lists.iter().flat_map(|l| l.iter()).map(|p| p.as_slice()).filter(|p| seen.insert(p)).collect();
    let bytes = patterns.iter().map(|p| p.len()).sum();
    Ok(Compiled { layer: Layer::build(&patterns)?.map(Arc::new), bytes })
}

async fn blocking<F>(f: F) -> Result<(), MaskError>
where
    F: FnOnce() -> Result<(), MaskError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(MaskError::Unavailable("mask compilation task failed".into())))
}

fn log_dropped(dropped: &Dropped) {
    if dropped.by_history > 0 {
        tracing::warn!(
            dropped_values = dropped.by_history,
            limit = super::MAX_PREVIOUS_VALUES,
            "key has too many previous values; oldest dropped from the mask set"
        );
    }
    if dropped.by_budget > 0 {
        tracing::warn!(
            dropped_values = dropped.by_budget,
            dropped_pattern_bytes = dropped.budget_bytes,
            "mask set over its pattern byte budget; oldest values dropped"
        );
    }
}

impl fmt::Debug for MaskSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retained = self.shared.retained();
        f.debug_struct("MaskSet")
            .field("keys", &retained.key_count())
            .field("values", &retained.value_count())
            .field("pattern_bytes", &retained.pattern_bytes())
            .field("min_len", &self.shared.min_len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_compiles_only_the_values_recorded_since_the_last_merge() {
        let set = MaskSet::new(4);
        let values: Vec<String> = (0..2000).map(|i| format!("stable-value-{i:05}")).collect();
        let keys: Vec<String> = (0..values.len()).map(|i| format!("s/S{i}")).collect();
        set.extend(keys.iter().map(String::as_str).zip(values.iter().map(|v| v.as_bytes()))).expect("extend");
        set.settle();
        set.compact();
        let stable_bytes = set.shared.layers().sizes().0;
        assert!(stable_bytes > 100_000, "{stable_bytes}");
        set.insert("s/NEW", b"one-new-value").expect("insert");
        let new_bytes: usize = derive_patterns(b"one-new-value", 4).iter().map(|p| p.len()).sum();
        assert_eq!(set.shared.layers().sizes().1, new_bytes);
        assert_eq!(set.masker().mask(b"one-new-value").expect("mask"), crate::mask::REPLACEMENT);
        assert_eq!(set.masker().mask(b"stable-value-01234").expect("mask"), crate::mask::REPLACEMENT);
    }

    #[test]
    fn clear_forgets_everything_and_later_values_are_compiled() {
        let set = MaskSet::new(4);
        set.insert("s/A", b"value-before-clear").expect("insert");
        set.compact();
        set.clear();
        assert_eq!(set.masker().mask(b"value-before-clear").expect("mask"), b"value-before-clear");
        set.insert("s/A", b"value-after-clear").expect("insert");
        assert_eq!(set.masker().mask(b"value-after-clear").expect("mask"), crate::mask::REPLACEMENT);
    }

    #[tokio::test]
    async fn extend_async_hides_values_before_returning() {
        let set = MaskSet::new(4);
        let few = vec![("s/F".to_owned(), Zeroizing::new(b"few-values-one".to_vec()))];
        set.extend_async(few).await.expect("extend");
        assert_eq!(set.masker().mask(b"few-values-one").expect("mask"), crate::mask::REPLACEMENT);
        let many: Vec<(String, Zeroizing<Vec<u8>>)> = (0..20)
            .map(|i| (format!("s/M{i}"), Zeroizing::new(format!("many-values-{i:02}").into_bytes())))
            .collect();
        set.extend_async(many).await.expect("extend");
        assert_eq!(set.masker().mask(b"many-values-19").expect("mask"), crate::mask::REPLACEMENT);
        let short = vec![("s/X".to_owned(), Zeroizing::new(b"abc".to_vec()))];
        assert!(matches!(set.extend_async(short).await, Err(MaskError::TooShort { .. })));
    }
}
