//! The bash event model behind the OpenHands-compatible `/api/bash/*` routes: the events
//! ([`model`]), their timestamps ([`timestamp`]), cutting output into events ([`split`]),
//! bounding a running command's output ([`writer`]), search parameters ([`query`]), the
//! bounded in-memory store ([`store`]) and masking events again as they are read ([`masked`]).
//!
//! Nothing here spawns processes or knows about HTTP: the runner feeds masked output to an
//! [`EventWriter`], which cuts it with an [`OutputSplitter`] and keeps it bounded in the
//! [`EventStore`]; the handlers read the store and mask what they read.

pub(crate) mod masked;
pub(crate) mod model;
pub(crate) mod query;
pub(crate) mod split;
pub(crate) mod store;
pub(crate) mod timestamp;
pub(crate) mod writer;

pub(crate) use masked::{MaskedPage, mask_event};
pub(crate) use model::{BashCommand, BashEvent, BashOutput};
pub(crate) use query::{SearchError, SearchQuery};
pub(crate) use split::Stream;
pub(crate) use store::EventStore;
pub(crate) use writer::{EventWriter, OutputBudget};
