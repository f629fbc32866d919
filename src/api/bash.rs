//! The OpenHands agent-server's bash routes, with secrets and masking added:
//! `start_bash_command`, `execute_bash_command`, `bash_events/search`, `bash_events/{id}`.
//!
//! A command gets the sandbox-wide secrets it references (and its conversation's, with our
//! optional `conversation_id`) by the same selection rules as `/commands`; one that cannot be
//! resolved is skipped, since the reference's client has no way to read a 424. Every event is
//! masked before it is stored, the echoed command text included, and masked again whenever it
//! is read, with the values held by then. Commands run in the background under the service's
//! shutdown token, bounded by the command slots; their output reaches events at least every
//! [`FLUSH_AFTER`], bounded per stream like `/commands` output (see `crate::bash::writer`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::env_fit::fit;
use super::extract::{JsonBody, PathParams};
use crate::bash::masked::WITHHELD;
use crate::bash::{
    BashCommand, BashEvent, BashOutput, EventWriter, MaskedPage, OutputBudget, SearchQuery, mask_event,
};
use crate::error::ApiError;
use crate::exec::{Chunk, ExecRequest, Stream, head_and_tail};
use crate::mask::Masker;
use crate::secrets::export::gather;
use crate::secrets::registry::{ConversationId, ScopeId};
use crate::secrets::select::Requested;
use crate::state::AppState;

/// The longest output waits before it reaches an event, when no 1 MiB chunk fills first.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

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
    state.executor.check_shell()?;
    let slot = state.command_slots.clone().try_acquire_owned().map_err(|_| ApiError::TooMany {
        message: "too many commands running".into(),
        retry_after: std::time::Duration::from_secs(1),
    })?;
    let gathered =
        gather(&state.registry, &state.resolver, &req.scope, &req.command, &Requested::Referenced).await;
    // As with missing ones, a secret too large to export is left out rather than fail the command.
    let optional: Vec<String> = gathered.exports.iter().map(|(n, _)| n.clone()).collect();
    let mut exec_req = ExecRequest {
        command: req.command,
        cwd: req.cwd.clone().map(Into::into),
        timeout: std::time::Duration::from_secs(req.timeout),
        env: Vec::new(),
        secrets: gathered.exports,
        scrub_values: state.held_keys(),
        scrub_names: state.exec_limits.scrub_names.clone(),
    };
    fit(&state.executor, &mut exec_req, &optional, &mut Vec::new())?;
    let masker = state.masks_for(&req.scope, &exec_req.secrets)?;
    let conversation_id = match &req.scope {
        ScopeId::Conversation(id) => Some(id.to_string()),
        ScopeId::Sandbox => None,
    };
    let shown = mask_text(&masker, &exec_req.command).unwrap_or_else(|| WITHHELD.to_owned());
    let event = BashCommand::new(shown, req.cwd.clone(), req.timeout, conversation_id);
    state.bash_events.begin(event.clone()).map_err(|_| ApiError::Unavailable)?;
    let (head, tail) = head_and_tail(state.executor.config().max_output_bytes);
    let writer = EventWriter::new(Arc::clone(&state.bash_events), event.id, OutputBudget { head, tail });
    let (done_tx, done_rx) = mpsc::channel(1);
    let state = state.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let answer = run_to_events(&state, writer, exec_req, masker).await;
        let _ = done_tx.send(answer).await;
    });
    Ok((event, done_rx))
}

fn mask_text(masker: &Masker, text: &str) -> Option<String> {
    masker.mask(text.as_bytes()).ok().map(|m| String::from_utf8_lossy(&m).into_owned())
}

/// Runs the command, storing its output as it comes; returns the final output as
/// `execute_bash_command` answers it (see [`EventWriter::finish`]).
async fn run_to_events(
    state: &AppState,
    mut writer: EventWriter,
    req: ExecRequest,
    masker: Arc<Masker>,
) -> BashOutput {
    if let Some(cwd) = &req.cwd {
        if !cwd.is_dir() {
            return writer.fail("working directory does not exist");
        }
    }
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = state.shutdown.child_token();
    let run = state.executor.run(req, masker, Some(tx), cancel);
    let collect = async {
        // When the oldest text no event holds yet must go out.
        let mut flush_at: Option<Instant> = None;
        loop {
            tokio::select! {
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { break };
                    let stream = match chunk.stream {
                        Stream::Stdout => crate::bash::Stream::Stdout,
                        Stream::Stderr => crate::bash::Stream::Stderr,
                    };
                    writer.push(stream, &chunk.text);
                    flush_at = match (writer.has_pending(), flush_at) {
                        (false, _) => None,
                        (true, None) => Some(Instant::now() + FLUSH_AFTER),
                        (true, due) => due,
                    };
                }
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    writer.flush();
                    flush_at = None;
                }
            }
        }
    };
    let (outcome, ()) = tokio::join!(run, collect);
    match outcome {
        Ok(o) if o.masking_failed => writer.fail("output withheld: masking failed"),
        Ok(o) => {
            let code = if o.timed_out || o.cancelled { -1 } else { o.exit_code };
            let note =
                o.timed_out.then(|| format!("Command timed out after {} seconds", o.duration.as_secs()));
            writer.finish(code, note.as_deref())
        }
        Err(e) => {
            tracing::warn!("bash command could not be run: {e}");
            writer.fail("the command could not be started")
        }
    }
}

/// `event` masked with the values held now; a text that cannot be masked is withheld.
fn mask_now(state: &AppState, event: &BashEvent) -> BashEvent {
    let (masked, withheld) = mask_event(event, &state.masks.masker());
    if withheld {
        tracing::error!("masking failed; bash event text withheld");
    }
    masked
}

/// `POST /api/bash/start_bash_command` → the `BashCommand` event.
pub async fn start_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<BashEvent>, ApiError> {
    let (event, _done) = start(&state, &body).await?;
    Ok(Json(mask_now(&state, &event.into())))
}

/// `POST /api/bash/execute_bash_command` → the final `BashOutput` once the command ends,
/// holding all the output its events keep.
pub async fn execute_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<BashEvent>, ApiError> {
    let (_event, mut done) = start(&state, &body).await?;
    let last = done.recv().await.ok_or(ApiError::Unavailable)?;
    Ok(Json(mask_now(&state, &last.into())))
}

/// `GET /api/bash/bash_events/search`.
pub async fn search(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
    let query = SearchQuery::from_pairs(&pairs).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let page = state.bash_events.search(&query).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let masker = state.masks.masker();
    let masked = MaskedPage::new(&page, &masker);
    let body = serde_json::to_vec(&masked).map_err(|_| ApiError::Unavailable)?;
    if masked.withheld() {
        tracing::error!("masking failed; bash event texts withheld");
    }
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/bash/bash_events/{event_id}`.
pub async fn get_event(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<BashEvent>, ApiError> {
    let id = params.raw("event_id");
    let event = state.bash_events.get(id).ok_or_else(|| ApiError::NotFound("bash event not found".into()))?;
    Ok(Json(mask_now(&state, &event)))
}
