//! The OpenHands agent-server's bash routes, with secrets and masking added:
//! `start_bash_command`, `execute_bash_command`, `bash_events/search`, `bash_events/{id}`.
//!
//! A command gets the sandbox-wide secrets it references (and its conversation's, with our
//! optional `conversation_id`) by the same selection rules as `/commands`; one that cannot be
//! resolved is skipped, since the reference's client has no way to read a 424. Every event is
//! masked before it is stored, the echoed command text included. Commands run in the
//! background under the service's shutdown token, bounded by the command slots.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;
use tokio::sync::mpsc;

use super::extract::{JsonBody, PathParams};
use crate::bash::{BashCommand, BashEvent, BashOutput, OutputSplitter, SearchQuery};
use crate::error::ApiError;
use crate::exec::{Chunk, ExecRequest, Stream};
use crate::mask::Masker;
use crate::secrets::export::gather;
use crate::secrets::registry::{ConversationId, ScopeId};
use crate::secrets::select::Requested;
use crate::state::AppState;

/// Shown instead of a command text that could not be masked.
const WITHHELD: &str = "[withheld: masking failed]";

/// The reference's `ExecuteBashRequest` plus our `conversation_id`.
struct BashRequest {
    command: String,
    cwd: Option<String>,
    timeout: u64,
    scope: ScopeId,
}

fn parse(body: &Value, state: &AppState) -> Result<BashRequest, ApiError> {
    let bad = |m: &str| ApiError::Unprocessable(m.to_owned());
    let obj = body.as_object().ok_or_else(|| bad("body must be a JSON object"))?;
    let command = match obj.get("command") {
        Some(Value::String(c)) if !c.contains('\0') => c.clone(),
        Some(Value::String(_)) => return Err(bad("command: must not contain NUL")),
        _ => return Err(bad("command: field required (a string)")),
    };
    let cwd = match obj.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(bad("cwd: must be a string or null")),
    };
    let max = state.exec_limits.max_timeout.as_secs();
    let timeout = match obj.get("timeout") {
        None | Some(Value::Null) => 300.min(max),
        // The SDK sends its own timeout; longer ones are cut to the service's maximum.
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if t >= 1 => (t as u64).min(max),
            _ => return Err(bad("timeout: must be a whole number of seconds, at least 1")),
        },
        Some(_) => return Err(bad("timeout: must be a whole number of seconds")),
    };
    let scope = match obj.get("conversation_id") {
        None | Some(Value::Null) => ScopeId::Sandbox,
        Some(Value::String(id)) => ScopeId::Conversation(
            ConversationId::parse(id).ok_or_else(|| bad("conversation_id: must be a UUID"))?,
        ),
        Some(_) => return Err(bad("conversation_id: must be a string")),
    };
    Ok(BashRequest { command, cwd, timeout, scope })
}

/// Starts a command in the background; returns its masked `BashCommand` event and a
/// receiver that yields once the final output is stored.
async fn start(
    state: &AppState,
    body: &Value,
) -> Result<(BashCommand, mpsc::Receiver<BashOutput>), ApiError> {
    let req = parse(body, state)?;
    let slot = state.command_slots.clone().try_acquire_owned().map_err(|_| ApiError::TooMany {
        message: "too many commands running".into(),
        retry_after: std::time::Duration::from_secs(1),
    })?;
    let gathered =
        gather(&state.registry, &state.resolver, &req.scope, &req.command, &Requested::Referenced).await;
    let masker = state.masks_for(&req.scope, &gathered.exports).await?;
    let conversation_id = match &req.scope {
        ScopeId::Conversation(id) => Some(id.to_string()),
        ScopeId::Sandbox => None,
    };
    let shown = mask_text(&masker, &req.command).unwrap_or_else(|| WITHHELD.to_owned());
    let event = BashCommand::new(shown, req.cwd.clone(), req.timeout, conversation_id);
    state.bash_events.begin(event.clone()).map_err(|_| ApiError::Unavailable)?;
    let (done_tx, done_rx) = mpsc::channel(1);
    let exec_req = ExecRequest {
        command: req.command,
        cwd: req.cwd.map(Into::into),
        timeout: std::time::Duration::from_secs(req.timeout),
        env: Vec::new(),
        secrets: gathered.exports,
        scrub_values: state.held_keys(),
        scrub_names: state.exec_limits.scrub_names.clone(),
    };
    let (state, command_id) = (state.clone(), event.id);
    tokio::spawn(async move {
        let _slot = slot;
        let last = run_to_events(&state, command_id, exec_req, masker).await;
        let _ = state.bash_events.finish(last.clone());
        let _ = done_tx.send(last).await;
    });
    Ok((event, done_rx))
}

fn mask_text(masker: &Masker, text: &str) -> Option<String> {
    masker.mask(text.as_bytes()).ok().map(|m| String::from_utf8_lossy(&m).into_owned())
}

/// Runs the command, storing 1 MiB output events as they fill; returns the final event.
async fn run_to_events(
    state: &AppState,
    command_id: uuid::Uuid,
    req: ExecRequest,
    masker: std::sync::Arc<Masker>,
) -> BashOutput {
    if let Some(cwd) = &req.cwd {
        if !cwd.is_dir() {
            return BashOutput::error(command_id, "working directory does not exist");
        }
    }
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = state.shutdown.child_token();
    let run = state.executor.run(req, masker, Some(tx), cancel);
    let mut splitter = OutputSplitter::new(command_id);
    let collect = async {
        while let Some(chunk) = rx.recv().await {
            let full = match chunk.stream {
                Stream::Stdout => splitter.push_stdout(&chunk.text),
                Stream::Stderr => splitter.push_stderr(&chunk.text),
            };
            for output in full {
                let _ = state.bash_events.push_output(output);
            }
        }
    };
    let (outcome, ()) = tokio::join!(run, collect);
    match outcome {
        Ok(o) if o.masking_failed => BashOutput::error(command_id, "output withheld: masking failed"),
        Ok(o) => {
            let mut last = splitter.finish(if o.timed_out || o.cancelled { -1 } else { o.exit_code });
            if o.timed_out {
                let note = format!("Command timed out after {} seconds", o.duration.as_secs());
                last.stderr = Some(match last.stderr.take() {
                    Some(s) => format!("{s}\n{note}"),
                    None => note,
                });
            }
            last
        }
        Err(e) => {
            tracing::warn!("bash command could not be run: {e}");
            BashOutput::error(command_id, "the command could not be started")
        }
    }
}

/// `POST /api/bash/start_bash_command` → the `BashCommand` event.
pub async fn start_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<BashCommand>, ApiError> {
    let (event, _done) = start(&state, &body).await?;
    Ok(Json(event))
}

/// `POST /api/bash/execute_bash_command` → the final `BashOutput` once the command ends.
pub async fn execute_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<BashOutput>, ApiError> {
    let (_event, mut done) = start(&state, &body).await?;
    done.recv().await.map(Json).ok_or(ApiError::Unavailable)
}

/// `GET /api/bash/bash_events/search`.
pub async fn search(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
    let query = SearchQuery::from_pairs(&pairs).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let page = state.bash_events.search(&query).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    serde_json::to_value(page).map(Json).map_err(|_| ApiError::Unavailable)
}

/// `GET /api/bash/bash_events/{event_id}`.
pub async fn get_event(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<BashEvent>, ApiError> {
    let id = params.raw("event_id");
    state
        .bash_events
        .get(id)
        .map(|e| Json((*e).clone()))
        .ok_or_else(|| ApiError::NotFound("bash event not found".into()))
}
