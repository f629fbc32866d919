//! Egress mode (contract §8): commands get placeholders instead of bound secrets, and the
//! sidecar's forward proxy writes the real value only into verified TLS requests to the hosts
//! each secret is bound to, in the places its binding names.
//!
//! - [`binding`]: which hosts and which request places a secret is bound to.
//! - [`grant`]: the per-command proxy credentials and the substitutions each one may spend.
//! - [`ca`]: the in-memory CA and the leaf certificates the proxy presents to commands.
//! - [`parse`], [`defaults`], [`named`]: checking bindings; the built-in table; bindings by
//!   name from the flags.
//! - [`placeholder`]: what a command sees instead of a bound value.
//! - [`proxy`]: the HTTP/1.1 forward proxy itself.
//! - [`runtime`]: what egress mode makes at start (CA, proxy socket, counters).

pub mod binding;
pub mod bundle;
pub mod ca;
pub mod defaults;
pub mod grant;
pub mod named;
pub mod parse;
pub mod placeholder;
pub mod proxy;
pub mod runtime;
