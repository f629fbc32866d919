//! secret-sidecar: a small HTTP service on loopback inside an agent's sandbox that keeps
//! secret *descriptors* per conversation (a `LookupSecret` says "GET this settings URL; the
//! body is the value"), resolves them only when a command needs them, runs commands with the
//! secrets they use exported, and masks every secret value in what they print.
//!
//! The parts, and a request's path through them:
//! - [`cli`]: the flags as clap sees them; [`config`]: flags and environment → a validated
//!   [`Config`], grouped per component.
//! - [`server`]: bind (TCP or unix socket), serve, drain on SIGTERM/SIGINT.
//! - `api`: the router. Every request first passes the front door (forwarded headers, `Host`,
//!   `X-Session-API-Key` via [`auth`], concurrency and body bounds), then a handler that
//!   calls a component and answers JSON; errors become responses only in `error`.
//! - [`secrets`]: values and names, descriptor parsing, the lookup allow-list, the per-scope
//!   [`secrets::registry::Registry`], the guarded fetcher and the caching
//!   [`secrets::resolver::Resolver`], discovery, and which secrets a command uses.
//! - [`exec`]: runs one command with its secrets exported, in its own process group, output
//!   drained through [`mask`] and capped; nothing outlives the request.
//! - [`mask`]: the global mask set and the (streaming) masker: bytes in, bytes out.
//! - `bash`: the events, output splitting and bounded event store behind the
//!   OpenHands-compatible `/api/bash/*` routes.
//! - `run`: the command pipeline every command route goes through.
//! - `state`: [`AppState`], the handles handlers share.
//! - [`client`]: `secret-sidecar exec`, a client of a running sidecar; [`probe`]:
//!   `secret-sidecar health`; [`install`]: `secret-sidecar install DIR`, for images without a
//!   shell; `dns`: name resolution without the C library; [`reaper`]: PID 1 duty;
//!   [`hardening`]: no core dumps; [`telemetry`]: logs; `metrics`: the Prometheus families
//!   behind `GET /metrics`, held by the state (no global registry).
//! - [`persist`]: `--state-file`, descriptors sealed on disk and written before an update is
//!   acknowledged.
//!
//! The public surface is small on purpose: what the binary (`main.rs`) needs to start the
//! service and its subcommands ([`cli`], [`config`], [`server`], [`client`], [`probe`],
//! [`install`], [`hardening`], [`reaper`], [`telemetry`], [`exec::holds_key`]), and what the
//! integration tests and benches drive directly: [`AppState`] and [`router`], the secret
//! components ([`secrets`]: registry, resolver, fetcher, descriptor parsing), the mask set
//! ([`mask`]) and [`auth::ApiKeys`]. Everything else is `pub(crate)`, and the
//! `unreachable_pub` lint keeps it so.

#![warn(unreachable_pub)]

mod api;
pub mod auth;
mod bash;
pub mod cli;
pub mod client;
pub mod config;
mod dns;
pub mod egress;
mod error;
pub mod exec;
pub mod hardening;
pub mod install;
pub mod mask;
mod metrics;
pub mod persist;
pub mod probe;
mod ratelimit;
pub mod reaper;
mod run;
pub mod secrets;
pub mod server;
mod state;
pub mod telemetry;

pub use api::{API_KEY_HEADER, router};
pub use config::Config;
pub use server::serve;
pub use state::{AppState, StateError};
