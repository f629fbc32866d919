//! Masking of secret values in command output.
//!
//! This module owns the bytes side of masking: deriving the patterns under
//! which a secret may be printed ([`derive_patterns`]), remembering every value
//! the service has held ([`MaskSet`]), and replacing every occurrence of any
//! pattern with [`REPLACEMENT`], either in one buffer ([`Masker::mask`]) or in
//! output that arrives in chunks ([`StreamMasker`]).
//!
//! It deliberately does no I/O, knows nothing about HTTP, and has no notion of
//! scopes or secret names: keys are opaque strings chosen by the caller.
//!
//! Key invariant: masking fails closed. When patterns could not be compiled,
//! or anything else goes wrong, the masking calls return an error and the
//! caller must withhold the output; a value is never emitted unmasked.
//!
//! Matching semantics: every occurrence of every pattern is found, overlapping
//! ones included, and the union of those byte ranges is hidden. Ranges that
//! overlap or merely touch form one hidden region, replaced by a single
//! [`REPLACEMENT`]. Streaming and one-shot masking give identical bytes.
//!
//! The compiled automaton keeps its own copy of the patterns, which the
//! `aho-corasick` crate does not zeroize; everything this module holds itself
//! is zeroized on drop.

mod derive;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use aho_corasick::{AhoCorasick, Input, MatchKind};
use arc_swap::ArcSwap;
use zeroize::Zeroizing;

pub use derive::{MAX_ENCODED_VALUE_LEN, derive_patterns, is_maskable};

/// Text that replaces each hidden region.
pub const REPLACEMENT: &[u8] = b"<secret-hidden>";

/// Previous values remembered per key, besides the current one.
pub const MAX_PREVIOUS_VALUES: usize = 8;

/// Default bound on the pattern bytes held by a [`MaskSet`] across all keys.
pub const DEFAULT_MAX_PATTERN_BYTES: usize = 4 * 1024 * 1024;

/// Why output could not be masked. Callers must withhold the output.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// The patterns could not be compiled, so nothing can be masked.
    #[error("mask automaton unavailable: {0}")]
    Unavailable(String),
    /// Searching failed; this is a bug, reported rather than risking a leak.
    #[error("mask search failed: {0}")]
    Search(String),
    /// A value is shorter than the minimum length, so it cannot be masked.
    #[error("value of {len} bytes is shorter than the minimum of {min_len} and cannot be masked")]
    TooShort {
        /// Length of the value.
        len: usize,
        /// Minimum length of the set.
        min_len: usize,
    },
    /// A value's patterns alone exceed the set's pattern byte budget.
    #[error("value needs {bytes} pattern bytes, more than the limit of {limit}")]
    TooLarge {
        /// Pattern bytes the value needs.
        bytes: usize,
        /// The set's budget.
        limit: usize,
    },
}

// ---------------------------------------------------------------------------
// Masker

/// Immutable compiled patterns, cheap to share behind an `Arc`.
pub struct Masker {
    state: State,
}

enum State {
    Empty,
    Ready(Box<Compiled>),
    Failed(String),
}

struct Compiled {
    ac: AhoCorasick,
    filter: Option<Filter>,
    max_len: usize,
}

impl Masker {
    /// A masker with no patterns: output passes through unchanged.
    pub fn empty() -> Self {
        Self {
            state: State::Empty,
        }
    }

    /// Compiles `patterns` (empty ones are ignored). A build failure yields a
    /// masker in the failed state, whose every call returns an error.
    pub fn from_patterns<I, P>(patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let owned: Vec<Zeroizing<Vec<u8>>> = patterns
            .into_iter()
            .filter(|p| !p.as_ref().is_empty())
            .map(|p| Zeroizing::new(p.as_ref().to_vec()))
            .collect();
        let refs: Vec<&[u8]> = owned.iter().map(|p| p.as_slice()).collect();
        Self::build(&refs)
    }

    fn build(patterns: &[&[u8]]) -> Self {
        if patterns.is_empty() {
            return Self::empty();
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(patterns);
        let state = match ac {
            Ok(ac) => {
                let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
                State::Ready(Box::new(Compiled {
                    ac,
                    filter: Filter::build(patterns, max_len),
                    max_len,
                }))
            }
            Err(e) => {
                tracing::error!(patterns = patterns.len(), "mask automaton build failed");
                State::Failed(e.to_string())
            }
        };
        Self { state }
    }

    /// Length of the longest pattern (0 when there are none).
    pub fn max_pattern_len(&self) -> usize {
        match &self.state {
            State::Ready(c) => c.max_len,
            _ => 0,
        }
    }

    /// Number of compiled patterns.
    pub fn pattern_count(&self) -> usize {
        match &self.state {
            State::Ready(c) => c.ac.patterns_len(),
            _ => 0,
        }
    }

    /// Whether the masker is in the failed state (every call errors).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    fn compiled(&self) -> Result<Option<&Compiled>, MaskError> {
        match &self.state {
            State::Empty => Ok(None),
            State::Ready(c) => Ok(Some(c)),
            State::Failed(e) => Err(MaskError::Unavailable(e.clone())),
        }
    }

    /// Masks `input` in one go: every hidden region becomes one
    /// [`REPLACEMENT`]. Errors only when the masker is unusable.
    pub fn mask(&self, input: &[u8]) -> Result<Vec<u8>, MaskError> {
        let Some(c) = self.compiled()? else {
            return Ok(input.to_vec());
        };
        let regions = c.regions(input)?;
        let mut out = Vec::with_capacity(input.len());
        let mut open = None;
        emit(input, &regions, &mut open, input.len(), &mut out)?;
        Ok(out)
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.pattern_count())
            .field("max_pattern_len", &self.max_pattern_len())
            .field("failed", &self.is_failed())
            .finish()
    }
}

impl Compiled {
    /// Merged, sorted hidden regions of `hay` (touching ones merged).
    fn regions(&self, hay: &[u8]) -> Result<Vec<(usize, usize)>, MaskError> {
        let mut regions = Regions::default();
        match &self.filter {
            None => self.verify(hay, 0, hay.len(), &mut regions)?,
            Some(filter) => {
                let mut window: Option<(usize, usize)> = None;
                for (start, end) in filter.candidates(hay, self.max_len) {
                    match &mut window {
                        Some((_, we)) if start <= *we => *we = (*we).max(end),
                        _ => {
                            if let Some((ws, we)) = window.take() {
                                self.verify(hay, ws, we, &mut regions)?;
                            }
                            window = Some((start, end));
                        }
                    }
                }
                if let Some((ws, we)) = window {
                    self.verify(hay, ws, we, &mut regions)?;
                }
            }
        }
        Ok(regions.finish())
    }

    fn verify(&self, hay: &[u8], start: usize, end: usize, regions: &mut Regions) -> Result<(), MaskError> {
        let slice = hay
            .get(start..end)
            .ok_or_else(|| MaskError::Search("candidate window out of range".into()))?;
        let iter = self
            .ac
            .try_find_overlapping_iter(Input::new(slice))
            .map_err(|e| MaskError::Search(e.to_string()))?;
        for m in iter {
            regions.add(start + m.start(), start + m.end());
        }
        Ok(())
    }
}

/// Union of match intervals. Overlapping search reports matches by increasing
/// end, so a stack merge is linear; anything else falls back to sorting.
#[derive(Default)]
struct Regions {
    merged: Vec<(usize, usize)>,
    unsorted: bool,
}

impl Regions {
    fn add(&mut self, start: usize, end: usize) {
        if self.unsorted {
            self.merged.push((start, end));
            return;
        }
        match self.merged.last() {
            Some(&(_, last_end)) if end < last_end => {
                self.unsorted = true;
                self.merged.push((start, end));
            }
            _ => {
                let mut start = start;
                while let Some(&(s, e)) = self.merged.last() {
                    if e < start {
                        break;
                    }
                    start = start.min(s);
                    self.merged.pop();
                }
                self.merged.push((start, end));
            }
        }
    }

    fn finish(mut self) -> Vec<(usize, usize)> {
        if self.unsorted {
            self.merged.sort_unstable();
            let mut out: Vec<(usize, usize)> = Vec::with_capacity(self.merged.len());
            for (s, e) in self.merged {
                match out.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => out.push((s, e)),
                }
            }
            return out;
        }
        self.merged
    }
}

/// Writes the decided part `[0, decided)` of `work` to `out`.
///
/// `open` is the end of the hidden region whose marker is already out (it may
/// lie beyond `decided`); regions starting at or before it continue it
/// without a new marker. A region starting at or after `decided` is left for
/// later because a match not yet seen could still start before it.
fn emit(
    work: &[u8],
    regions: &[(usize, usize)],
    open: &mut Option<usize>,
    decided: usize,
    out: &mut Vec<u8>,
) -> Result<(), MaskError> {
    let out_of_range = || MaskError::Search("emit range out of bounds".into());
    let mut cur = 0;
    for &(start, end) in regions {
        if let Some(h) = open.as_mut()
            && start <= *h
        {
            *h = (*h).max(end);
            continue;
        }
        if start >= decided {
            break;
        }
        let from = cur.max(open.unwrap_or(0));
        if from < start {
            out.extend_from_slice(work.get(from..start).ok_or_else(out_of_range)?);
        }
        out.extend_from_slice(REPLACEMENT);
        *open = Some(end);
        cur = start;
    }
    let from = cur.max(open.unwrap_or(0));
    if from < decided {
        out.extend_from_slice(work.get(from..decided).ok_or_else(out_of_range)?);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Candidate filter

/// Sampling filter that finds the few places worth an overlapping search.
///
/// Every pattern is at least `min_len` long, so an occurrence always contains
/// a `q`-gram starting at a multiple of `stride = min_len - q + 1` and at
/// most `stride - 1` bytes into the occurrence. Those leading q-grams of all
/// patterns go into a blocked Bloom filter; the text is probed once every
/// `stride` bytes, and only windows around hits are searched. No false
/// negatives are possible; false positives only cost a small search.
struct Filter {
    q: usize,
    stride: usize,
    gram_mask: u64,
    shift: u32,
    table: Box<[u64]>,
}

/// Below this, q-grams are too short to be selective; search everything.
const FILTER_MIN_PATTERN_LEN: usize = 6;
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

impl Filter {
    fn build(patterns: &[&[u8]], _max_len: usize) -> Option<Self> {
        let min_len = patterns.iter().map(|p| p.len()).min()?;
        if min_len < FILTER_MIN_PATTERN_LEN {
            return None;
        }
        let q = (min_len / 2 + 1).min(8);
        let stride = min_len - q + 1;
        let grams: usize = patterns.len().saturating_mul(stride);
        // About 32 bits per gram keeps the false positive rate well under 1%.
        let words = (grams / 2).clamp(1024, 1 << 22).next_power_of_two();
        let mut filter = Self {
            q,
            stride,
            gram_mask: if q == 8 { u64::MAX } else { (1u64 << (8 * q)) - 1 },
            shift: 64 - words.trailing_zeros(),
            table: vec![0u64; words].into_boxed_slice(),
        };
        for p in patterns {
            for offset in 0..stride {
                if let Some(gram) = p.get(offset..offset + q) {
                    let (word, bits) = filter.slot(load_gram(gram));
                    if let Some(w) = filter.table.get_mut(word) {
                        *w |= bits;
                    }
                }
            }
        }
        Some(filter)
    }

    #[inline(always)]
    fn slot(&self, gram: u64) -> (usize, u64) {
        let h = (gram & self.gram_mask).wrapping_mul(HASH_MUL);
        let word = (h >> self.shift) as usize;
        let bits = (1u64 << ((h >> 20) & 63)) | (1u64 << ((h >> 26) & 63));
        (word, bits)
    }

    #[inline(always)]
    fn hit(&self, gram: u64) -> bool {
        let (word, bits) = self.slot(gram);
        self.table.get(word).is_some_and(|w| w & bits == bits)
    }

    /// Windows `[start, end)` that may contain an occurrence, in order.
    fn candidates<'a>(&'a self, hay: &'a [u8], max_len: usize) -> impl Iterator<Item = (usize, usize)> + 'a {
        let last = hay.len().checked_sub(self.q);
        let fast_end = hay.len().saturating_sub(7);
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            let last = last?;
            while pos < fast_end {
                let p = pos;
                pos += self.stride;
                let gram = match hay.get(p..p + 8) {
                    Some(b) => u64::from_le_bytes(b.try_into().unwrap_or_default()),
                    None => 0,
                };
                if self.hit(gram) {
                    return Some(self.window(p, max_len, hay.len()));
                }
            }
            while pos <= last {
                let p = pos;
                pos += self.stride;
                if self.hit(load_gram(hay.get(p..p + self.q).unwrap_or_default())) {
                    return Some(self.window(p, max_len, hay.len()));
                }
            }
            None
        })
    }

    fn window(&self, pos: usize, max_len: usize, len: usize) -> (usize, usize) {
        (pos.saturating_sub(self.stride - 1), pos.saturating_add(max_len).min(len))
    }
}

fn load_gram(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

// ---------------------------------------------------------------------------
// StreamMasker

/// Masks output that arrives in arbitrary chunks, such as pipe reads.
///
/// Holds back at most `max_pattern_len - 1` bytes plus an incomplete trailing
/// UTF-8 sequence, so every emitted chunk can be lossily decoded on its own.
/// The concatenation of all [`push`](Self::push) results and
/// [`finish`](Self::finish) equals [`Masker::mask`] of the whole input, however
/// it was split. A hidden region that keeps going is not buffered: its marker
/// is emitted once and the rest of the region is swallowed.
pub struct StreamMasker {
    masker: Arc<Masker>,
    /// Undecided bytes, which also serve as search context for the next chunk.
    held: Zeroizing<Vec<u8>>,
    /// End of the hidden region whose marker is out, relative to `held`.
    open: Option<usize>,
}

impl StreamMasker {
    /// Starts a stream masked with `masker`.
    pub fn new(masker: Arc<Masker>) -> Self {
        Self {
            masker,
            held: Zeroizing::new(Vec::new()),
            open: None,
        }
    }

    /// Adds `chunk` and returns the bytes that are safe to emit now.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, MaskError> {
        self.process(chunk, false)
    }

    /// Ends the stream and returns everything still held back.
    pub fn finish(mut self) -> Result<Vec<u8>, MaskError> {
        self.process(&[], true)
    }

    fn process(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, MaskError> {
        let compiled = self.masker.compiled()?;
        self.held.extend_from_slice(chunk);
        let work: &[u8] = &self.held;
        let (regions, keep) = match compiled {
            Some(c) => (c.regions(work)?, c.max_len.saturating_sub(1)),
            None => (Vec::new(), 0),
        };
        let decided = if last {
            work.len()
        } else {
            utf8_boundary(work, work.len().saturating_sub(keep))
        };
        let mut out = Vec::with_capacity(decided + REPLACEMENT.len());
        emit(work, &regions, &mut self.open, decided, &mut out)?;
        self.held.drain(..decided);
        // A region ending exactly at the new start still touches what follows.
        self.open = self.open.and_then(|h| h.checked_sub(decided));
        Ok(out)
    }

    /// Bytes currently held back.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }
}

impl fmt::Debug for StreamMasker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("masker", &self.masker)
            .field("held_bytes", &self.held.len())
            .field("in_hidden_region", &self.open.is_some())
            .finish()
    }
}

/// Moves `at` back to the start of a UTF-8 sequence that would straddle it.
fn utf8_boundary(bytes: &[u8], at: usize) -> usize {
    for i in (at.saturating_sub(3)..at).rev() {
        let Some(&b) = bytes.get(i) else { break };
        if b & 0xc0 == 0x80 {
            continue;
        }
        let len = match b {
            0xf0.. => 4,
            0xe0.. => 3,
            0xc0.. => 2,
            _ => 1,
        };
        return if i + len > at { i } else { at };
    }
    at
}

// ---------------------------------------------------------------------------
// MaskSet

/// Every secret value the service has held, and the masker compiled from
/// them. Thread-safe; share it in an `Arc`.
///
/// Values are grouped under opaque caller-chosen keys. Each key keeps its
/// current value and up to [`MAX_PREVIOUS_VALUES`] previous ones, and the set
/// keeps at most its pattern byte budget in total; beyond either bound the
/// least recently inserted values are dropped (and logged, by count only).
/// Nothing else removes a value, so secrets deleted elsewhere stay masked.
pub struct MaskSet {
    min_len: usize,
    max_pattern_bytes: usize,
    inner: Mutex<Inner>,
    current: ArcSwap<Masker>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, VecDeque<Stored>>,
    next_seq: u64,
    pattern_bytes: usize,
    values: usize,
}

struct Stored {
    seq: u64,
    value: Zeroizing<Vec<u8>>,
    patterns: Vec<Zeroizing<Vec<u8>>>,
    bytes: usize,
}

enum Added {
    New,
    Present,
}

impl MaskSet {
    /// An empty set whose derived patterns must be at least `min_len` bytes,
    /// with the default budget of [`DEFAULT_MAX_PATTERN_BYTES`].
    pub fn new(min_len: usize) -> Self {
        Self::with_max_pattern_bytes(min_len, DEFAULT_MAX_PATTERN_BYTES)
    }

    /// Like [`new`](Self::new) with a custom pattern byte budget.
    pub fn with_max_pattern_bytes(min_len: usize, max_pattern_bytes: usize) -> Self {
        Self {
            min_len,
            max_pattern_bytes,
            inner: Mutex::new(Inner::default()),
            current: ArcSwap::from_pointee(Masker::empty()),
        }
    }

    /// Minimum pattern length of this set.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// Whether `value` can be masked by this set (see [`is_maskable`]).
    pub fn is_maskable(&self, value: &[u8]) -> bool {
        is_maskable(value, self.min_len)
    }

    /// Records `value` as the current value of `key`.
    ///
    /// When this returns, [`masker`](Self::masker) hides the value. A value
    /// already held under `key` only becomes its most recent one again,
    /// without a rebuild. Errors when the value cannot be masked (too short
    /// or too large; nothing is recorded) or when the rebuilt masker failed
    /// (the value is recorded and the masker refuses to mask until a later
    /// rebuild succeeds); either way the caller must not expose the value.
    pub fn insert(&self, key: &str, value: &[u8]) -> Result<(), MaskError> {
        self.extend([(key, value)])
    }

    /// Records several values with a single rebuild. Every item is
    /// processed; the first error, if any, is returned.
    pub fn extend<'a, I>(&self, items: I) -> Result<(), MaskError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut first_err = None;
        let mut changed = false;
        for (key, value) in items {
            match self.add(&mut inner, key, value) {
                Ok(Added::New) => changed = true,
                Ok(Added::Present) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if changed {
            self.evict_over_budget(&mut inner);
            // Built under the lock so concurrent inserts publish in order;
            // readers keep using the previous masker meanwhile.
            let masker = inner.build();
            let failed = masker.compiled().err();
            self.current.store(Arc::new(masker));
            if let Some(e) = failed {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn add(&self, inner: &mut Inner, key: &str, value: &[u8]) -> Result<Added, MaskError> {
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(history) = inner.keys.get_mut(key)
            && let Some(i) = history.iter().position(|s| s.value.as_slice() == value)
        {
            if let Some(mut stored) = history.remove(i) {
                stored.seq = seq;
                history.push_back(stored);
            }
            return Ok(Added::Present);
        }
        if !self.is_maskable(value) {
            return Err(MaskError::TooShort {
                len: value.len(),
                min_len: self.min_len,
            });
        }
        let patterns = derive_patterns(value, self.min_len);
        let bytes = patterns.iter().map(|p| p.len()).sum();
        if bytes > self.max_pattern_bytes {
            return Err(MaskError::TooLarge {
                bytes,
                limit: self.max_pattern_bytes,
            });
        }
        let history = inner.keys.entry(key.to_owned()).or_default();
        history.push_back(Stored {
            seq,
            value: Zeroizing::new(value.to_vec()),
            patterns,
            bytes,
        });
        let mut dropped_bytes = 0;
        let mut dropped = 0;
        while history.len() > MAX_PREVIOUS_VALUES + 1 {
            if let Some(old) = history.pop_front() {
                dropped_bytes += old.bytes;
                dropped += 1;
            }
        }
        inner.pattern_bytes = inner.pattern_bytes + bytes - dropped_bytes;
        inner.values = inner.values + 1 - dropped;
        if dropped > 0 {
            tracing::warn!(
                dropped_values = dropped,
                limit = MAX_PREVIOUS_VALUES,
                "key has too many previous values; oldest dropped from the mask set"
            );
        }
        Ok(Added::New)
    }

    fn evict_over_budget(&self, inner: &mut Inner) {
        let (mut dropped, mut dropped_bytes) = (0usize, 0usize);
        while inner.pattern_bytes > self.max_pattern_bytes {
            let oldest = inner
                .keys
                .iter()
                .filter_map(|(k, h)| h.front().map(|s| (s.seq, k)))
                .min()
                .map(|(_, k)| k.clone());
            let Some(key) = oldest else { break };
            let Some(history) = inner.keys.get_mut(&key) else { break };
            if let Some(old) = history.pop_front() {
                inner.pattern_bytes -= old.bytes;
                inner.values -= 1;
                dropped += 1;
                dropped_bytes += old.bytes;
            }
            if history.is_empty() {
                inner.keys.remove(&key);
            }
        }
        if dropped > 0 {
            tracing::warn!(
                dropped_values = dropped,
                dropped_pattern_bytes = dropped_bytes,
                limit = self.max_pattern_bytes,
                "mask set over its pattern byte budget; oldest values dropped"
            );
        }
    }

    /// The current masker. Lock-free; hides every value inserted before the
    /// call.
    pub fn masker(&self) -> Arc<Masker> {
        self.current.load_full()
    }

    /// Total pattern bytes held (counted per value, before deduplication).
    pub fn pattern_bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pattern_bytes
    }

    /// Number of values held across all keys.
    pub fn value_count(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).values
    }

    /// Forgets every value. Meant for tests: in service code values are
    /// never removed, so that deleted secrets stay masked.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *inner = Inner::default();
        self.current.store(Arc::new(Masker::empty()));
    }
}

impl Inner {
    fn build(&self) -> Masker {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let patterns: Vec<&[u8]> = self
            .keys
            .values()
            .flatten()
            .flat_map(|s| s.patterns.iter())
            .map(|p| p.as_slice())
            .filter(|p| seen.insert(p))
            .collect();
        Masker::build(&patterns)
    }
}

impl fmt::Debug for MaskSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MaskSet")
            .field("keys", &inner.keys.len())
            .field("values", &inner.values)
            .field("pattern_bytes", &inner.pattern_bytes)
            .field("min_len", &self.min_len)
            .finish()
    }
}
