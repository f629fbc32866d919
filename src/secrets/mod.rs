//! Secrets: what a value is, how descriptors are parsed, where lookups may go, and which
//! descriptors each scope holds. Nothing here knows about HTTP frameworks.

pub mod origin;
pub mod registry;
pub mod source;
pub mod value;
