//! The `secret-sidecar` binary: parse flags, set up logging and process hardening, run.

use std::process::ExitCode;

use clap::Parser;
use secret_sidecar::cli::{Cli, Command, ExecArgs, HealthArgs};
use secret_sidecar::client;
use secret_sidecar::config::{Config, Env, default_key_file};
use secret_sidecar::{exec, hardening, install, probe, reaper, server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Exec(args)) => {
            reaper::reap_if_pid1();
            return exec(args);
        }
        Some(Command::Health(args)) => return health(&args),
        Some(Command::Install(args)) => {
            return match install::install(&args.dir) {
                Ok(path) => {
                    println!("installed {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("secret-sidecar install: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => cli.serve,
    };
    // Still single-threaded, and before the PID 1 fork so both processes are covered: take
    // the environment, scrub the keys out of the block /proc/<pid>/environ shows, harden.
    let env = Env::from_process();
    let is_named = |list: &[String], name: &[u8]| list.iter().any(|v| v.as_bytes() == name);
    // SAFETY: no thread has been started and nothing holds a pointer into the environment.
    let scrubbed = unsafe {
        hardening::scrub_environ(|name| {
            exec::holds_key(name)
                || is_named(&args.allow_env_headers, name)
                || is_named(&args.strip_env, name)
        })
    };
    // Before the capabilities are confined: locking may need CAP_IPC_LOCK.
    let locked = if args.mlock { Some(hardening::lock_memory()) } else { None };
    let shortfalls = hardening::harden_process(matches!(locked, Some(Ok(()))));
    reaper::reap_if_pid1();
    if let Err(e) = telemetry::init(&args.log, args.log_format) {
        eprintln!("secret-sidecar: {e}");
        return ExitCode::from(2);
    }
    tracing::debug!(variables = ?scrubbed, "key variables scrubbed from the process environment");
    match locked {
        Some(Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
        Some(Ok(())) => tracing::info!("memory locked into RAM"),
        None => {}
    }
    for step in shortfalls {
        tracing::warn!("process hardening incomplete: {step}");
    }
    let config = match Config::new(&args, &env) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    drop(env);
    if config.exec.shell.is_none() {
        tracing::warn!(
            "no shell: neither bash nor sh is on PATH, so command routes answer 503; \
             copy the binary into the sandbox image to run commands"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(server::start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    };
    // A mask compile still running on the blocking pool must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
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

/// `secret-sidecar health`: exit 0 when `/ready` answers 200 within the probe's timeout.
fn health(args: &HealthArgs) -> ExitCode {
    let target = match probe::Target::from_args(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("secret-sidecar health: {e}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| rt.block_on(probe::check(&target)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secret-sidecar health: {e}");
            ExitCode::FAILURE
        }
    }
}
