//! Writing one running command's output into the [`EventStore`], bounded per stream however
//! much the command prints.
//!
//! This file owns the bound of the bash routes' output (contract §3), which is the bound of
//! `/commands` output: each stream keeps its first `head` bytes and its last `tail` bytes, and
//! the middle is dropped. Here the output goes out as events while the command runs, so the
//! middle is dropped from the store as the tail moves on: the oldest outputs after the head
//! are removed, the oldest one kept is trimmed at its front, and that one starts with a marker
//! saying how many bytes were dropped so far. It cuts nothing itself (see `split`), masks
//! nothing (the text comes masked) and keeps no clock: its runner calls
//! [`EventWriter::flush`] when pending text has waited long enough.
//!
//! Invariants, per stream, at every moment: the stored outputs before the gap hold at most
//! `head` bytes of text and are never removed; those after it hold at most `tail` bytes of
//! text besides the one marker; each side holds at most [`MAX_OUTPUTS_PER_SIDE`] outputs
//! (a command that prints a little every 100 ms for an hour must stay bounded too). Once the
//! command has finished, the stream's text reads exactly as `/commands` would return it, with
//! the marker in the gap.

use std::collections::VecDeque;
use std::sync::Arc;

use uuid::Uuid;

use super::model::{BashEvent, BashOutput};
use super::split::{OutputSplitter, Stream};
use super::store::EventStore;

/// Most outputs kept on each side of the gap, per stream. Outputs cost memory beyond their
/// text; past this many, the oldest tail outputs go, or the head closes early.
pub(crate) const MAX_OUTPUTS_PER_SIDE: usize = 1024;

/// How much of each stream a command's events keep: `head` bytes from the start and `tail`
/// bytes from the end (see `crate::exec::head_and_tail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputBudget {
    /// Bytes kept from the start of each stream.
    pub head: usize,
    /// Bytes kept from the end of each stream.
    pub tail: usize,
}

/// The text that stands for `dropped` bytes of output in the gap between head and tail.
pub(crate) fn gap_marker(dropped: u64) -> String {
    format!("\n[... {dropped} bytes of output dropped ...]\n")
}

/// Stores one running command's output as bounded [`BashOutput`] events.
pub(crate) struct EventWriter {
    store: Arc<EventStore>,
    command_id: Uuid,
    splitter: OutputSplitter,
    stdout: Side,
    stderr: Side,
}

/// One stream's outputs in the store and what its budget has left.
struct Side {
    stream: Stream,
    /// Head bytes still free; `None` once the head is closed and output goes to the tail.
    head_left: Option<usize>,
    head: Vec<Arc<BashEvent>>,
    tail_cap: usize,
    /// The outputs after the gap, oldest first; the oldest carries the marker once anything
    /// was dropped.
    tail: VecDeque<Kept>,
    /// Output bytes (markers excluded) in `tail`.
    tail_bytes: usize,
    dropped: u64,
}

/// A stored tail output and how its text is made up.
struct Kept {
    event: Arc<BashEvent>,
    /// Bytes at the start of the text that are the marker, not output.
    marker: usize,
    /// Bytes of output after the marker.
    len: usize,
}

impl EventWriter {
    /// A writer for the command `command_id`, which must have been begun in `store`.
    pub(crate) fn new(store: Arc<EventStore>, command_id: Uuid, budget: OutputBudget) -> Self {
        Self::with_splitter(store, OutputSplitter::new(command_id), budget)
    }

    /// Like [`new`](Self::new), with a splitter of its own (a smaller chunk size, in tests).
    pub(crate) fn with_splitter(
        store: Arc<EventStore>,
        splitter: OutputSplitter,
        budget: OutputBudget,
    ) -> Self {
        let command_id = splitter.command_id();
        EventWriter {
            store,
            command_id,
            splitter,
            stdout: Side::new(Stream::Stdout, budget),
            stderr: Side::new(Stream::Stderr, budget),
        }
    }

    /// Adds masked text of `stream`, storing the outputs that are due.
    pub(crate) fn push(&mut self, stream: Stream, text: &str) {
        let mut text = text;
        if let Some(left) = self.side(stream).head_left {
            let fit = floor_char_boundary(text, left);
            let (head, rest) = text.split_at(fit);
            self.side_mut(stream).head_left = Some(left - fit);
            for output in self.splitter.push(stream, head) {
                self.store_head(stream, output);
            }
            if rest.is_empty() {
                return;
            }
            // The head is full: what it holds goes out now, and the rest starts the tail.
            self.close_head(stream);
            text = rest;
        }
        for output in self.splitter.push(stream, text) {
            self.store_tail(stream, output);
        }
    }

    /// Whether some text waits for [`flush`](Self::flush) (or a full chunk, or the end).
    pub(crate) fn has_pending(&self) -> bool {
        self.splitter.has_pending()
    }

    /// Stores the pending text of both streams at once.
    pub(crate) fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(output) = self.splitter.flush(stream) {
                match self.side(stream).head_left {
                    Some(_) => self.store_head(stream, output),
                    None => self.store_tail(stream, output),
                }
            }
        }
    }

    /// Stores the final output, with `exit_code` and `note` (a line of ours) after the
    /// stderr text, and marks the command finished. Returns the final output as
    /// `execute_bash_command` answers it: holding all the text each stream keeps.
    pub(crate) fn finish(mut self, exit_code: i32, note: Option<&str>) -> BashOutput {
        // Text past the head goes out as a tail output of its own, so the final output holds
        // only what is left of a head that never filled, and is never trimmed.
        for stream in [Stream::Stdout, Stream::Stderr] {
            if self.side(stream).head_left.is_none() {
                if let Some(output) = self.splitter.flush(stream) {
                    self.store_tail(stream, output);
                }
            }
        }
        let mut last = self.splitter.finish(exit_code);
        if let Some(note) = note {
            // On a line of its own after whatever stderr text the command's outputs keep.
            let after_text =
                last.stderr.is_some() || !self.stderr.head.is_empty() || !self.stderr.tail.is_empty();
            let newline = if after_text { "\n" } else { "" };
            last.stderr = Some(format!("{}{newline}{note}", last.stderr.take().unwrap_or_default()));
        }
        let answer = BashOutput {
            stdout: self.stdout.joined(last.stdout.as_deref()),
            stderr: self.stderr.joined(last.stderr.as_deref()),
            ..last.clone()
        };
        if let Err(e) = self.store.finish(last) {
            tracing::warn!(error = %e, "final bash output not stored");
        }
        answer
    }

    /// Stores the reference's error output (exit code -1, `detail` in stderr) as the final
    /// one, after whatever was stored before, and marks the command finished. Pending text is
    /// discarded. `detail` must already be masked.
    pub(crate) fn fail(self, detail: &str) -> BashOutput {
        let last =
            BashOutput { order: self.splitter.next_order(), ..BashOutput::error(self.command_id, detail) };
        if let Err(e) = self.store.finish(last.clone()) {
            tracing::warn!(error = %e, "final bash output not stored");
        }
        last
    }

    fn side(&self, stream: Stream) -> &Side {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    fn side_mut(&mut self, stream: Stream) -> &mut Side {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn close_head(&mut self, stream: Stream) {
        if let Some(output) = self.splitter.flush(stream) {
            self.store_head(stream, output);
        }
        self.side_mut(stream).head_left = None;
    }

    fn store_head(&mut self, stream: Stream, output: BashOutput) {
        let Some(event) = self.push_output(output) else { return };
        let side = self.side_mut(stream);
        side.head.push(event);
        if side.head.len() >= MAX_OUTPUTS_PER_SIDE {
            // Closed early: head outputs are never removed, so their number must stay bounded.
            self.close_head(stream);
        }
    }

    fn store_tail(&mut self, stream: Stream, output: BashOutput) {
        let Some(event) = self.push_output(output) else { return };
        let len = text_of(&event, stream).len();
        let side = self.side_mut(stream);
        side.tail.push_back(Kept { event, marker: 0, len });
        side.tail_bytes += len;
        self.bound_tail(stream);
    }

    fn push_output(&self, output: BashOutput) -> Option<Arc<BashEvent>> {
        self.store
            .push_output(output)
            .inspect_err(|e| tracing::warn!(error = %e, "bash output not stored"))
            .ok()
    }

    /// Removes the oldest tail outputs and trims the oldest kept one until the tail is within
    /// its budget, then puts the marker at its front. The newest output is never removed, so
    /// the marker always has a place.
    fn bound_tail(&mut self, stream: Stream) {
        let (store, command_id) = (Arc::clone(&self.store), self.command_id);
        let side = self.side_mut(stream);
        let dropped_before = side.dropped;
        while side.tail.len() > 1 {
            let oldest = side.tail.front().map_or(0, |k| k.len);
            let over_bytes = side.tail_bytes - oldest >= side.tail_cap;
            if !over_bytes && side.tail.len() <= MAX_OUTPUTS_PER_SIDE {
                break;
            }
            if let Some(gone) = side.tail.pop_front() {
                store.remove_output(command_id, gone.event.id());
                side.tail_bytes -= gone.len;
                side.dropped += gone.len as u64;
            }
        }
        let excess = side.tail_bytes.saturating_sub(side.tail_cap);
        if excess == 0 && side.dropped == dropped_before {
            return;
        }
        let Some(oldest) = side.tail.front_mut() else { return };
        let BashEvent::Output(output) = &*oldest.event else { return };
        let text = text_of(&oldest.event, stream).get(oldest.marker..).unwrap_or_default();
        // A character cut by the gap is dropped whole, as `/commands` does.
        let cut = ceil_char_boundary(text, excess);
        side.tail_bytes -= cut;
        side.dropped += cut as u64;
        let marker = gap_marker(side.dropped);
        let kept = text.get(cut..).unwrap_or_default();
        let new_text = Some(format!("{marker}{kept}"));
        let (stdout, stderr) = match stream {
            Stream::Stdout => (new_text, output.stderr.clone()),
            Stream::Stderr => (output.stdout.clone(), new_text),
        };
        let trimmed = BashOutput { stdout, stderr, ..*output };
        let len = kept.len();
        match store.replace_output(trimmed) {
            Ok(event) => *oldest = Kept { event, marker: marker.len(), len },
            Err(e) => tracing::warn!(error = %e, "bash output not trimmed"),
        }
    }
}

impl Side {
    fn new(stream: Stream, budget: OutputBudget) -> Self {
        Side {
            stream,
            head_left: Some(budget.head),
            head: Vec::new(),
            tail_cap: budget.tail,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped: 0,
        }
    }

    /// Everything this stream keeps, in order, then `last` (the final output's text).
    fn joined(&self, last: Option<&str>) -> Option<String> {
        let kept = self.head.iter().chain(self.tail.iter().map(|k| &k.event));
        let mut text = String::new();
        for piece in kept.map(|event| text_of(event, self.stream)).chain(last) {
            text.push_str(piece);
        }
        Some(text).filter(|text| !text.is_empty())
    }
}

/// The text of `stream` in an output event ("" for none, or for a command event).
fn text_of(event: &BashEvent, stream: Stream) -> &str {
    match (event, stream) {
        (BashEvent::Output(o), Stream::Stdout) => o.stdout.as_deref().unwrap_or_default(),
        (BashEvent::Output(o), Stream::Stderr) => o.stderr.as_deref().unwrap_or_default(),
        (BashEvent::Command(_), _) => "",
    }
}

/// The largest char boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `text` at or after `at`.
fn ceil_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bash::model::BashCommand;
    use crate::bash::query::SearchQuery;

    /// A store with one running command, and a writer for it cutting chunks at `chunk` chars.
    fn setup(head: usize, tail: usize, chunk: usize) -> (Arc<EventStore>, EventWriter, Uuid) {
        let store = Arc::new(EventStore::default());
        let command = BashCommand::new("x".into(), None, 300, None);
        let id = command.id;
        store.begin(command).unwrap();
        let splitter = OutputSplitter::with_max_chars(id, chunk);
        let writer = EventWriter::with_splitter(Arc::clone(&store), splitter, OutputBudget { head, tail });
        (store, writer, id)
    }

    /// The command's stored outputs, in order.
    fn outputs(store: &EventStore, id: Uuid) -> Vec<BashOutput> {
        let pairs = [("command_id__eq".to_owned(), id.simple().to_string())];
        let page = store.search(&SearchQuery::from_pairs(&pairs).unwrap()).unwrap();
        let mut outputs: Vec<BashOutput> = page
            .items
            .iter()
            .map(|e| match &**e {
                BashEvent::Output(o) => o.clone(),
                BashEvent::Command(_) => panic!("only outputs were asked for"),
            })
            .collect();
        outputs.sort_by_key(|o| o.order);
        outputs
    }

    /// A stream's text as a reader of all the stored outputs sees it.
    fn stored(store: &EventStore, id: Uuid, stream: Stream) -> String {
        outputs(store, id)
            .iter()
            .filter_map(|o| match stream {
                Stream::Stdout => o.stdout.clone(),
                Stream::Stderr => o.stderr.clone(),
            })
            .collect()
    }

    /// What `/commands` keeps of `text` (head and tail at char boundaries), with the marker
    /// in the gap.
    fn capped(text: &str, head: usize, tail: usize) -> String {
        if text.len() <= head + tail {
            return text.to_owned();
        }
        let h = floor_char_boundary(text, head);
        let t = ceil_char_boundary(text, text.len() - tail);
        format!("{}{}{}", &text[..h], gap_marker((t - h) as u64), &text[t..])
    }

    #[test]
    fn small_output_is_one_final_output_as_the_reference() {
        let (store, mut w, id) = setup(64, 64, 1024);
        w.push(Stream::Stdout, "hi\n");
        w.push(Stream::Stderr, "oops\n");
        let answer = w.finish(3, None);
        let stored = outputs(&store, id);
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0], answer);
        assert_eq!((answer.order, answer.exit_code), (0, Some(3)));
        assert_eq!((answer.stdout.as_deref(), answer.stderr.as_deref()), (Some("hi\n"), Some("oops\n")));
    }

    #[test]
    fn any_feeding_keeps_what_commands_keeps() {
        // Multi-byte characters everywhere, so cuts fall inside them.
        let text = "héllo wörld, 😀 ünïcode ✓ and a longer ascii tail 0123456789";
        for (head, tail) in [(0, 0), (1, 1), (5, 7), (6, 0), (0, 9), (12, 20), (100, 100)] {
            for piece in [1, 2, 3, 7, text.len()] {
                for flush_every in [1, 2, usize::MAX] {
                    let (store, mut w, id) = setup(head, tail, 4);
                    let chars: Vec<char> = text.chars().collect();
                    for (i, part) in chars.chunks(piece).enumerate() {
                        w.push(Stream::Stderr, &part.iter().collect::<String>());
                        if (i + 1) % flush_every == 0 {
                            w.flush();
                        }
                    }
                    let answer = w.finish(0, None);
                    let case = format!("head {head} tail {tail} piece {piece} flush {flush_every}");
                    let expected = capped(text, head, tail);
                    assert_eq!(stored(&store, id, Stream::Stderr), expected, "{case}");
                    assert_eq!(answer.stderr.as_deref().unwrap_or_default(), expected, "{case}");
                    assert_eq!(answer.stdout, None, "{case}");
                    let orders: Vec<u64> = outputs(&store, id).iter().map(|o| o.order).collect();
                    assert!(orders.windows(2).all(|w| w[0] < w[1]), "{case}: {orders:?}");
                    assert_eq!(orders.last(), Some(&answer.order), "{case}");
                }
            }
        }
    }

    #[test]
    fn streams_are_bounded_separately_and_interleave() {
        let (store, mut w, id) = setup(4, 4, 3);
        let (mut out, mut err) = (String::new(), String::new());
        for i in 0..50 {
            let (o, e) = (format!("o{i};"), format!("e{i},"));
            w.push(Stream::Stdout, &o);
            w.push(Stream::Stderr, &e);
            out.push_str(&o);
            err.push_str(&e);
            if i % 3 == 0 {
                w.flush();
            }
        }
        let answer = w.finish(1, Some("Command timed out after 9 seconds"));
        assert_eq!(stored(&store, id, Stream::Stdout), capped(&out, 4, 4));
        let err_kept = format!("{}\nCommand timed out after 9 seconds", capped(&err, 4, 4));
        assert_eq!(stored(&store, id, Stream::Stderr), err_kept);
        assert_eq!(answer.stdout.as_deref(), Some(capped(&out, 4, 4).as_str()));
        assert_eq!(answer.stderr.as_deref(), Some(err_kept.as_str()));
        // Exactly one marker per stream.
        let markers = |s: &str| s.matches("bytes of output dropped").count();
        assert_eq!((markers(&stored(&store, id, Stream::Stdout)), markers(&err_kept)), (1, 1));
    }

    #[test]
    fn a_running_command_stays_within_its_budget_and_the_store_bounds() {
        let (head, tail) = crate::exec::head_and_tail(1024 * 1024);
        let store = Arc::new(EventStore::new(10_000, 4 * 1024 * 1024));
        let command = BashCommand::new("yes".into(), None, 300, None);
        let id = command.id;
        store.begin(command).unwrap();
        let mut w = EventWriter::new(Arc::clone(&store), id, OutputBudget { head, tail });
        let piece = "y\n".repeat(32 * 1024);
        let mut peak = 0;
        // 64 MiB of output: far over the store's 4 MiB bound, were nothing dropped.
        for i in 0..1024 {
            w.push(Stream::Stdout, &piece);
            if i % 5 == 0 {
                w.flush();
            }
            peak = peak.max(store.total_bytes());
            assert!(store.len() <= 8, "{} events stored", store.len());
        }
        assert!(peak <= head + tail + 8 * 256, "{peak} bytes stored at peak");
        let answer = w.finish(0, None);
        let text = answer.stdout.unwrap_or_default();
        let dropped = 1024 * piece.len() - head - tail;
        assert!(text.contains(&gap_marker(dropped as u64)));
        assert_eq!(text.len(), head + tail + gap_marker(dropped as u64).len());
        assert!(store.total_bytes() <= 4 * 1024 * 1024);
    }

    #[test]
    fn many_small_outputs_stay_bounded_in_number() {
        let (store, mut w, id) = setup(1 << 20, 1 << 20, 1 << 20);
        // A command printing one line per flush for a long time.
        for i in 0..3 * MAX_OUTPUTS_PER_SIDE {
            w.push(Stream::Stdout, &format!("{i}\n"));
            w.flush();
        }
        let stored = outputs(&store, id);
        assert!(stored.len() <= 2 * MAX_OUTPUTS_PER_SIDE + 1, "{} outputs", stored.len());
        let answer = w.finish(0, None);
        let text = answer.stdout.unwrap_or_default();
        assert!(text.starts_with("0\n1\n2\n"));
        assert!(text.ends_with(&format!("{}\n", 3 * MAX_OUTPUTS_PER_SIDE - 1)));
        assert_eq!(text.matches("bytes of output dropped").count(), 1);
    }

    #[test]
    fn failing_ends_after_what_was_stored() {
        let (store, mut w, id) = setup(2, 2, 2);
        w.push(Stream::Stdout, "abcdef");
        w.push(Stream::Stdout, "pending");
        let last = w.fail("output withheld: masking failed");
        let stored = outputs(&store, id);
        assert_eq!(stored.last(), Some(&last));
        assert_eq!((last.exit_code, last.stdout.as_deref()), (Some(-1), None));
        assert_eq!(last.stderr.as_deref(), Some("Error executing command: output withheld: masking failed"));
        assert!(stored.iter().all(|o| !o.stdout.as_deref().unwrap_or_default().contains("pending")));
        assert!(stored.windows(2).all(|w| w[0].order < w[1].order), "orders only grow");
        assert!(!store.remove_output(id, last.id), "the command is finished");
    }
}
