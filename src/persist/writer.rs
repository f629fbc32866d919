//! [`Durable`]: registry updates that are on disk before they are acknowledged, with group
//! commit.
//!
//! Every change to the API layers goes through [`Durable`]. Without a state file it is the
//! registry call and nothing more. With one, a change is applied to the registry and given
//! a sequence number under one lock; the caller then waits until a write covering that
//! number has completed. One writer thread takes a snapshot of everything applied so far,
//! seals it and replaces the file; every caller whose change it covers is answered at once,
//! so a burst of updates costs one or a few fsyncs rather than one each.
//!
//! A write that fails is rolled back: the registry's API layers are put back to the last
//! snapshot that is on disk, and every caller whose change was rolled back gets
//! [`PersistError::NotWritten`] (the answer is 507; memory and file agree again). Readers may
//! see a change in the moment between applying it and writing it, never after a failure.
//!
//! Invariant: the `applied` lock is taken before the registry's lock, never after, and is
//! never held across `.await` or file I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::file;
use super::seal::Sealer;
use super::snapshot;
use crate::secrets::registry::{ApiLayers, ConversationId, Entry, Registry, RegistryError, ScopeId};
use crate::secrets::source::SecretSource;
use crate::secrets::value::SecretName;

/// Why an acknowledged-durable update failed. Names no value.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersistError {
    #[error("the state file could not be written, so the update was not applied")]
    NotWritten,
    #[error("the state file writer has stopped; the update may not survive a restart")]
    WriterStopped,
}

/// Why an update was refused: by the registry, or because it could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Persist(#[from] PersistError),
}

type Waiter = oneshot::Sender<Result<(), PersistError>>;

/// What the writer and the updaters share under the `applied` lock.
#[derive(Default)]
struct Applied {
    /// The sequence number of the last change applied to the registry.
    seq: u64,
    /// Callers waiting for their change (keyed by its number) to be written.
    waiting: BTreeMap<u64, Waiter>,
    /// Set when the last handle is dropped: the writer exits.
    stop: bool,
}

struct Shared {
    registry: Arc<Registry>,
    // std lock: held for one registry mutation or one snapshot, never across `.await` or I/O.
    applied: Mutex<Applied>,
    /// Wakes the writer when `waiting` gains an entry or `stop` is set.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Applied> {
        // Every critical section leaves `Applied` consistent, so a poisoned lock is usable.
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stops the writer thread when the last [`Durable`] clone goes.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.wake.notify_all();
    }
}

/// Registry updates, written to the state file (when there is one) before they return.
#[derive(Clone)]
pub(crate) struct Durable {
    registry: Arc<Registry>,
    writer: Option<Arc<StopOnDrop>>,
}

impl Durable {
    /// Updates straight to the registry: no state file.
    pub(crate) fn in_memory(registry: Arc<Registry>) -> Self {
        Self { registry, writer: None }
    }

    /// Starts the writer thread for `path`; the file already holds what `registry` holds.
    pub(crate) fn with_file(registry: Arc<Registry>, path: PathBuf, sealer: Sealer) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { registry, applied: Mutex::default(), wake: Condvar::new() });
        let durable = shared.registry.api_layers();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&worker, &path, &sealer, durable))?;
        Ok(Self { registry: shared.registry.clone(), writer: Some(Arc::new(StopOnDrop(shared))) })
    }

    /// [`Registry::update`], durably.
    pub(crate) async fn update(
        &self,
        scope: &ScopeId,
        entries: Vec<(SecretName, SecretSource)>,
    ) -> Result<Vec<Arc<Entry>>, UpdateError> {
        self.apply(|r| r.update(scope, entries)).await
    }

    /// [`Registry::remove`], durably.
    pub(crate) async fn remove(&self, scope: &ScopeId, name: &SecretName) -> Result<Arc<Entry>, UpdateError> {
        self.apply(|r| r.remove(scope, name)).await
    }

    /// [`Registry::drop_conversation`], durably.
    pub(crate) async fn drop_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Vec<Arc<Entry>>, UpdateError> {
        self.apply(|r| r.drop_conversation(id)).await
    }

    async fn apply<T>(
        &self,
        change: impl FnOnce(&Registry) -> Result<T, RegistryError>,
    ) -> Result<T, UpdateError> {
        let Some(writer) = &self.writer else { return Ok(change(&self.registry)?) };
        let shared = &writer.0;
        let (tx, rx) = oneshot::channel();
        let out = {
            let mut applied = shared.lock();
            let out = change(&shared.registry)?;
            applied.seq += 1;
            let seq = applied.seq;
            applied.waiting.insert(seq, tx);
            out
        };
        shared.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(PersistError::WriterStopped.into()),
        }
    }
}

/// The writer thread: wait for changes, write a snapshot covering all of them, answer.
fn write_loop(shared: &Shared, path: &std::path::Path, sealer: &Sealer, mut durable: ApiLayers) {
    loop {
        let (seq, layers) = {
            let mut applied = shared.lock();
            while applied.waiting.is_empty() && !applied.stop {
                applied = shared.wake.wait(applied).unwrap_or_else(|e| e.into_inner());
            }
            if applied.waiting.is_empty() {
                return;
            }
            (applied.seq, shared.registry.api_layers())
        };
        let written = snapshot::encode(&layers)
            .map_err(|e| format!("cannot encode the descriptors: {e}"))
            .and_then(|plain| file::replace(path, &sealer.seal(&plain)).map_err(|e| e.to_string()));
        let mut applied = shared.lock();
        match written {
            Ok(()) => {
                let later = applied.waiting.split_off(&(seq + 1));
                let covered = std::mem::replace(&mut applied.waiting, later);
                drop(applied);
                tracing::debug!(updates = covered.len(), "state file written");
                for (_, waiter) in covered {
                    let _ = waiter.send(Ok(()));
                }
                durable = layers;
            }
            Err(cause) => {
                // Under the lock, so no change slips in between the rollback and the answers.
                shared.registry.restore_api_layers(durable.clone());
                let failed = std::mem::take(&mut applied.waiting);
                drop(applied);
                tracing::error!(
                    path = %path.display(),
                    updates = failed.len(),
                    "state file not written, updates rolled back: {cause}"
                );
                for (_, waiter) in failed {
                    let _ = waiter.send(Err(PersistError::NotWritten));
                }
            }
        }
    }
}
