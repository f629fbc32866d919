//! One output stream of a command: raw bytes in, masked text out, either as chunks to stream
//! or collected under a head/tail cap.
//!
//! Owns the order masking → (cap) → lossy UTF-8 decoding, and failing closed. It does no I/O
//! and does not know whether the command is still running.
//!
//! Invariants: no byte leaves this type (as a [`Chunk`] or in the collected text) without
//! having gone through the stream's [`StreamMasker`]; after the first masking error nothing
//! more leaves it at all, and the collected text becomes [`WITHHELD`].

use std::collections::VecDeque;
use std::sync::Arc;

use crate::mask::{MaskError, Masker, StreamMasker};

use super::{Chunk, Stream};

/// What replaces a stream's collected text when it could not be masked.
pub const WITHHELD: &str = "[output withheld: masking failed]";

/// Bytes always kept from the start of a capped stream.
pub const HEAD_BYTES: usize = 64 * 1024;

/// How a cap of `max` bytes per stream is shared out: the first [`HEAD_BYTES`] (all of `max`
/// when it is smaller) are kept from the start, the rest from the end. The bash routes bound
/// their events by the same split, so both kinds of route keep the same text.
pub fn head_and_tail(max: usize) -> (usize, usize) {
    let head = max.min(HEAD_BYTES);
    (head, max - head)
}

/// One stream's masking state and destination.
pub(super) struct StreamOutput {
    stream: Stream,
    /// `None` once finished or failed.
    masker: Option<StreamMasker>,
    failed: bool,
    /// `None` in streaming mode.
    collected: Option<Capped>,
}

impl StreamOutput {
    /// A stream masked with `masker`; collected under a cap of `collect_max` bytes when given,
    /// else handed out as chunks.
    pub(super) fn new(stream: Stream, masker: Arc<Masker>, collect_max: Option<usize>) -> Self {
        Self {
            stream,
            masker: Some(StreamMasker::new(masker)),
            failed: false,
            collected: collect_max.map(Capped::new),
        }
    }

    /// Masks `raw`; returns the chunk to stream, if any (never in collecting mode).
    pub(super) fn push(&mut self, raw: &[u8]) -> Option<Chunk> {
        let masked = self.masker.as_mut()?.push(raw);
        self.accept(masked)
    }

    /// Flushes what the masker held back; call at end of stream. Idempotent.
    pub(super) fn finish(&mut self) -> Option<Chunk> {
        let masked = self.masker.take()?.finish();
        self.accept(masked)
    }

    /// Whether masking failed on this stream.
    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    /// The collected text and the number of bytes the cap dropped; [`WITHHELD`] after a
    /// masking failure; empty in streaming mode.
    pub(super) fn into_collected(mut self) -> (String, u64) {
        let _ = self.finish();
        match (self.failed, self.collected) {
            (true, _) => (WITHHELD.to_owned(), 0),
            (false, Some(c)) => c.into_text(),
            (false, None) => (String::new(), 0),
        }
    }

    fn accept(&mut self, masked: Result<Vec<u8>, MaskError>) -> Option<Chunk> {
        if self.failed {
            return None;
        }
        let bytes = match masked {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(stream = self.stream.as_str(), error = %e, "masking failed; output withheld");
                self.fail();
                return None;
            }
        };
        match &mut self.collected {
            Some(c) => {
                c.push(&bytes);
                None
            }
            None if bytes.is_empty() => None,
            None => Some(Chunk { stream: self.stream, text: decode(bytes) }),
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.masker = None;
        if let Some(c) = &mut self.collected {
            *c = Capped::new(0);
        }
    }
}

/// UTF-8 text from masked bytes, replacing invalid sequences; no copy when already valid.
fn decode(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The first [`HEAD_BYTES`] and the last `max - HEAD_BYTES` bytes of a stream.
struct Capped {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    dropped: u64,
}

impl Capped {
    fn new(max: usize) -> Self {
        let (head_cap, tail_cap) = head_and_tail(max);
        Self { head: Vec::new(), head_cap, tail: VecDeque::new(), tail_cap, dropped: 0 }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let to_head = bytes.len().min(self.head_cap - self.head.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() >= self.tail_cap {
            let skip = bytes.len() - self.tail_cap;
            self.dropped += (self.tail.len() + skip) as u64;
            self.tail.clear();
            bytes = &bytes[skip..];
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.tail.extend(bytes);
    }

    /// Decodes head and tail. When bytes were dropped, a character cut at either edge of the
    /// gap is dropped too (and counted), rather than decoded as U+FFFD.
    fn into_text(self) -> (String, u64) {
        let Self { mut head, tail, mut dropped, .. } = self;
        let mut tail = Vec::from(tail);
        if dropped > 0 {
            if let Some(e) = std::str::from_utf8(&head).err().filter(|e| e.error_len().is_none()) {
                dropped += (head.len() - e.valid_up_to()) as u64;
                head.truncate(e.valid_up_to());
            }
            let cut = tail.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count();
            tail.drain(..cut);
            dropped += cut as u64;
        }
        let mut text = decode(head);
        text.push_str(&String::from_utf8_lossy(&tail));
        (text, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(max: usize, pieces: &[&[u8]]) -> (String, u64) {
        let mut out = StreamOutput::new(Stream::Stdout, Arc::new(Masker::empty()), Some(max));
        for p in pieces {
            assert!(out.push(p).is_none());
        }
        out.into_collected()
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        assert_eq!(collect(1 << 20, &[b"hello ", b"world"]), ("hello world".to_owned(), 0));
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_gap() {
        let max = HEAD_BYTES + 10;
        let mut data = vec![b'h'; HEAD_BYTES];
        data.extend(std::iter::repeat_n(b'm', 1000));
        data.extend_from_slice(b"0123456789");
        // Any split gives the same result.
        for size in [1, 7, 4096, HEAD_BYTES + 3, data.len()] {
            let pieces: Vec<&[u8]> = data.chunks(size).collect();
            let (text, dropped) = collect(max, &pieces);
            assert_eq!(dropped, 1000, "size {size}");
            assert_eq!(text.len(), max);
            assert!(text.starts_with(&"h".repeat(HEAD_BYTES)));
            assert!(text.ends_with("0123456789"));
        }
    }

    #[test]
    fn small_caps_keep_only_a_head() {
        assert_eq!(collect(4, &[b"abcdef", b"gh"]), ("abcd".to_owned(), 4));
        assert_eq!(collect(0, &[b"abc"]), (String::new(), 3));
    }

    #[test]
    fn characters_cut_at_the_gap_are_dropped_not_mangled() {
        // Head ends inside "é" (2 bytes); tail starts inside "€" (3 bytes).
        let mut data = vec![b'a'; HEAD_BYTES - 1];
        data.extend_from_slice("é".as_bytes());
        data.extend_from_slice(b"xyz");
        data.extend_from_slice("€".as_bytes());
        data.extend_from_slice(b"end");
        let (text, dropped) = collect(HEAD_BYTES + 5, &[&data]);
        assert!(!text.contains('\u{FFFD}'), "{}", &text[text.len() - 10..]);
        assert!(text.ends_with("aend"), "{}", &text[text.len() - 10..]);
        assert_eq!(text.len() as u64 + dropped, data.len() as u64);
    }

    #[test]
    fn masks_before_decoding_and_across_pushes() {
        let masker = Arc::new(Masker::from_patterns([b"abcdef"]));
        let mut out = StreamOutput::new(Stream::Stdout, Arc::clone(&masker), Some(1 << 20));
        for p in [&b"x abc"[..], b"def y \xff"] {
            assert!(out.push(p).is_none());
        }
        assert_eq!(out.into_collected(), ("x <secret-hidden> y \u{FFFD}".to_owned(), 0));

        let mut out = StreamOutput::new(Stream::Stderr, masker, None);
        let mut text = String::new();
        for p in [&b"x abc"[..], b"def y"] {
            if let Some(c) = out.push(p) {
                assert_eq!(c.stream, Stream::Stderr);
                text.push_str(&c.text);
            }
        }
        text.push_str(&out.finish().map(|c| c.text).unwrap_or_default());
        assert_eq!(text, "x <secret-hidden> y");
        assert!(out.finish().is_none());
    }

    #[test]
    fn a_masking_error_withholds_everything_after_it() {
        let masker = Arc::new(Masker::from_patterns([b"abcdef"]));
        let mut out = StreamOutput::new(Stream::Stdout, Arc::clone(&masker), Some(1 << 20));
        assert!(out.push(b"before ").is_none());
        assert!(out.accept(Err(MaskError::Search("injected".into()))).is_none());
        assert!(out.failed());
        assert!(out.push(b"abcdef after").is_none());
        assert_eq!(out.into_collected(), (WITHHELD.to_owned(), 0));

        let mut out = StreamOutput::new(Stream::Stdout, masker, None);
        assert!(out.push(b"early text ").is_some());
        assert!(out.accept(Err(MaskError::Search("injected".into()))).is_none());
        assert!(out.push(b"later text").is_none());
        assert!(out.finish().is_none());
        assert!(out.failed());
    }
}
