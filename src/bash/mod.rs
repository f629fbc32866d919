//! The bash event model behind the OpenHands-compatible `/api/bash/*` routes: the events
//! ([`model`]), their timestamps ([`timestamp`]), cutting output into events ([`split`]),
//! search parameters ([`query`]) and the bounded in-memory store ([`store`]).
//!
//! Nothing here spawns processes or knows about HTTP: the runner feeds masked output through an
//! [`OutputSplitter`] into the [`EventStore`], and the handlers read the store.

pub mod model;
pub mod query;
pub mod split;
pub mod store;
pub mod timestamp;

pub use model::{BashCommand, BashEvent, BashOutput, EventKind};
pub use query::{SearchError, SearchQuery, SortOrder};
pub use split::OutputSplitter;
pub use store::{EventPage, EventStore, StoreError};
pub use timestamp::Timestamp;
