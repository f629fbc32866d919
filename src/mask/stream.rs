//! Masking output that arrives in chunks (pipe reads), with the same result as
//! masking it all at once.
//!
//! Invariant: the concatenation of everything [`StreamMasker::push`] and
//! [`StreamMasker::finish`] return equals [`Masker::mask`] of the whole input,
//! however it was split, whatever layers the masker searches.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::matcher::{Masker, emit};
use super::{MaskError, REPLACEMENT};

/// Masks output that arrives in arbitrary chunks, such as pipe reads.
///
/// Holds back only the longest suffix of the output that is a prefix of some
/// pattern (so `first\n` goes out at once unless a pattern starts with it), plus
/// an incomplete trailing UTF-8 sequence, so every emitted chunk can be lossily
/// decoded on its own. A match that touches the held suffix has its marker out
/// already and merges with what follows.
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
    /// Starts a stream masked with `masker`. The masker is fixed for the
    /// stream's life, so take it after inserting the values the command gets.
    pub fn new(masker: Arc<Masker>) -> Self {
        Self { masker, held: Zeroizing::new(Vec::new()), open: None }
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
        // Only the end of the output that could still begin a match waits for more; a match
        // that touches it is merged by `open` (its marker is out, its rest swallowed).
        let (regions, keep) = match compiled {
            Some(c) if !last => (c.regions(work)?, c.suffix_depth(work)?),
            Some(c) => (c.regions(work)?, 0),
            None => (Vec::new(), 0),
        };
        let decided = if last { work.len() } else { utf8_boundary(work, work.len().saturating_sub(keep)) };
        let mut out = Vec::with_capacity(decided + REPLACEMENT.len());
        let replacements = emit(work, &regions, &mut self.open, decided, &mut out)?;
        self.masker.count(chunk.len(), replacements);
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
