//! Compiled patterns and one-shot masking.
//!
//! A [`Masker`] searches one or more [`Layer`]s (an automaton plus its candidate filter) and
//! hides the union of everything any of them matches. Layers let the mask set add values by
//! compiling only the new ones: the union of the matches of several layers is the union of
//! the matches of one layer holding all their patterns, so layering never changes a result.
//!
//! Invariant: a masker in the failed state never returns input; every call errors.

use std::fmt;
use std::sync::Arc;

use aho_corasick::automaton::{Automaton, OverlappingState};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};
use zeroize::Zeroizing;

use super::prefilter::Filter;
use super::tally::Tally;
use super::{MaskError, REPLACEMENT};

/// Bytes masked per step by [`Masker::mask`]: small enough to stay in L2
/// between scanning and copying.
pub(super) const ONE_SHOT_BLOCK: usize = 256 * 1024;

/// Immutable compiled patterns, cheap to share behind an `Arc`.
pub struct Masker {
    state: State,
    /// The set's counters of masked output, when a set published this masker.
    tally: Option<Arc<Tally>>,
}

enum State {
    Empty,
    Ready(Compiled),
    Failed(String),
}

/// The layers of a usable masker, searched together.
pub(super) struct Compiled {
    layers: Vec<Arc<Layer>>,
    max_len: usize,
}

/// One compiled automaton and its candidate filter.
pub(super) struct Layer {
    /// The raw automaton rather than the `AhoCorasick` wrapper: streaming walks its states
    /// to learn how much of the output's end could still begin a match.
    ac: NFA,
    filter: Option<Filter>,
    max_len: usize,
}

impl Layer {
    /// Compiles `patterns` (none of them empty); `None` when there are none.
    pub(super) fn build(patterns: &[&[u8]]) -> Result<Option<Self>, MaskError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        // A contiguous NFA builds in about a millisecond per 16 KiB of patterns; the DFA the
        // builder would pick for a small set takes seconds for one long value. The sampling
        // filter does most scanning.
        let ac = NFA::builder().match_kind(MatchKind::Standard).build(patterns).map_err(|e| {
            tracing::error!(patterns = patterns.len(), "mask automaton build failed");
            MaskError::Unavailable(e.to_string())
        })?;
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        Ok(Some(Self { ac, filter: Filter::build(patterns), max_len }))
    }

    /// Number of compiled patterns.
    pub(super) fn pattern_count(&self) -> usize {
        self.ac.patterns_len()
    }

    /// Merged, sorted hidden regions of `hay` (touching ones merged).
    fn regions(&self, hay: &[u8]) -> Result<Vec<(usize, usize)>, MaskError> {
        let mut regions = Regions::default();
        match &self.filter {
            None => self.verify(hay, 0, hay.len(), &mut regions)?,
            Some(filter) => {
                filter.scan(hay, self.max_len, |start, end| self.verify(hay, start, end, &mut regions))?
            }
        }
        Ok(regions.finish())
    }

    fn verify(&self, hay: &[u8], start: usize, end: usize, regions: &mut Regions) -> Result<(), MaskError> {
        let slice =
            hay.get(start..end).ok_or_else(|| MaskError::Search("candidate window out of range".into()))?;
        let input = Input::new(slice);
        let mut state = OverlappingState::start();
        loop {
            self.ac.try_find_overlapping(&input, &mut state).map_err(|e| MaskError::Search(e.to_string()))?;
            match state.get_match() {
                Some(m) => regions.add(start + m.start(), start + m.end()),
                None => return Ok(()),
            }
        }
    }

    /// Length of the longest suffix of `hay` that is a prefix of one of this layer's
    /// patterns: the bytes a match could still grow from once more output arrives.
    ///
    /// The automaton's state after `hay` stands for exactly that suffix, but its depth is not
    /// exposed. Walking only the last `j` bytes from the start reaches the same state exactly
    /// when `j` is at least that depth (fewer bytes cannot spell the suffix; more only add
    /// bytes before it), so the depth is the least such `j`, found by bisection.
    fn suffix_depth(&self, hay: &[u8]) -> Result<usize, MaskError> {
        let start = self.ac.start_state(Anchored::No).map_err(|e| MaskError::Search(e.to_string()))?;
        let walk =
            |bytes: &[u8]| bytes.iter().fold(start, |sid, &b| self.ac.next_state(Anchored::No, sid, b));
        let window = hay.len().min(self.max_len);
        let tail = |j: usize| &hay[hay.len() - j..];
        let end = walk(tail(window));
        if self.ac.is_start(end) {
            return Ok(0);
        }
        let (mut lo, mut hi) = (1, window);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if walk(tail(mid)) == end { hi = mid } else { lo = mid + 1 }
        }
        Ok(lo)
    }
}

impl Masker {
    /// A masker with no patterns: output passes through unchanged.
    pub fn empty() -> Self {
        Self { state: State::Empty, tally: None }
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
        match Layer::build(&refs) {
            Ok(layer) => Self::from_layers(layer.into_iter().map(Arc::new).collect()),
            Err(e) => Self::failed(e),
        }
    }

    /// A masker hiding what any of `layers` matches.
    pub(super) fn from_layers(layers: Vec<Arc<Layer>>) -> Self {
        if layers.is_empty() {
            return Self::empty();
        }
        let max_len = layers.iter().map(|l| l.max_len).max().unwrap_or(0);
        Self { state: State::Ready(Compiled { layers, max_len }), tally: None }
    }

    /// A masker whose every call fails with `error`.
    pub(super) fn failed(error: MaskError) -> Self {
        Self { state: State::Failed(error.to_string()), tally: None }
    }

    /// This masker, adding what it masks to `tally` (the mask set's counters).
    pub(super) fn counted(mut self, tally: &Arc<Tally>) -> Self {
        self.tally = Some(Arc::clone(tally));
        self
    }

    /// Counts one masking call: `bytes` searched, `replacements` markers written.
    pub(super) fn count(&self, bytes: usize, replacements: usize) {
        if let Some(tally) = &self.tally {
            tally.add(bytes, replacements);
        }
    }

    /// Length of the longest pattern (0 when there are none).
    pub fn max_pattern_len(&self) -> usize {
        match &self.state {
            State::Ready(c) => c.max_len,
            _ => 0,
        }
    }

    /// Number of compiled patterns, counted per layer.
    pub fn pattern_count(&self) -> usize {
        match &self.state {
            State::Ready(c) => c.layers.iter().map(|l| l.pattern_count()).sum(),
            _ => 0,
        }
    }

    /// Number of automata searched (the mask set keeps recent values apart).
    pub fn layer_count(&self) -> usize {
        match &self.state {
            State::Ready(c) => c.layers.len(),
            _ => 0,
        }
    }

    /// Whether the masker is in the failed state (every call errors).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    pub(super) fn compiled(&self) -> Result<Option<&Compiled>, MaskError> {
        match &self.state {
            State::Empty => Ok(None),
            State::Ready(c) => Ok(Some(c)),
            State::Failed(e) => Err(MaskError::Unavailable(e.clone())),
        }
    }

    /// Masks `input` in one go: every hidden region becomes one
    /// [`REPLACEMENT`]. Errors only when the masker is unusable.
    pub fn mask(&self, input: &[u8]) -> Result<Vec<u8>, MaskError> {
        let mut out = Vec::new();
        self.mask_into(input, &mut out)?;
        Ok(out)
    }

    /// Like [`mask`](Self::mask), but appends to `out`, so a caller can reuse
    /// one buffer. On error `out` is left as it was.
    pub fn mask_into(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let Some(c) = self.compiled()? else {
            out.extend_from_slice(input);
            self.count(input.len(), 0);
            return Ok(());
        };
        let before = out.len();
        out.reserve(input.len());
        let replacements = c.mask_blocks(input, out).inspect_err(|_| out.truncate(before))?;
        self.count(input.len(), replacements);
        Ok(())
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.pattern_count())
            .field("layers", &self.layer_count())
            .field("max_pattern_len", &self.max_pattern_len())
            .field("failed", &self.is_failed())
            .finish()
    }
}

impl Compiled {
    /// Length of the longest suffix of `hay` that is a prefix of any pattern of any layer.
    pub(super) fn suffix_depth(&self, hay: &[u8]) -> Result<usize, MaskError> {
        let mut depth = 0;
        for layer in &self.layers {
            depth = depth.max(layer.suffix_depth(hay)?);
        }
        Ok(depth)
    }

    /// Merged, sorted hidden regions of `hay`: the union over all layers.
    pub(super) fn regions(&self, hay: &[u8]) -> Result<Vec<(usize, usize)>, MaskError> {
        let mut layers = self.layers.iter();
        let Some(first) = layers.next() else { return Ok(Vec::new()) };
        let mut all = first.regions(hay)?;
        for layer in layers {
            let more = layer.regions(hay)?;
            if !more.is_empty() {
                all = union(&all, &more);
            }
        }
        Ok(all)
    }

    /// One-shot masking done block by block, with the same decision rule as
    /// the stream masker but without copying the input: each block is copied
    /// out while it is still in cache, and region lists stay small. Returns the number of
    /// markers written.
    fn mask_blocks(&self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, MaskError> {
        let keep = self.max_len.saturating_sub(1);
        let block = ONE_SHOT_BLOCK.max(2 * self.max_len);
        let mut start = 0;
        let mut open = None;
        let mut replacements = 0;
        while start < input.len() {
            let end = input.len().min(start.saturating_add(block));
            let work = input.get(start..end).ok_or_else(|| MaskError::Search("block out of range".into()))?;
            let regions = self.regions(work)?;
            let decided = if end == input.len() { work.len() } else { work.len() - keep };
            replacements += emit(work, &regions, &mut open, decided, out)?;
            open = open.and_then(|h: usize| h.checked_sub(decided));
            start += decided;
        }
        Ok(replacements)
    }
}

/// Union of two sorted lists of merged regions, merged again (touching ones
/// too), as one layer holding both sets of patterns would report them.
fn union(a: &[(usize, usize)], b: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    loop {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 <= y.0 => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => return out,
        };
        match out.last_mut() {
            Some(last) if next.0 <= last.1 => last.1 = last.1.max(next.1),
            _ => out.push(next),
        }
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
/// later because a match not yet seen could still start before it. Returns the number of
/// markers written.
pub(super) fn emit(
    work: &[u8],
    regions: &[(usize, usize)],
    open: &mut Option<usize>,
    decided: usize,
    out: &mut Vec<u8>,
) -> Result<usize, MaskError> {
    let out_of_range = || MaskError::Search("emit range out of bounds".into());
    let mut cur = 0;
    let mut markers = 0;
    for &(start, end) in regions {
        match open {
            Some(h) if start <= *h => {
                *h = (*h).max(end);
                continue;
            }
            _ => {}
        }
        if start >= decided {
            break;
        }
        let from = cur.max(open.unwrap_or(0));
        if from < start {
            out.extend_from_slice(work.get(from..start).ok_or_else(out_of_range)?);
        }
        out.extend_from_slice(REPLACEMENT);
        markers += 1;
        *open = Some(end);
        cur = start;
    }
    let from = cur.max(open.unwrap_or(0));
    if from < decided {
        out.extend_from_slice(work.get(from..decided).ok_or_else(out_of_range)?);
    }
    Ok(markers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_merges_overlapping_and_touching_regions() {
        assert_eq!(union(&[(0, 2), (10, 12)], &[(2, 4), (5, 6)]), [(0, 4), (5, 6), (10, 12)]);
        assert_eq!(union(&[(3, 20)], &[(0, 4), (8, 9), (19, 25)]), [(0, 25)]);
        assert_eq!(union(&[], &[(1, 2)]), [(1, 2)]);
    }

    #[test]
    fn layers_hide_what_one_automaton_would() {
        let one = Masker::from_patterns(["this is the end", "the end foobar", "abc"]);
        let layer = |p: &[&str]| {
            let refs: Vec<&[u8]> = p.iter().map(|s| s.as_bytes()).collect();
            Arc::new(Layer::build(&refs).expect("build").expect("non-empty"))
        };
        let layered =
            Masker::from_layers(vec![layer(&["this is the end"]), layer(&["the end foobar", "abc"])]);
        assert_eq!(layered.layer_count(), 2);
        for input in ["this is the end foobar", "x abcabc y", "the end foobar, this is the end", "abc"] {
            assert_eq!(
                layered.mask(input.as_bytes()).unwrap(),
                one.mask(input.as_bytes()).unwrap(),
                "{input}"
            );
        }
    }

    #[test]
    fn failed_masker_fails_closed() {
        let m = Masker::failed(MaskError::Unavailable("test".into()));
        assert!(m.is_failed());
        assert!(m.mask(b"anything").is_err());
        let mut out = b"kept".to_vec();
        assert!(m.mask_into(b"anything", &mut out).is_err());
        assert_eq!(out, b"kept");
    }
}
