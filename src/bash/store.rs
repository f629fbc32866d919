//! The in-memory bash event store: what `GET /api/bash/bash_events/…` reads and what the
//! runner writes as a command progresses.
//!
//! This file owns keeping events, bounding the events of finished commands, looking one up and
//! paging through a search. It does not run commands, split output (see `split`), bound a
//! running command's output (see `writer`) or parse query strings (see `query`).
//!
//! Invariants:
//! - the store never evicts a running command's events (from [`EventStore::begin`] until
//!   [`EventStore::finish`] or [`EventStore::end`]), so a poller always sees its command
//!   through; the command's writer bounds them instead, removing and trimming its own outputs
//!   ([`EventStore::remove_output`], [`EventStore::replace_output`]) so that they stay within
//!   its per-stream budget however much the command prints;
//! - otherwise the store holds at most `max_events` events and `max_bytes` bytes (as counted
//!   by [`BashEvent::approx_bytes`]), evicting the oldest finished events first;
//! - event ids are unique: a second event with a stored id is refused;
//! - search order is by timestamp, then by insertion, so equal timestamps keep insertion order
//!   and `TIMESTAMP_DESC` is the exact reverse of `TIMESTAMP`; a replaced event keeps its
//!   place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::model::{BashCommand, BashEvent, BashOutput};
use super::query::{SearchError, SearchQuery, SortOrder};

/// Default bound on the number of stored events.
pub(crate) const DEFAULT_MAX_EVENTS: usize = 10_000;

/// Default bound on the bytes of stored events (64 MiB: 64 full 1 MiB output chunks).
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// One page of search results, serialized as the reference's `BashEventPage`:
/// `{"items": [...], "next_page_id": str|null}`.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    /// The events of this page, in the requested order. Shared with the store, so building a
    /// page copies no output text.
    #[serde(serialize_with = "serialize_events")]
    pub items: Vec<Arc<BashEvent>>,
    /// The `page_id` that fetches the next page: the id of its first event (32 hex digits), or
    /// `None` on the last page.
    pub next_page_id: Option<String>,
}

fn serialize_events<S: Serializer>(items: &[Arc<BashEvent>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(items.iter().map(|event| &**event))
}

/// Why an event was not stored; a bug in the caller, never a client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An event with this id is already stored.
    #[error("bash event {} is already stored", .0.simple())]
    DuplicateId(Uuid),
    /// Output was added for a command that was never begun or has already finished.
    #[error("bash command {} is not running", .0.simple())]
    NotRunning(Uuid),
    /// No output with this id is stored for a running command.
    #[error("bash output {} is not stored for a running command", .0.simple())]
    NotStored(Uuid),
}

/// Bounded, thread-safe store of bash events, searchable like the reference.
#[derive(Debug)]
pub struct EventStore {
    max_events: usize,
    max_bytes: usize,
    // A std lock: every method takes it for in-memory work only and releases it before
    // returning, so it is never held across an `.await`. Reads (polls, several per second per
    // running command) far outnumber writes, hence a read-write lock.
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every stored event, keyed by insertion sequence number.
    events: BTreeMap<u64, Entry>,
    /// Event id → sequence number.
    by_id: HashMap<Uuid, u64>,
    /// Running command id → sequence numbers of its stored events, which eviction must skip.
    running: HashMap<Uuid, BTreeSet<u64>>,
    /// Sequence numbers of the events of finished commands: the eviction candidates, oldest
    /// first.
    evictable: BTreeSet<u64>,
    /// Sum of the stored events' [`Entry::bytes`].
    total_bytes: usize,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    event: Arc<BashEvent>,
    bytes: usize,
}

impl Default for EventStore {
    fn default() -> Self {
        EventStore::new(DEFAULT_MAX_EVENTS, DEFAULT_MAX_BYTES)
    }
}

impl EventStore {
    /// An empty store keeping at most `max_events` events and `max_bytes` bytes of finished
    /// commands' events.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        EventStore { max_events, max_bytes, inner: RwLock::new(Inner::default()) }
    }

    /// Stores a command's [`BashCommand`] event and marks the command running, so none of its
    /// events is evicted until [`finish`](Self::finish) or [`end`](Self::end).
    pub fn begin(&self, command: BashCommand) -> Result<(), StoreError> {
        let mut inner = self.write();
        let id = command.id;
        if inner.by_id.contains_key(&id) || inner.running.contains_key(&id) {
            return Err(StoreError::DuplicateId(id));
        }
        let (seq, _) = inner.insert(command.into());
        inner.running.insert(id, BTreeSet::from([seq]));
        inner.evict(self.max_events, self.max_bytes);
        Ok(())
    }

    /// Stores an intermediate output of a running command; the command stays running.
    /// Returns the stored event, shared with the store.
    pub fn push_output(&self, output: BashOutput) -> Result<Arc<BashEvent>, StoreError> {
        let mut inner = self.write();
        let event = inner.insert_output(output)?;
        inner.evict(self.max_events, self.max_bytes);
        Ok(event)
    }

    /// Replaces a stored output of a running command by `output`, which has the same id (and
    /// is meant to keep its command, order and timestamp): the writer trims the oldest output
    /// it keeps this way. The event keeps its place in searches. Returns the stored event.
    pub fn replace_output(&self, output: BashOutput) -> Result<Arc<BashEvent>, StoreError> {
        let mut inner = self.write();
        let seq = inner.running_output(output.id, output.command_id)?;
        let event = Arc::new(BashEvent::from(output));
        let bytes = event.approx_bytes();
        if let Some(entry) = inner.events.get_mut(&seq) {
            let old = std::mem::replace(entry, Entry { event: Arc::clone(&event), bytes });
            inner.total_bytes = inner.total_bytes.saturating_sub(old.bytes).saturating_add(bytes);
        }
        Ok(event)
    }

    /// Removes a stored output of the running command `command_id`: the writer drops the
    /// middle of a long output this way. Returns whether it was stored.
    pub fn remove_output(&self, command_id: Uuid, id: Uuid) -> bool {
        let mut inner = self.write();
        let Ok(seq) = inner.running_output(id, command_id) else { return false };
        if let Some(seqs) = inner.running.get_mut(&command_id) {
            seqs.remove(&seq);
        }
        inner.remove(seq);
        true
    }

    /// Stores a running command's final output and marks the command finished, in one step,
    /// so no poller can see the command finished without its final output.
    pub fn finish(&self, output: BashOutput) -> Result<(), StoreError> {
        let mut inner = self.write();
        let command_id = output.command_id;
        inner.insert_output(output)?;
        inner.release(command_id);
        inner.evict(self.max_events, self.max_bytes);
        Ok(())
    }

    /// Marks a command finished without a final output (e.g. its runner was cancelled), so its
    /// events become evictable. Returns whether it was running.
    pub fn end(&self, command_id: Uuid) -> bool {
        let mut inner = self.write();
        let was_running = inner.release(command_id);
        inner.evict(self.max_events, self.max_bytes);
        was_running
    }

    /// The event with this id (in any form `uuid` parses; the wire form is 32 hex digits), or
    /// `None` if it is unknown, evicted or not an id.
    pub fn get(&self, id: &str) -> Option<Arc<BashEvent>> {
        let id = Uuid::parse_str(id.trim()).ok()?;
        let inner = self.read();
        let seq = inner.by_id.get(&id)?;
        inner.events.get(seq).map(|entry| Arc::clone(&entry.event))
    }

    /// One page of the events matching `query`, in its sort order.
    ///
    /// `page_id` is the id of the page's first event, as returned in `next_page_id`; like the
    /// reference, an id that names no matching event (e.g. one since evicted) starts from the
    /// beginning. The reference's file-name page ids (`<time>_<kind>[_<command>]_<id>`) are
    /// understood too. Unlike the reference, `order__gt` filters before paging, so a page is
    /// never emptied by it while later pages hold matches.
    pub fn search(&self, query: &SearchQuery) -> Result<EventPage, SearchError> {
        query.validate()?;
        let page_start = query.page_id.as_deref().and_then(|page| {
            let id = page.rsplit('_').next().unwrap_or(page);
            Uuid::parse_str(id).ok()
        });

        let inner = self.read();
        // Insertion order, then a stable sort by timestamp: equal timestamps keep insertion
        // order. Timestamps come from a monotonic clock, so this is usually already sorted.
        let mut matched: Vec<&Arc<BashEvent>> =
            inner.events.values().map(|entry| &entry.event).filter(|event| query.matches(event)).collect();
        matched.sort_by_key(|event| event.timestamp());
        if query.sort_order == SortOrder::TimestampDesc {
            matched.reverse();
        }

        let start = page_start.and_then(|id| matched.iter().position(|event| event.id() == id)).unwrap_or(0);
        let end = start.saturating_add(query.limit).min(matched.len());
        let items =
            matched.get(start..end).unwrap_or_default().iter().map(|event| Arc::clone(event)).collect();
        let next_page_id = matched.get(end).map(|event| event.id().simple().to_string());
        Ok(EventPage { items, next_page_id })
    }

    /// The number of stored events.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes charged for the stored events (see [`BashEvent::approx_bytes`]).
    pub fn total_bytes(&self) -> usize {
        self.read().total_bytes
    }

    // Poisoning: no code under the lock panics, and every mutation leaves `Inner` consistent
    // before anything that could, so a poisoned lock's data is still sound.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Stores an event; the caller has checked that its id is new.
    fn insert(&mut self, event: BashEvent) -> (u64, Arc<BashEvent>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = event.approx_bytes();
        self.by_id.insert(event.id(), seq);
        let event = Arc::new(event);
        self.events.insert(seq, Entry { event: Arc::clone(&event), bytes });
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        (seq, event)
    }

    fn insert_output(&mut self, output: BashOutput) -> Result<Arc<BashEvent>, StoreError> {
        if self.by_id.contains_key(&output.id) {
            return Err(StoreError::DuplicateId(output.id));
        }
        let command_id = output.command_id;
        if !self.running.contains_key(&command_id) {
            return Err(StoreError::NotRunning(command_id));
        }
        let (seq, event) = self.insert(output.into());
        if let Some(seqs) = self.running.get_mut(&command_id) {
            seqs.insert(seq);
        }
        Ok(event)
    }

    /// The sequence number of output `id` of the running command `command_id`.
    fn running_output(&self, id: Uuid, command_id: Uuid) -> Result<u64, StoreError> {
        if !self.running.contains_key(&command_id) {
            return Err(StoreError::NotRunning(command_id));
        }
        let seq = self.by_id.get(&id).copied();
        let event = seq.and_then(|seq| self.events.get(&seq)).map(|entry| &*entry.event);
        match (seq, event) {
            (Some(seq), Some(BashEvent::Output(o))) if o.command_id == command_id => Ok(seq),
            _ => Err(StoreError::NotStored(id)),
        }
    }

    /// Drops the event stored under `seq`, if any.
    fn remove(&mut self, seq: u64) {
        if let Some(entry) = self.events.remove(&seq) {
            self.by_id.remove(&entry.event.id());
            self.total_bytes = self.total_bytes.saturating_sub(entry.bytes);
        }
    }

    /// Makes a running command's events evictable; returns whether it was running.
    fn release(&mut self, command_id: Uuid) -> bool {
        match self.running.remove(&command_id) {
            Some(seqs) => {
                self.evictable.extend(seqs);
                true
            }
            None => false,
        }
    }

    /// Drops the oldest finished events until both bounds hold or only running events remain.
    fn evict(&mut self, max_events: usize, max_bytes: usize) {
        while self.events.len() > max_events || self.total_bytes > max_bytes {
            let Some(seq) = self.evictable.pop_first() else { break };
            self.remove(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::bash::model::EventKind;
    use crate::bash::split::OutputSplitter;
    use crate::bash::timestamp::Timestamp;

    fn command() -> BashCommand {
        BashCommand::new("echo hi".into(), None, 300, None)
    }

    /// A finished command with `outputs` outputs (the last one final); returns its id.
    fn run(store: &EventStore, outputs: u64) -> Uuid {
        let c = command();
        let id = c.id;
        store.begin(c).unwrap();
        for order in 0..outputs.saturating_sub(1) {
            store.push_output(BashOutput { stdout: Some("x".into()), ..BashOutput::new(id, order) }).unwrap();
        }
        store
            .finish(BashOutput { exit_code: Some(0), ..BashOutput::new(id, outputs.saturating_sub(1)) })
            .unwrap();
        id
    }

    fn query(pairs: &[(&str, &str)]) -> SearchQuery {
        let pairs: Vec<_> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        SearchQuery::from_pairs(&pairs).unwrap()
    }

    fn ids(page: &EventPage) -> Vec<Uuid> {
        page.items.iter().map(|e| e.id()).collect()
    }

    /// Follows `next_page_id` from the first page to the last.
    fn all_pages(store: &EventStore, base: &[(&str, &str)]) -> (Vec<Uuid>, usize) {
        let (mut seen, mut pages, mut page_id) = (Vec::new(), 0, None::<String>);
        loop {
            let mut pairs = base.to_vec();
            if let Some(p) = &page_id {
                pairs.push(("page_id", p));
            }
            let page = store.search(&query(&pairs)).unwrap();
            pages += 1;
            seen.extend(ids(&page));
            match page.next_page_id {
                Some(next) => page_id = Some(next),
                None => return (seen, pages),
            }
        }
    }

    #[test]
    fn store_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<EventStore>();
        shareable::<EventPage>();
    }

    #[test]
    fn get_finds_by_hex_or_dashed_id() {
        let store = EventStore::default();
        let c = command();
        let id = c.id;
        store.begin(c.clone()).unwrap();
        assert_eq!(store.get(&id.simple().to_string()).as_deref(), Some(&BashEvent::Command(c)));
        assert!(store.get(&id.hyphenated().to_string()).is_some());
        assert!(store.get(&Uuid::new_v4().simple().to_string()).is_none());
        assert!(store.get("not an id").is_none());
        assert!(store.get("").is_none());
    }

    #[test]
    fn refuses_duplicates_and_output_of_idle_commands() {
        let store = EventStore::default();
        let c = command();
        let id = c.id;
        store.begin(c.clone()).unwrap();
        assert_eq!(store.begin(c), Err(StoreError::DuplicateId(id)));
        let out = BashOutput::new(id, 0);
        store.push_output(out.clone()).unwrap();
        assert_eq!(store.push_output(out.clone()), Err(StoreError::DuplicateId(out.id)));
        store.finish(BashOutput { exit_code: Some(0), ..BashOutput::new(id, 1) }).unwrap();
        assert_eq!(store.push_output(BashOutput::new(id, 2)), Err(StoreError::NotRunning(id)));
        let stranger = Uuid::new_v4();
        assert_eq!(store.finish(BashOutput::new(stranger, 0)), Err(StoreError::NotRunning(stranger)));
        assert!(!store.end(id));
        assert_eq!(store.len(), 3);
        let message = StoreError::NotRunning(id).to_string();
        assert_eq!(message, format!("bash command {} is not running", id.simple()));
    }

    #[test]
    fn sdk_polling_sees_every_output_once_and_the_exit_code() {
        // RemoteWorkspace.execute_command: command_id__eq + kind__eq=BashOutput +
        // sort_order=TIMESTAMP + limit=100, then order__gt=<highest order seen>.
        let store = EventStore::default();
        let other = run(&store, 3); // another command's outputs must not show up
        let c = command();
        let id = c.id;
        store.begin(c).unwrap();
        let mut splitter = OutputSplitter::with_max_chars(id, 2);

        let mut sdk = SdkPoller { command_id: id, last_order: -1, ..SdkPoller::default() };
        sdk.poll(&store);
        // 250 chunks while running: more than one page's worth between two polls.
        for _ in 0..250 {
            for o in splitter.push_stdout("ab") {
                store.push_output(o).unwrap();
            }
        }
        sdk.poll(&store);
        sdk.poll(&store);
        assert_eq!(sdk.exit_code, None);
        store.finish(splitter.finish(0)).unwrap();
        for _ in 0..5 {
            sdk.poll(&store);
        }
        assert_eq!(sdk.exit_code, Some(0));
        assert_eq!(sdk.stdout, "ab".repeat(250));
        assert_eq!(sdk.seen.len(), 250);
        assert_ne!(other, id);
    }

    /// What `RemoteWorkspace.execute_command` keeps between polls.
    #[derive(Default)]
    struct SdkPoller {
        command_id: Uuid,
        last_order: i64,
        seen: HashSet<Uuid>,
        stdout: String,
        exit_code: Option<i32>,
    }

    impl SdkPoller {
        fn poll(&mut self, store: &EventStore) {
            let id_hex = self.command_id.simple().to_string();
            let order = self.last_order.to_string();
            let mut pairs = vec![
                ("command_id__eq", id_hex.as_str()),
                ("sort_order", "TIMESTAMP"),
                ("limit", "100"),
                ("kind__eq", "BashOutput"),
            ];
            if self.last_order >= 0 {
                pairs.push(("order__gt", &order));
            }
            let page = store.search(&query(&pairs)).unwrap();
            for event in &page.items {
                let BashEvent::Output(o) = &**event else { panic!("only outputs were asked for") };
                assert_eq!(o.command_id, self.command_id);
                assert!(self.seen.insert(o.id), "duplicate event");
                self.last_order = self.last_order.max(o.order as i64);
                self.stdout.push_str(o.stdout.as_deref().unwrap_or_default());
                self.exit_code = self.exit_code.or(o.exit_code);
            }
        }
    }

    #[test]
    fn filters_by_kind_and_command() {
        let store = EventStore::default();
        let a = run(&store, 2);
        let b = run(&store, 3);
        let count = |pairs: &[(&str, &str)]| store.search(&query(pairs)).unwrap().items.len();
        assert_eq!(count(&[]), 7);
        assert_eq!(count(&[("kind__eq", "BashCommand")]), 2);
        assert_eq!(count(&[("kind__eq", "BashOutput")]), 5);
        let b_hex = b.simple().to_string();
        assert_eq!(count(&[("command_id__eq", &b_hex)]), 3); // outputs only, as the reference
        assert_eq!(count(&[("command_id__eq", &b_hex), ("kind__eq", "BashCommand")]), 0);
        assert_eq!(count(&[("command_id__eq", &b_hex), ("order__gt", "0")]), 2);
        assert_eq!(count(&[("order__gt", "0")]), 2 + 1 + 2); // commands have no order and pass
        assert_ne!(a, b);
    }

    #[test]
    fn paging_visits_each_event_once_in_both_orders() {
        let store = EventStore::default();
        let id = run(&store, 1);
        let c = command();
        let cid = c.id;
        store.begin(c).unwrap();
        // Many outputs sharing one timestamp: ties must keep insertion order.
        let stamp = Timestamp::now();
        for order in 0..230 {
            store.push_output(BashOutput { timestamp: stamp, ..BashOutput::new(cid, order) }).unwrap();
        }
        store.finish(BashOutput { exit_code: Some(0), ..BashOutput::new(cid, 230) }).unwrap();
        let total = 2 + 1 + 231;

        let (asc, pages) = all_pages(&store, &[("limit", "100")]);
        assert_eq!((asc.len(), pages), (total, 3));
        assert_eq!(asc.iter().collect::<HashSet<_>>().len(), total);
        let full = store.search(&query(&[("limit", "100")])).unwrap();
        assert_eq!(full.items[0].id(), id);
        let orders: Vec<u64> = asc
            .iter()
            .filter_map(|id| match store.get(&id.simple().to_string()).as_deref() {
                Some(BashEvent::Output(o)) if o.command_id == cid => Some(o.order),
                _ => None,
            })
            .collect();
        assert_eq!(orders, (0..=230).collect::<Vec<_>>());

        let (desc, _) = all_pages(&store, &[("limit", "7"), ("sort_order", "TIMESTAMP_DESC")]);
        assert_eq!(desc, asc.iter().rev().copied().collect::<Vec<_>>());

        let (one_by_one, pages) = all_pages(&store, &[("limit", "1"), ("kind__eq", "BashCommand")]);
        assert_eq!((one_by_one.len(), pages), (2, 2));
    }

    #[test]
    fn page_ids_are_event_ids_and_unknown_ones_restart() {
        let store = EventStore::default();
        run(&store, 5);
        let first = store.search(&query(&[("limit", "2")])).unwrap();
        let next = first.next_page_id.clone().unwrap();
        assert_eq!(next.len(), 32);
        let second = store.search(&query(&[("limit", "2"), ("page_id", &next)])).unwrap();
        assert_eq!(second.items[0].id().simple().to_string(), next);
        // The reference's file-name form of the same page id.
        let file_name = format!("20240101120000000000_BashOutput_{}_{next}", Uuid::nil().simple());
        let same = store.search(&query(&[("limit", "2"), ("page_id", &file_name)])).unwrap();
        assert_eq!(ids(&same), ids(&second));
        for unknown in [Uuid::new_v4().simple().to_string(), "garbage".into()] {
            let restart = store.search(&query(&[("limit", "2"), ("page_id", &unknown)])).unwrap();
            assert_eq!(ids(&restart), ids(&first));
        }
        let last = store.search(&query(&[("limit", "100")])).unwrap();
        assert_eq!((last.items.len(), last.next_page_id), (6, None));
    }

    #[test]
    fn timestamp_windows() {
        let store = EventStore::default();
        let at = |micros: i64| Timestamp::from_unix_micros(1_704_110_400_000_000 + micros).unwrap();
        let c = BashCommand { timestamp: at(0), ..command() };
        let cid = c.id;
        store.begin(c).unwrap();
        for (order, micros) in [(0, 500_000), (1, 1_000_000), (2, 1_000_001)] {
            store.push_output(BashOutput { timestamp: at(micros), ..BashOutput::new(cid, order) }).unwrap();
        }
        let orders = |pairs: &[(&str, &str)]| -> Vec<Option<u64>> {
            let page = store.search(&query(pairs)).unwrap();
            page.items
                .iter()
                .map(|e| match &**e {
                    BashEvent::Output(o) => Some(o.order),
                    BashEvent::Command(_) => None,
                })
                .collect()
        };
        assert_eq!(orders(&[("timestamp__gte", "2024-01-01T12:00:00Z")]).len(), 4);
        assert_eq!(orders(&[("timestamp__gte", "2024-01-01T12:00:00.000001Z")]), [Some(0), Some(1), Some(2)]);
        assert_eq!(orders(&[("timestamp__lt", "2024-01-01T12:00:01")]), [None, Some(0)]);
        assert_eq!(
            orders(&[
                ("timestamp__gte", "2024-01-01T12:00:01+00:00"),
                ("timestamp__lt", "2024-01-01T12:00:01.000001Z")
            ]),
            [Some(1)]
        );
        assert_eq!(orders(&[("timestamp__gte", "2024-01-01T14:00:00.5+02:00")]), [Some(0), Some(1), Some(2)]);
        assert_eq!(orders(&[("timestamp__gte", "2024-01-01T12:00:02Z")]), []);
        assert_eq!(
            orders(&[("timestamp__lt", "2024-01-01T12:00:01.000001Z"), ("sort_order", "TIMESTAMP_DESC")]),
            [Some(1), Some(0), None]
        );
    }

    #[test]
    fn evicts_oldest_finished_events_by_count() {
        let store = EventStore::new(5, usize::MAX);
        let running = command();
        let running_id = running.id;
        store.begin(running).unwrap(); // oldest event of all, never evicted while running
        let first = run(&store, 2);
        let second = run(&store, 2);
        assert_eq!(store.len(), 5);
        let third = run(&store, 2); // 8 events: the 3 oldest finished ones go
        assert_eq!(store.len(), 5);
        assert!(store.get(&running_id.simple().to_string()).is_some());
        assert!(store.get(&first.simple().to_string()).is_none());
        let remaining = store.search(&query(&[])).unwrap();
        let commands: Vec<Uuid> = remaining.items.iter().map(|e| e.command_id()).collect();
        assert_eq!(commands, [running_id, second, third, third, third]);

        // A running command's output may exceed the bound; it never displaces its own events.
        for order in 0..6 {
            store.push_output(BashOutput::new(running_id, order)).unwrap();
        }
        assert_eq!(store.len(), 7);
        assert!(store.search(&query(&[])).unwrap().items.iter().all(|e| e.command_id() == running_id));
        // Once it finishes, its oldest events are evicted too.
        assert!(store.end(running_id));
        assert_eq!(store.len(), 5);
        assert!(store.get(&running_id.simple().to_string()).is_none());
    }

    #[test]
    fn evicts_oldest_finished_events_by_bytes() {
        let kib = "k".repeat(1024);
        let chunk = |id, order| BashOutput { stdout: Some(kib.clone()), ..BashOutput::new(id, order) };
        let size = BashEvent::from(chunk(Uuid::nil(), 0)).approx_bytes();
        let store = EventStore::new(usize::MAX, size * 4);

        let old = command();
        let old_id = old.id;
        store.begin(old).unwrap();
        let running = command();
        let running_id = running.id;
        store.begin(running).unwrap();
        store.push_output(chunk(old_id, 0)).unwrap();
        store.push_output(chunk(running_id, 0)).unwrap();
        store.finish(BashOutput { exit_code: Some(0), ..chunk(old_id, 1) }).unwrap();
        assert!(store.total_bytes() <= size * 4);
        // The old command's events went first, oldest first; the running one's stayed.
        let kept = store.search(&query(&[])).unwrap();
        assert!(kept.items.iter().any(|e| e.id() == running_id));
        assert_eq!(kept.items.iter().filter(|e| e.command_id() == running_id).count(), 2);

        for order in 1..10 {
            store.push_output(chunk(running_id, order)).unwrap();
        }
        assert!(store.total_bytes() > size * 4, "running events are kept beyond the bound");
        assert_eq!(
            store
                .search(&query(&[("command_id__eq", &running_id.simple().to_string())]))
                .unwrap()
                .items
                .len(),
            10
        );
        store.finish(BashOutput { exit_code: Some(0), ..BashOutput::new(running_id, 10) }).unwrap();
        assert!(store.total_bytes() <= size * 4);
        let newest = store.search(&query(&[])).unwrap();
        assert_eq!(newest.items.last().map(|e| e.kind()), Some(EventKind::BashOutput));
        assert!(
            newest
                .items
                .last()
                .is_some_and(|e| matches!(&**e, BashEvent::Output(o) if o.exit_code == Some(0)))
        );
    }

    #[test]
    fn a_running_commands_outputs_can_be_removed_and_replaced_in_place() {
        let store = EventStore::default();
        let c = command();
        let id = c.id;
        store.begin(c).unwrap();
        let text = |o: BashOutput, t: &str| BashOutput { stdout: Some(t.into()), ..o };
        let first = text(BashOutput::new(id, 0), "0123456789");
        let second = text(BashOutput::new(id, 1), "abc");
        let stored = store.push_output(first.clone()).unwrap();
        assert_eq!(*stored, BashEvent::Output(first.clone()));
        store.push_output(second.clone()).unwrap();
        let before = store.total_bytes();

        // Replaced: same id and place, fewer bytes.
        let trimmed = text(first.clone(), "89");
        assert_eq!(*store.replace_output(trimmed.clone()).unwrap(), BashEvent::Output(trimmed.clone()));
        assert_eq!(store.total_bytes(), before - 8);
        let all = store.search(&query(&[])).unwrap();
        assert_eq!(ids(&all), [id, first.id, second.id]);
        assert_eq!(store.get(&first.id.simple().to_string()).as_deref(), Some(&BashEvent::Output(trimmed)));

        // Removed: gone from lookups, searches and the byte count.
        assert!(store.remove_output(id, second.id));
        assert!(!store.remove_output(id, second.id));
        assert!(store.get(&second.id.simple().to_string()).is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(store.total_bytes(), before - 8 - BashEvent::from(second.clone()).approx_bytes());

        // Only outputs of that running command: not its command event, not another's.
        assert!(!store.remove_output(id, id));
        assert!(!store.remove_output(Uuid::new_v4(), first.id));
        let other = Uuid::new_v4();
        let stranger = text(BashOutput { id: first.id, ..BashOutput::new(other, 0) }, "x");
        assert_eq!(store.replace_output(stranger), Err(StoreError::NotRunning(other)));
        assert_eq!(store.replace_output(second.clone()), Err(StoreError::NotStored(second.id)));

        // Once finished, the command's outputs are the store's to evict, not the writer's.
        store.finish(BashOutput { exit_code: Some(0), ..BashOutput::new(id, 2) }).unwrap();
        assert!(!store.remove_output(id, first.id));
        assert_eq!(store.replace_output(text(first, "9")), Err(StoreError::NotRunning(id)));
    }

    #[test]
    fn rejects_an_out_of_range_limit_built_directly() {
        let store = EventStore::default();
        for limit in [0, 101] {
            let err = store.search(&SearchQuery { limit, ..SearchQuery::default() }).unwrap_err();
            assert_eq!(err.param, "limit");
        }
    }

    #[test]
    fn page_serializes_like_the_reference() {
        let store = EventStore::default();
        let id = run(&store, 1);
        let page = store.search(&query(&[("limit", "1")])).unwrap();
        let value = serde_json::to_value(&page).unwrap();
        let next = page.next_page_id.clone().unwrap();
        let first = serde_json::to_value(&*page.items[0]).unwrap();
        assert_eq!(value, serde_json::json!({ "items": [first], "next_page_id": next }));
        assert_eq!(value["items"][0]["kind"], "BashCommand");
        assert_eq!(value["items"][0]["id"], id.simple().to_string());
        let last = store.search(&query(&[("page_id", &next)])).unwrap();
        assert_eq!(serde_json::to_value(&last).unwrap()["next_page_id"], serde_json::Value::Null);
    }
}
