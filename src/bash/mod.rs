//! The bash event model behind the OpenHands-compatible `/api/bash/*` routes: the events
//! ([`model`]), their timestamps ([`timestamp`]), cutting output into events ([`split`]),
//! bounding a running command's output ([`writer`]), search parameters ([`query`]), the
//! bounded in-memory store ([`store`]) and masking events again as they are read ([`masked`]).
//!
//! Nothing here spawns processes or knows about HTTP: the runner feeds masked output to an
//! [`EventWriter`], which cuts it with an [`OutputSplitter`] and keeps it bounded in the
//! [`EventStore`]; the handlers read the store and mask what they read.

pub mod masked;
pub mod model;
pub mod query;
pub mod split;
pub mod store;
pub mod timestamp;
pub mod writer;

pub use masked::{MaskedPage, mask_event};
pub use model::{BashCommand, BashEvent, BashOutput, EventKind};
pub use query::{SearchError, SearchQuery, SortOrder};
pub use split::{OutputSplitter, Stream};
pub use store::{EventPage, EventStore, StoreError};
pub use timestamp::Timestamp;
pub use writer::{EventWriter, OutputBudget};
