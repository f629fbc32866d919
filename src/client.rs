//! `secret-sidecar exec`: a client that runs one command through a running sidecar, streams
//! its masked output to this process's stdout and stderr, and exits with the command's code
//! (124 when it timed out, 125 when the sidecar or HTTP failed).
//!
//! The arguments after `--` are joined with spaces into one shell command line, as `ssh`
//! does, so `exec -- echo '$TOKEN'` expands `$TOKEN` in the command's shell.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

/// Exit code when the command timed out.
const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the sidecar could not run the command or answered with an error.
const EXIT_SIDECAR: u8 = 125;

/// Options of `exec`.
#[derive(Clone, Debug, Args)]
pub struct ExecArgs {
    /// Base URL of the sidecar.
    #[arg(long, env = "SECRET_SIDECAR_URL", default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// Run in this conversation's scope (sandbox-wide otherwise).
    #[arg(long)]
    pub conversation: Option<String>,
    /// Seconds the command may run.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// File with the API key [default: SESSION_API_KEY, OH_SESSION_API_KEYS_0, else the
    /// generated key file].
    #[arg(long, env = "SECRET_SIDECAR_API_KEY_FILE", hide_env_values = true)]
    pub api_key_file: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the command; returns the process exit code.
pub async fn exec(args: ExecArgs, default_key_file: PathBuf) -> u8 {
    match run(&args, default_key_file).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secret-sidecar exec: {e}");
            EXIT_SIDECAR
        }
    }
}

fn api_key(args: &ExecArgs, default_key_file: PathBuf) -> Result<String, String> {
    if args.api_key_file.is_none() {
        for var in ["SESSION_API_KEY", "OH_SESSION_API_KEYS_0"] {
            if let Ok(k) = std::env::var(var) {
                if !k.is_empty() {
                    return Ok(k);
                }
            }
        }
    }
    let path = args.api_key_file.clone().unwrap_or(default_key_file);
    std::fs::read_to_string(&path)
        .map(|k| k.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| format!("no API key: {}: {e}", path.display()))
}

async fn run(args: &ExecArgs, default_key_file: PathBuf) -> Result<u8, String> {
    let key = api_key(args, default_key_file)?;
    let path = match &args.conversation {
        Some(id) => format!("/api/conversations/{id}/commands/stream"),
        None => "/api/commands/stream".to_owned(),
    };
    let mut body = json!({"command": args.command.join(" ")});
    if let Some(t) = args.timeout {
        body["timeout"] = json!(t);
    }
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let mut response = client
        .post(format!("{}{path}", args.url.trim_end_matches('/')))
        .header("X-Session-API-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach the sidecar: {}", e.without_url()))?;
    if !response.status().is_success() {
        let status = response.status();
        let detail = response.text().await.unwrap_or_default();
        return Err(format!("sidecar answered {status}: {detail}"));
    }
    let (mut pending, mut out, mut err) = (Vec::new(), std::io::stdout(), std::io::stderr());
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("stream broken: {}", e.without_url()))?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let frame: Value =
                serde_json::from_slice(&line).map_err(|_| "malformed stream frame".to_owned())?;
            let data = frame["data"].as_str().unwrap_or_default().as_bytes();
            match frame["type"].as_str() {
                Some("stdout") => {
                    out.write_all(data).and_then(|()| out.flush()).map_err(|e| e.to_string())?
                }
                Some("stderr") => {
                    err.write_all(data).and_then(|()| err.flush()).map_err(|e| e.to_string())?
                }
                Some("exit") if frame["timed_out"] == json!(true) => return Ok(EXIT_TIMEOUT),
                Some("exit") => {
                    let code = frame["exit_code"].as_i64().unwrap_or(i64::from(EXIT_SIDECAR));
                    return Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(EXIT_SIDECAR));
                }
                Some("error") => return Err(frame["detail"].as_str().unwrap_or("error").to_owned()),
                _ => {}
            }
        }
    }
    Err("the stream ended without an exit frame".into())
}
