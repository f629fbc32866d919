//! [`Tally`]: what has passed through the maskers of one mask set, for the service's
//! metrics.
//!
//! Every masker a set publishes shares the set's tally, so the totals survive recompilation.
//! Counting is one relaxed atomic add per call (per chunk of a stream), never per byte or
//! per match, so it costs nothing measurable beside the search itself.

use std::sync::atomic::{AtomicU64, Ordering};

/// Output bytes searched and hidden regions replaced, since the set was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputTotals {
    /// Bytes of output that went through a masker (one-shot or streamed).
    pub bytes: u64,
    /// Hidden regions replaced by [`REPLACEMENT`](super::REPLACEMENT).
    pub replacements: u64,
}

/// The shared counters.
#[derive(Debug, Default)]
pub(super) struct Tally {
    bytes: AtomicU64,
    replacements: AtomicU64,
}

impl Tally {
    /// Counts one masking call: `bytes` searched, `replacements` markers written.
    pub(super) fn add(&self, bytes: usize, replacements: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if replacements > 0 {
            self.replacements.fetch_add(replacements as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn totals(&self) -> OutputTotals {
        OutputTotals {
            bytes: self.bytes.load(Ordering::Relaxed),
            replacements: self.replacements.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MaskSet, StreamMasker};
    use super::*;

    #[test]
    fn one_shot_and_streamed_output_is_counted_once() {
        let set = MaskSet::new(4);
        assert_eq!(set.output_totals(), OutputTotals::default());
        set.masker().mask(b"nothing held yet").unwrap();
        assert_eq!(
            set.output_totals(),
            OutputTotals { bytes: 16, replacements: 0 },
            "an empty masker counts"
        );
        set.insert("k", b"hunter2-secret").unwrap();
        let text = b"a hunter2-secret b hunter2-secret";
        set.masker().mask(text).unwrap();
        let after_one_shot = set.output_totals();
        assert_eq!(after_one_shot, OutputTotals { bytes: 16 + text.len() as u64, replacements: 2 });
        // Streamed in small chunks, a value split across them counts as one replacement.
        let mut stream = StreamMasker::new(set.masker());
        for chunk in text.chunks(3) {
            stream.push(chunk).unwrap();
        }
        stream.finish().unwrap();
        let streamed = set.output_totals();
        assert_eq!(streamed.bytes - after_one_shot.bytes, text.len() as u64);
        assert_eq!(streamed.replacements - after_one_shot.replacements, 2);
    }

    #[test]
    fn totals_survive_recompilation() {
        let set = MaskSet::new(4);
        set.insert("a", b"first-value").unwrap();
        set.masker().mask(b"first-value").unwrap();
        set.insert("b", b"second-value").unwrap();
        set.compact();
        set.masker().mask(b"second-value").unwrap();
        assert_eq!(set.output_totals().replacements, 2);
    }
}
