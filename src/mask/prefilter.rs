//! The candidate prefilter: finds the few windows of a haystack worth an
//! overlapping automaton search, so masking large output costs about one table
//! probe per few bytes.
//!
//! It never decides what is hidden (the automaton does), and it has no false
//! negatives: every occurrence of every pattern lies inside a reported window.

use zeroize::Zeroizing;

use super::MaskError;

/// Sampling filter that finds the few places worth an overlapping search.
///
/// Every pattern is at least `min_len` long, so an occurrence always contains
/// a `q`-gram starting at a multiple of any `stride <= min_len - q + 1` and
/// at most `stride - 1` bytes into the occurrence. Those leading q-grams of all
/// patterns go into a blocked Bloom filter (backed by the exact sorted set,
/// consulted only on Bloom hits); the text is probed once every `stride`
/// bytes, and only windows around confirmed grams are searched. No false
/// negatives are possible; a false positive only costs a small search.
pub(super) struct Filter {
    q: usize,
    stride: usize,
    gram_mask: u64,
    shift: u32,
    bloom: Box<[u64]>,
    grams: Zeroizing<Vec<u64>>,
}

/// Below this, q-grams are too short to be selective; search everything.
const FILTER_MIN_PATTERN_LEN: usize = 6;
const MAX_STRIDE: usize = 64;
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

impl Filter {
    /// The filter for `patterns`; `None` when they are too short for sampling to pay.
    pub(super) fn build(patterns: &[&[u8]]) -> Option<Self> {
        let min_len = patterns.iter().map(|p| p.len()).min()?;
        if min_len < FILTER_MIN_PATTERN_LEN {
            return None;
        }
        // Six bytes are selective enough against ordinary text; shorter grams
        // buy a longer stride (fewer probes, the dominant cost).
        let q = if min_len >= 12 { 6 } else { min_len / 2 + 1 };
        // Past a few dozen bytes a longer stride saves little scanning but
        // adds a gram per byte of stride for every pattern.
        let stride = (min_len - q + 1).min(MAX_STRIDE);
        let gram_mask = (1u64 << (8 * q)) - 1;
        let mut grams = Zeroizing::new(Vec::with_capacity(patterns.len().saturating_mul(stride)));
        for p in patterns {
            for offset in 0..stride {
                if let Some(gram) = p.get(offset..offset + q) {
                    grams.push(load_gram(gram));
                }
            }
        }
        grams.sort_unstable();
        grams.dedup();
        // About 32 bits per gram keeps Bloom false positives well under 0.1%
        // while the table still fits in L2.
        let words = (grams.len() / 2).clamp(1024, 1 << 22).next_power_of_two();
        let mut filter = Self {
            q,
            stride,
            gram_mask,
            shift: 64 - words.trailing_zeros(),
            bloom: vec![0u64; words].into_boxed_slice(),
            grams: Zeroizing::new(Vec::new()),
        };
        for &gram in grams.iter() {
            let (word, bits) = filter.slot(gram);
            if let Some(w) = filter.bloom.get_mut(word) {
                *w |= bits;
            }
        }
        filter.grams = grams;
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
    fn maybe(&self, gram: u64) -> bool {
        let (word, bits) = self.slot(gram);
        self.bloom.get(word).is_some_and(|w| w & bits == bits)
    }

    #[cold]
    fn confirmed(&self, gram: u64) -> bool {
        self.grams.binary_search(&(gram & self.gram_mask)).is_ok()
    }

    /// Calls `found` with each window `[start, end)` that may contain an
    /// occurrence, in increasing order; overlapping windows are merged.
    pub(super) fn scan<F>(&self, hay: &[u8], max_len: usize, mut found: F) -> Result<(), MaskError>
    where
        F: FnMut(usize, usize) -> Result<(), MaskError>,
    {
        let mut pending: Option<(usize, usize)> = None;
        let mut on_hit = |p: usize| -> Result<(), MaskError> {
            let (start, end) = (p.saturating_sub(self.stride - 1), p.saturating_add(max_len).min(hay.len()));
            match &mut pending {
                Some((_, we)) if start <= *we => *we = (*we).max(end),
                _ => {
                    if let Some((ws, we)) = pending.replace((start, end)) {
                        found(ws, we)?;
                    }
                }
            }
            Ok(())
        };
        let mut p = 0;
        // Hot loop: one 8-byte load and one table probe per `stride` bytes.
        while let Some(bytes) = hay.get(p..p + 8) {
            let gram = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
            if self.maybe(gram) && self.confirmed(gram) {
                on_hit(p)?;
            }
            p += self.stride;
        }
        while let Some(bytes) = hay.get(p..p + self.q) {
            let gram = load_gram(bytes);
            if self.maybe(gram) && self.confirmed(gram) {
                on_hit(p)?;
            }
            p += self.stride;
        }
        if let Some((ws, we)) = pending {
            found(ws, we)?;
        }
        Ok(())
    }
}

/// Little-endian value of up to 8 bytes, zero-padded (same layout as the
/// hot loop's 8-byte loads once masked to `q` bytes).
fn load_gram(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = *src;
    }
    u64::from_le_bytes(buf)
}
