//! Cutting a running command's output into [`BashOutput`] events the way the reference does.
//!
//! This file owns the chunking rule and the `order` numbering. It does no I/O, no masking,
//! no bounding and no storing, and keeps no clock: the writer feeds it already-masked text,
//! says when pending text must go out, and stores what it returns.
//!
//! The rule (reference `bash_service.py`): each stream keeps a buffer; while a buffer holds
//! more than [`MAX_CONTENT_CHARS`] characters, its first [`MAX_CONTENT_CHARS`] characters
//! become a `BashOutput` with only that stream set and `exit_code: null`. Both streams share
//! one `order` counter. The final `BashOutput` carries what remains of both buffers (each
//! `null` if empty) and the exit code. Characters are Unicode scalar values, as Python's `len`
//! counts them, so chunks always end on a char boundary. Ours on top: [`OutputSplitter::flush`]
//! turns a buffer into an output at once, so output need not wait for 1 MiB or the end.
//!
//! Invariant: the outputs a splitter returns, final one included, have orders 0, 1, 2, … in
//! the order they are returned, and their texts concatenated per stream equal the input.

use uuid::Uuid;

use super::model::BashOutput;

/// The reference's `MAX_CONTENT_CHAR_LENGTH`: characters per intermediate output event.
pub(crate) const MAX_CONTENT_CHARS: usize = 1024 * 1024;

/// Turns a command's stdout and stderr text, as it arrives, into numbered [`BashOutput`]s.
#[derive(Debug)]
pub(crate) struct OutputSplitter {
    command_id: Uuid,
    max_chars: usize,
    next_order: u64,
    stdout: Buffer,
    stderr: Buffer,
}

/// Which stream a piece of text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Pending text of one stream, with its length in chars kept alongside.
#[derive(Debug, Default)]
struct Buffer {
    text: String,
    chars: usize,
}

impl OutputSplitter {
    /// A splitter for the outputs of `command_id`, cutting at the reference's 1 MiB of chars.
    pub(crate) fn new(command_id: Uuid) -> Self {
        Self::with_max_chars(command_id, MAX_CONTENT_CHARS)
    }

    /// A splitter that cuts at `max_chars` characters (at least 1; 0 is taken as 1).
    pub(crate) fn with_max_chars(command_id: Uuid, max_chars: usize) -> Self {
        OutputSplitter {
            command_id,
            max_chars: max_chars.max(1),
            next_order: 0,
            stdout: Buffer::default(),
            stderr: Buffer::default(),
        }
    }

    /// Adds standard output text; returns the full chunks now due, in order (often none).
    #[cfg(test)]
    pub(crate) fn push_stdout(&mut self, text: &str) -> Vec<BashOutput> {
        self.push(Stream::Stdout, text)
    }

    /// Adds standard error text; returns the full chunks now due, in order (often none).
    #[cfg(test)]
    pub(crate) fn push_stderr(&mut self, text: &str) -> Vec<BashOutput> {
        self.push(Stream::Stderr, text)
    }

    /// The pending text of `stream` as one output (with only that stream set), or `None` when
    /// there is none. Never more than the chunk size: a full chunk is cut as soon as it fills.
    pub(crate) fn flush(&mut self, stream: Stream) -> Option<BashOutput> {
        let buffer = self.buffer(stream);
        if buffer.text.is_empty() {
            return None;
        }
        let text = std::mem::take(&mut buffer.text);
        buffer.chars = 0;
        Some(self.output(stream, text))
    }

    /// Whether either stream has text that no output holds yet.
    pub(crate) fn has_pending(&self) -> bool {
        !self.stdout.text.is_empty() || !self.stderr.text.is_empty()
    }

    /// The command whose outputs this splitter makes.
    pub(crate) fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// The `order` the next output will get.
    pub(crate) fn next_order(&self) -> u64 {
        self.next_order
    }

    /// The final output: the remaining text of both streams (`None` where empty) and
    /// `exit_code` (`-1` for a timeout, as the reference).
    pub(crate) fn finish(self, exit_code: i32) -> BashOutput {
        let remaining = |buffer: Buffer| Some(buffer.text).filter(|text| !text.is_empty());
        BashOutput {
            exit_code: Some(exit_code),
            stdout: remaining(self.stdout),
            stderr: remaining(self.stderr),
            ..BashOutput::new(self.command_id, self.next_order)
        }
    }

    /// Adds text of `stream`; returns the full chunks now due, in order (often none).
    pub(crate) fn push(&mut self, stream: Stream, text: &str) -> Vec<BashOutput> {
        let max_chars = self.max_chars;
        let buffer = self.buffer(stream);
        buffer.text.push_str(text);
        buffer.chars = buffer.chars.saturating_add(text.chars().count());
        let chunks = buffer.take_chunks(max_chars);
        chunks.into_iter().map(|chunk| self.output(stream, chunk)).collect()
    }

    fn buffer(&mut self, stream: Stream) -> &mut Buffer {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// The next output, holding `text` as `stream`.
    fn output(&mut self, stream: Stream, text: String) -> BashOutput {
        let mut output = BashOutput::new(self.command_id, self.next_order);
        self.next_order = self.next_order.saturating_add(1);
        match stream {
            Stream::Stdout => output.stdout = Some(text),
            Stream::Stderr => output.stderr = Some(text),
        }
        output
    }
}

impl Buffer {
    /// Removes and returns `max_chars`-char chunks while more than `max_chars` chars remain
    /// (strictly more, as the reference: a buffer of exactly `max_chars` waits).
    fn take_chunks(&mut self, max_chars: usize) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while self.chars > max_chars {
            let rest = self.text.get(start..).unwrap_or_default();
            // `chars > max_chars` guarantees the `max_chars`-th char exists.
            let end = rest.char_indices().nth(max_chars).map_or(rest.len(), |(i, _)| i);
            chunks.push(rest.get(..end).unwrap_or_default().to_owned());
            start += end;
            self.chars -= max_chars;
        }
        // Drain once, so a large push costs one move of the remainder, not one per chunk.
        self.text.drain(..start);
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }

    /// (order, stdout, stderr, exit_code) of an output.
    type Shape<'a> = (u64, Option<&'a str>, Option<&'a str>, Option<i32>);

    fn shape(outputs: &[BashOutput]) -> Vec<Shape<'_>> {
        outputs.iter().map(|o| (o.order, o.stdout.as_deref(), o.stderr.as_deref(), o.exit_code)).collect()
    }

    #[test]
    fn small_output_is_one_final_event() {
        let mut s = OutputSplitter::with_max_chars(id(), 4);
        assert!(s.push_stdout("ab").is_empty());
        assert!(s.push_stderr("cd").is_empty());
        assert!(s.push_stdout("ef").is_empty()); // exactly 4 chars: not yet over the limit
        let last = s.finish(0);
        assert_eq!(shape(std::slice::from_ref(&last)), [(0, Some("abef"), Some("cd"), Some(0))]);
        assert_eq!(last.command_id, id());
    }

    #[test]
    fn empty_output_finishes_with_nulls() {
        let last = OutputSplitter::new(id()).finish(-1);
        assert_eq!(shape(&[last]), [(0, None, None, Some(-1))]);
    }

    #[test]
    fn chunks_share_one_order_counter() {
        let mut s = OutputSplitter::with_max_chars(id(), 3);
        let mut all = s.push_stdout("abcd"); // over 3: "abc" out, "d" kept
        all.extend(s.push_stderr("xyz")); // exactly 3: kept
        all.extend(s.push_stderr("w")); // "xyz" out, "w" kept
        all.extend(s.push_stdout("efghijk")); // "def", "ghi" out, "jk" kept
        assert_eq!(s.next_order(), 4);
        all.push(s.finish(2));
        assert_eq!(
            shape(&all),
            [
                (0, Some("abc"), None, None),
                (1, None, Some("xyz"), None),
                (2, Some("def"), None, None),
                (3, Some("ghi"), None, None),
                (4, Some("jk"), Some("w"), Some(2)),
            ]
        );
        let ids: std::collections::HashSet<_> = all.iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), all.len());
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }

    #[test]
    fn cuts_on_char_boundaries_counting_chars() {
        // "é" is 2 bytes, "€" 3, "😀" 4: the limit counts chars, never bytes.
        let mut s = OutputSplitter::with_max_chars(id(), 2);
        let mut all = s.push_stdout("aé€😀b");
        all.push(s.finish(0));
        assert_eq!(
            shape(&all),
            [(0, Some("aé"), None, None), (1, Some("€😀"), None, None), (2, Some("b"), None, Some(0))]
        );
    }

    #[test]
    fn any_feeding_reassembles_the_input() {
        let text = "héllo wörld 😀 ünïcode ✓ end";
        let chars: Vec<char> = text.chars().collect();
        for max in 1..=chars.len() + 1 {
            for piece in 1..=4 {
                let mut s = OutputSplitter::with_max_chars(id(), max);
                let mut all = Vec::new();
                for part in chars.chunks(piece) {
                    all.extend(s.push_stderr(&part.iter().collect::<String>()));
                }
                all.push(s.finish(0));
                let joined: String = all.iter().filter_map(|o| o.stderr.as_deref()).collect();
                assert_eq!(joined, text, "max {max} piece {piece}");
                for (i, o) in all.iter().enumerate() {
                    assert_eq!(o.order, i as u64);
                    if i + 1 < all.len() {
                        assert_eq!(o.stderr.as_ref().map(|t| t.chars().count()), Some(max));
                        assert_eq!(o.exit_code, None);
                    }
                }
            }
        }
    }

    #[test]
    fn flush_emits_pending_text_at_once_in_order() {
        let mut s = OutputSplitter::with_max_chars(id(), 4);
        assert!(s.flush(Stream::Stdout).is_none());
        assert!(!s.has_pending());
        assert!(s.push(Stream::Stdout, "ab").is_empty());
        assert!(s.push_stderr("é").is_empty());
        assert!(s.has_pending());
        let mut all: Vec<BashOutput> = s.flush(Stream::Stderr).into_iter().collect();
        all.extend(s.flush(Stream::Stdout));
        assert!(!s.has_pending() && s.flush(Stream::Stdout).is_none());
        // A flush resets the chunk count: four more chars wait, a fifth cuts.
        assert!(s.push_stdout("cdef").is_empty());
        all.extend(s.push_stdout("g"));
        all.push(s.finish(0));
        assert_eq!(
            shape(&all),
            [
                (0, None, Some("é"), None),
                (1, Some("ab"), None, None),
                (2, Some("cdef"), None, None),
                (3, Some("g"), None, Some(0)),
            ]
        );
    }

    #[test]
    fn zero_limit_is_taken_as_one() {
        let mut s = OutputSplitter::with_max_chars(id(), 0);
        assert_eq!(shape(&s.push_stdout("ab")), [(0, Some("a"), None, None)]);
    }

    #[test]
    fn real_one_mebibyte_chunks() {
        let mut s = OutputSplitter::new(id());
        // 1 MiB - 1 ASCII chars, then a 4-byte char as the 1 MiB-th char, then 3 more chars.
        let mut first = "a".repeat(MAX_CONTENT_CHARS - 1);
        first.push('😀');
        assert!(s.push_stdout(&first).is_empty()); // exactly 1 MiB chars: kept
        let chunks = s.push_stdout("xyz");
        assert_eq!(chunks.len(), 1);
        let chunk = chunks[0].stdout.as_deref().unwrap();
        assert_eq!(chunk.chars().count(), MAX_CONTENT_CHARS);
        assert_eq!(chunk.len(), MAX_CONTENT_CHARS + 3);
        assert!(chunk.ends_with("a😀"));
        assert_eq!((chunks[0].order, chunks[0].exit_code, chunks[0].stderr.as_deref()), (0, None, None));

        // 2.5 MiB of stderr in one push: two full chunks out, half a MiB kept.
        let big = "é".repeat(MAX_CONTENT_CHARS * 5 / 2);
        let chunks = s.push_stderr(&big);
        assert_eq!(chunks.iter().map(|o| o.order).collect::<Vec<_>>(), [1, 2]);
        for o in &chunks {
            assert_eq!(o.stderr.as_ref().map(|t| t.chars().count()), Some(MAX_CONTENT_CHARS));
            assert_eq!(o.stdout, None);
        }
        let last = s.finish(0);
        assert_eq!(last.order, 3);
        assert_eq!(last.stdout.as_deref(), Some("xyz"));
        assert_eq!(last.stderr.as_ref().map(|t| t.chars().count()), Some(MAX_CONTENT_CHARS / 2));
    }
}
