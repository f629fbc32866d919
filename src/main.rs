//! The `secret-sidecar` binary: parse flags, set up logging and process hardening, run.

use std::process::ExitCode;

use clap::Parser;
use secret_sidecar::client::{self, ExecArgs};
use secret_sidecar::config::{Cli, Command, Config, Env, default_key_file};
use secret_sidecar::{hardening, reaper, server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    reaper::reap_if_pid1();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Exec(args)) => return exec(args),
        None => cli.serve,
    };
    if let Err(e) = telemetry::init(&args.log, args.log_format) {
        eprintln!("secret-sidecar: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::new(&args, &Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = hardening::harden_process() {
        tracing::warn!("process hardening incomplete: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `secret-sidecar exec`: a small current-thread runtime is plenty for one request.
fn exec(args: ExecArgs) -> ExitCode {
    let key_file = default_key_file(&Env::from_process());
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => ExitCode::from(rt.block_on(client::exec(args, key_file))),
        Err(e) => {
            eprintln!("secret-sidecar exec: cannot start the runtime: {e}");
            ExitCode::from(125)
        }
    }
}
