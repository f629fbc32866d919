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
//!
//! The parts, one job each: `derive` (patterns of a value), `retained` (which
//! values are held, within which bounds), `layers` (which compiled layer
//! holds which values), `set` (compiling and publishing maskers without
//! stalling callers), `matcher` (searching and one-shot
//! masking), `prefilter` (skipping text that cannot match), `stream`
//! (chunked masking) and `tally` (what the maskers have masked, for metrics).

mod derive;
mod layers;
mod matcher;
mod prefilter;
mod retained;
mod set;
mod stream;
mod tally;
#[cfg(test)]
mod tests;

pub use derive::{EncodingPair, MAX_ENCODED_VALUE_LEN, derive_encoding_pairs, derive_patterns, is_maskable};
pub use matcher::Masker;
pub use set::{MaskSet, MaskStats, Staged};
pub use stream::StreamMasker;
pub use tally::OutputTotals;

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
    /// A value is shorter than the minimum length, so it cannot be masked. (Its length is not
    /// carried: this error may be logged, and a length is a hint about a value.)
    #[error("a value is shorter than the minimum of {min_len} bytes and cannot be masked")]
    TooShort {
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
