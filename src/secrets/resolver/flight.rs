//! [`Flights`]: the resolver's one duplicate-request guard. Concurrent misses for one entry
//! share one upstream request, and that request runs on its own task.
//!
//! Why this guard and not moka's `get_with`/`try_get_with`: moka runs the init future in the
//! task of the caller that got there first. When that caller goes away (an HTTP client
//! disconnects, a command is cancelled), its init future is dropped mid-request, and the next
//! waiter starts the init over: a second upstream request for the same miss, and a first one
//! whose answer is thrown away. Here the request is spawned: it completes and its result is
//! kept whoever is still waiting, and a caller that arrives while it runs joins it. The cache
//! is plain storage (`get`, `insert`, `invalidate`); nothing else deduplicates requests.
//!
//! Invariant: at most one flight per key at a time, and its slot is removed when the flight
//! ends, however it ends (a panic included), so a key can never stay stuck behind a dead one.
//! The flight's own future does whatever must be visible before the slot goes (the resolver
//! writes the cache there), so a caller that finds no slot finds the cache already filled.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

/// One slot per key with a request in flight: the channel its result is sent on.
type Slots<V> = HashMap<u64, watch::Sender<Option<V>>>;

/// Requests in flight, by key.
pub(super) struct Flights<V> {
    // std lock: held only to look up, insert or remove a slot, never across `.await`.
    slots: Mutex<Slots<V>>,
    /// Callers that joined a flight instead of starting one.
    joins: Counter,
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    #[cfg(test)]
    pub(super) fn new() -> Arc<Self> {
        Self::counting(Counter::default())
    }

    /// No flights yet; each caller that joins one is counted in `joins`.
    pub(super) fn counting(joins: Counter) -> Arc<Self> {
        Arc::new(Self { slots: Mutex::new(HashMap::new()), joins })
    }

    /// Waits for the flight for `key`, starting `start()` on its own task when there is
    /// none. `None` when the flight ended without a result (its task panicked).
    ///
    /// Dropping the returned future only stops waiting: the flight runs to completion.
    pub(super) async fn join<F, Fut>(self: &Arc<Self>, key: u64, start: F) -> Option<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (mut rx, takeoff) = {
            let mut slots = self.lock();
            match slots.get(&key) {
                Some(tx) => {
                    self.joins.inc();
                    (tx.subscribe(), None)
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    slots.insert(key, tx.clone());
                    (rx, Some(tx))
                }
            }
        };
        if let Some(tx) = takeoff {
            let flight = start();
            let landing = Landing { flights: self.clone(), key };
            tokio::spawn(async move {
                // Dropped last, even when `flight` panics: the slot never outlives the task.
                let _landing = landing;
                let result = flight.await;
                // Stored even when nobody waits any more: a caller may still subscribe
                // before the slot is removed.
                tx.send_replace(Some(result));
            });
        }
        match rx.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            // Every sender was dropped without a result: the flight panicked.
            Err(_) => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<V>> {
        // A slot map cannot be left half-updated by a panic (each change is one insert or
        // remove), so a poisoned lock is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn waiting(&self, key: u64) -> usize {
        self.lock().get(&key).map_or(0, watch::Sender::receiver_count)
    }
}

/// Removes a flight's slot when its task ends.
struct Landing<V: Clone + Send + Sync + 'static> {
    flights: Arc<Flights<V>>,
    key: u64,
}

impl<V: Clone + Send + Sync + 'static> Drop for Landing<V> {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// Polls `cond` until it holds, failing after a generous deadline.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_flight() {
        let flights = Flights::<u32>::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (flights, starts, mut released) = (flights.clone(), starts.clone(), released.clone());
            callers.spawn(async move {
                flights
                    .join(7, move || {
                        starts.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = released.wait_for(|r| *r).await;
                            42
                        }
                    })
                    .await
            });
        }
        until("every caller to wait", || flights.waiting(7) == 100).await;
        release.send(true).unwrap();
        while let Some(r) = callers.join_next().await {
            assert_eq!(r.unwrap(), Some(42));
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(flights.joins.get(), 99, "every caller but the first joined");
        assert_eq!(flights.in_flight(), 0, "the slot is gone once the flight lands");
        drop(released);
    }

    #[tokio::test]
    async fn the_flight_completes_when_every_caller_goes_away_and_later_callers_join_it() {
        let flights = Flights::<&'static str>::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let (landed_tx, landed) = oneshot::channel::<()>();
        let counter = starts.clone();
        let first = tokio::spawn({
            let flights = flights.clone();
            async move {
                flights
                    .join(1, move || {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = released.await;
                            let _ = landed_tx.send(());
                            "value"
                        }
                    })
                    .await
            }
        });
        until("the flight to start", || starts.load(Ordering::SeqCst) == 1).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(flights.in_flight(), 1, "the flight outlives its only caller");
        // A caller arriving now joins the running flight instead of starting another.
        let second = tokio::spawn({
            let (flights, starts) = (flights.clone(), starts.clone());
            async move {
                flights
                    .join(1, move || {
                        starts.fetch_add(1, Ordering::SeqCst);
                        async { "second request" }
                    })
                    .await
            }
        });
        release.send(()).unwrap();
        landed.await.unwrap();
        assert_eq!(second.await.unwrap(), Some("value"));
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_flight_frees_its_key() {
        let flights = Flights::<u8>::new();
        let got = flights.join(3, || async { panic!("flight failed") }).await;
        assert_eq!(got, None);
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.join(3, || async { 5 }).await, Some(5), "the key is usable again");
    }

    #[tokio::test]
    async fn keys_do_not_share_flights() {
        let flights = Flights::<u64>::new();
        let (a, b) = tokio::join!(flights.join(1, || async { 1 }), flights.join(2, || async { 2 }));
        assert_eq!((a, b), (Some(1), Some(2)));
    }
}
