//! Command routes: `POST …/commands` (one JSON answer) and `POST …/commands/stream`
//! (NDJSON as output arrives), for a conversation or sandbox-wide.
//!
//! The flow is the same for both: validate the request, take a command slot, gather the
//! secrets the command uses (a 424 for a missing explicit one unless `on_missing: "skip"`),
//! make them fit what the system can export (`env_fit`), add their values to the global mask
//! set, then run. A client that goes away cancels the run, which kills the command's
//! process group.

use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::command_request::CommandRequest;
use super::env_fit::{fit, run_error};
use super::extract::{JsonBody, PathParams};
use super::frames::FrameStream;
use crate::error::ApiError;
use crate::exec::{Chunk, ExecOutcome, ExecRequest, Stream};
use crate::secrets::export::{Gathered, gather};
use crate::secrets::registry::ScopeId;
use crate::state::AppState;

/// Frames buffered toward a slow streaming client before the command is slowed down.
const FRAME_BUFFER: usize = 16;

/// Everything needed to start a command, after the checks.
struct Prepared {
    request: Option<ExecRequest>,
    masker: std::sync::Arc<crate::mask::Masker>,
    exported: Vec<String>,
    skipped: Vec<String>,
    stale: Vec<String>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Validates, takes a slot, gathers secrets, makes them fit, updates the mask set.
async fn prepare(state: &AppState, scope: &ScopeId, body: &Value) -> Result<Prepared, ApiError> {
    let req = CommandRequest::parse(body, state.exec_limits.max_timeout)?;
    state.executor.check_shell()?;
    let cwd = match req.cwd {
        Some(cwd) => Some(check_cwd(cwd)?),
        None => None,
    };
    let slot = state.command_slots.clone().try_acquire_owned().map_err(|_| ApiError::TooMany {
        message: "too many commands running".into(),
        retry_after: std::time::Duration::from_secs(1),
    })?;
    let gathered = gather(&state.registry, &state.resolver, scope, &req.command, &req.secrets).await;
    let Gathered { exports, mut stale, mut skipped, missing, implicit } = gathered;
    if !missing.is_empty() {
        if req.fail_on_missing {
            return Err(ApiError::MissingSecrets(missing));
        }
        skipped.extend(missing.into_iter().map(|m| m.name));
        skipped.sort();
    }
    // With "skip", any secret may be left out rather than fail the command; else only implicit ones.
    let optional =
        if req.fail_on_missing { implicit } else { exports.iter().map(|(n, _)| n.clone()).collect() };
    let mut request = ExecRequest {
        command: req.command,
        cwd,
        timeout: req.timeout,
        env: req.env,
        secrets: exports,
        scrub_values: state.held_keys(),
        scrub_names: state.exec_limits.scrub_names.clone(),
    };
    fit(&state.executor, &mut request, &optional, &mut skipped)?;
    stale.retain(|n| !skipped.contains(n));
    let exported = request.secrets.iter().map(|(n, _)| n.clone()).collect();
    let masker = state.masks_for(scope, &request.secrets)?;
    Ok(Prepared { exported, stale, skipped, request: Some(request), masker, _slot: slot })
}

fn check_cwd(cwd: PathBuf) -> Result<PathBuf, ApiError> {
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => Ok(cwd),
        _ => Err(ApiError::Unprocessable("cwd: must be an existing directory".into())),
    }
}

/// The fields common to the JSON answer and the stream's `exit` frame.
fn outcome_fields(p: &Prepared, o: &ExecOutcome) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("exit_code".into(), json!(o.exit_code));
    m.insert("signal".into(), json!(o.signal));
    m.insert("timed_out".into(), json!(o.timed_out));
    m.insert("duration_ms".into(), json!(o.duration.as_millis() as u64));
    m.insert("exported".into(), json!(p.exported));
    m.insert("skipped".into(), json!(p.skipped));
    m.insert("stale".into(), json!(p.stale));
    m.insert("truncated".into(), json!({"stdout": o.truncated_stdout, "stderr": o.truncated_stderr}));
    if o.masking_failed {
        m.insert("masking_failed".into(), json!(true));
    }
    m
}

/// `POST …/commands`.
pub async fn run(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let scope = params.scope()?;
    let mut prepared = prepare(&state, &scope, &body).await?;
    let request = prepared.request.take().ok_or(ApiError::Unavailable)?;
    // A child of the shutdown token: draining kills running commands.
    let cancel = state.shutdown.child_token();
    // Dropping this handler (client gone) cancels the run and kills the process group.
    let _guard = cancel.clone().drop_guard();
    let outcome = state
        .executor
        .run(request, prepared.masker.clone(), None, cancel)
        .await
        .map_err(|e| run_error(e, &prepared.exported))?;
    let mut fields = outcome_fields(&prepared, &outcome);
    fields.insert("stdout".into(), json!(outcome.stdout));
    fields.insert("stderr".into(), json!(outcome.stderr));
    Ok(Json(Value::Object(fields)))
}

fn frame(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// `POST …/commands/stream`: NDJSON `start`, `stdout`/`stderr`, then `exit` or `error`.
pub async fn stream(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let scope = params.scope()?;
    let mut prepared = prepare(&state, &scope, &body).await?;
    let request = prepared.request.take().ok_or(ApiError::Unavailable)?;
    let (frames_tx, frames_rx) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    // A child of the shutdown token: draining kills running commands.
    let cancel = state.shutdown.child_token();
    let command_id = uuid::Uuid::new_v4().simple().to_string();
    let start = json!({"type": "start", "command_id": command_id, "exported": prepared.exported, "skipped": prepared.skipped});
    // The channel is empty and has room: this cannot block.
    let _ = frames_tx.try_send(frame(&start));
    let executor = state.executor.clone();
    let run_cancel = cancel.clone();
    tokio::spawn(async move {
        let (chunks_tx, mut chunks_rx) = mpsc::channel::<Chunk>(FRAME_BUFFER);
        let masker = prepared.masker.clone();
        let run = executor.run(request, masker, Some(chunks_tx), run_cancel.clone());
        let forward = async {
            while let Some(chunk) = chunks_rx.recv().await {
                let kind = match chunk.stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                if frames_tx.send(frame(&json!({"type": kind, "data": chunk.text}))).await.is_err() {
                    run_cancel.cancel();
                }
            }
        };
        let (outcome, ()) = tokio::join!(run, forward);
        let last = match outcome {
            Ok(o) if o.masking_failed => {
                json!({"type": "error", "detail": "output withheld: masking failed"})
            }
            Ok(o) => {
                let mut fields = outcome_fields(&prepared, &o);
                fields.insert("type".into(), json!("exit"));
                Value::Object(fields)
            }
            Err(e) => {
                tracing::warn!("command failed to run: {e}");
                json!({"type": "error", "detail": "the command could not be run"})
            }
        };
        let _ = frames_tx.send(frame(&last)).await;
    });
    let body = Body::from_stream(FrameStream::new(frames_rx, cancel));
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
