//! Integration tests: the service over real loopback HTTP (in-process on port 0, or the real
//! binary as a child process). One binary, one module per concern.

mod common;

mod auth;
mod bad_input;
mod bash;
mod canary;
mod cli;
mod commands;
mod discipline;
mod egress_clients;
mod egress_env;
mod egress_proxy;
mod env_limits;
mod faults;
mod fetch;
mod health;
mod hostile;
mod leak_hunt;
mod lookup_process;
mod masking;
mod memory;
mod metrics;
mod openapi;
mod process;
mod properties;
mod races;
mod resolve;
mod root;
mod router;
mod secrets_api;
mod slow_clients;
mod standalone;
mod state_file;
