//! Secrets: what a value is, how descriptors are parsed, where lookups may go, which
//! descriptors each scope holds, and how one lookup is fetched. Nothing here knows about HTTP
//! frameworks.

pub mod discovery;
pub mod export;
pub mod fetch;
pub mod guard;
pub mod origin;
pub mod registry;
pub mod resolver;
pub mod select;
pub mod session_key;
pub mod source;
pub mod target;
pub mod value;
