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
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, PathParams};
use super::schema::{BashEventPage, BashEventSchema, ErrorBody, SearchParams};
use crate::bash::masked::WITHHELD;
use crate::bash::{
    BashCommand, BashEvent, BashOutput, EventWriter, MaskedPage, OutputBudget, SearchQuery, mask_event,
};
use crate::error::{ApiError, FieldError, Internal, NotFound};
use crate::exec::{Chunk, Stream, head_and_tail};
use crate::mask::Masker;
use crate::run::{CommandSpec, OnMissing, OverMax, Prepared, RunError};
use crate::secrets::registry::{ConversationId, ScopeId};
use crate::secrets::select::Requested;
use crate::state::AppState;

/// The longest output waits before it reaches an event, when no 1 MiB chunk fills first.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// The reference's `ExecuteBashRequest`, plus our optional `conversation_id`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct BashBody {
    /// Shell text, without NUL.
    #[schema(pattern = "^[^\\x00]*$")]
    command: String,
    /// Working directory; a missing one is reported as the command's error output *(ref)*.
    #[serde(default)]
    cwd: Option<String>,
    /// Seconds, at least 1 (default 300); over `--max-timeout` it is cut to it *(ref)*.
    #[serde(default)]
    #[schema(minimum = 1)]
    timeout: Option<i64>,
    /// Ours: also export this conversation's secrets (a UUID, dashed or 32 hex digits).
    #[serde(default)]
    #[schema(
        pattern = "^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"
    )]
    conversation_id: Option<String>,
}

impl BashBody {
    /// The scope and the pipeline's spec: the reference's rules (clamp, never a 424).
    fn into_spec(self) -> Result<(ScopeId, Option<String>, CommandSpec), FieldError> {
        if self.command.contains('\0') {
            return Err(FieldError::new("command", "must not contain NUL"));
        }
        let timeout = match self.timeout {
            None => None,
            Some(t) if t >= 1 => Some(t.unsigned_abs()),
            Some(_) => {
                return Err(FieldError::new("timeout", "must be a whole number of seconds, at least 1"));
            }
        };
        let scope = match self.conversation_id {
            None => ScopeId::Sandbox,
            Some(id) => ScopeId::Conversation(
                ConversationId::parse(&id)
                    .ok_or_else(|| FieldError::new("conversation_id", "must be a UUID"))?,
            ),
        };
        if self.cwd.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(FieldError::new("cwd", "must not contain NUL"));
        }
        let spec = CommandSpec {
            command: self.command,
            cwd: self.cwd.clone().map(Into::into),
            timeout,
            over_max: OverMax::Clamp,
            secrets: Requested::Referenced,
            env: Vec::new(),
            // The reference's client cannot read a 424: what cannot be exported is skipped.
            on_missing: OnMissing::Skip,
        };
        Ok((scope, self.cwd, spec))
    }
}

/// Starts a command in the background; returns its masked `BashCommand` event and a
/// receiver that yields once the final output is stored.
async fn start(
    state: &AppState,
    body: BashBody,
) -> Result<(BashCommand, mpsc::Receiver<BashOutput>), ApiError> {
    let (scope, cwd, spec) = body.into_spec()?;
    let conversation_id = match &scope {
        ScopeId::Conversation(id) => Some(id.to_string()),
        ScopeId::Sandbox => None,
    };
    let asked_timeout = spec.timeout;
    let command = spec.command.clone();
    let (done_tx, done_rx) = mpsc::channel(1);
    let prepared = match state.runner.prepare(&scope, spec).await {
        Ok(p) => p,
        // The reference reports a bad working directory as the command's error output.
        Err(RunError::Cwd) => {
            let masker = state.masks.masker();
            let shown = mask_text(&masker, &command).unwrap_or_else(|| WITHHELD.to_owned());
            let max = state.runner.config().max_timeout.as_secs();
            let timeout = asked_timeout.unwrap_or(crate::run::DEFAULT_TIMEOUT.as_secs()).min(max);
            let event = BashCommand::new(shown, cwd, timeout, conversation_id);
            let writer = begin(state, &event)?;
            let _ = done_tx.try_send(writer.fail("working directory does not exist"));
            return Ok((event, done_rx));
        }
        Err(e) => return Err(e.into()),
    };
    let shown = mask_text(prepared.masker(), prepared.command()).unwrap_or_else(|| WITHHELD.to_owned());
    let event = BashCommand::new(shown, cwd, prepared.timeout().as_secs(), conversation_id);
    let writer = begin(state, &event)?;
    let state = state.clone();
    tokio::spawn(async move {
        let answer = run_to_events(&state, writer, prepared).await;
        let _ = done_tx.send(answer).await;
    });
    Ok((event, done_rx))
}

/// Stores `event` and returns the writer for its outputs.
fn begin(state: &AppState, event: &BashCommand) -> Result<EventWriter, ApiError> {
    state.bash_events.begin(event.clone()).map_err(|_| Internal::EventStore)?;
    let (head, tail) = head_and_tail(state.runner.max_output_bytes());
    Ok(EventWriter::new(Arc::clone(&state.bash_events), event.id, OutputBudget { head, tail }))
}

fn mask_text(masker: &Masker, text: &str) -> Option<String> {
    masker.mask(text.as_bytes()).ok().map(|m| String::from_utf8_lossy(&m).into_owned())
}

/// Runs the command, storing its output as it comes; returns the final output as
/// `execute_bash_command` answers it (see [`EventWriter::finish`]).
async fn run_to_events(state: &AppState, mut writer: EventWriter, prepared: Prepared) -> BashOutput {
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = state.shutdown.child_token();
    let run = state.runner.run(prepared, Some(tx), cancel);
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
    let (finished, ()) = tokio::join!(run, collect);
    match finished.map(|f| f.outcome) {
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
#[utoipa::path(post, path = "/api/bash/start_bash_command", tag = "bash", request_body = BashBody, responses(
    (status = 200, description = "The `BashCommand` event; the command runs in the background", body = BashEventSchema),
    (status = 429, description = "Too many running commands", body = ErrorBody),
))]
pub(crate) async fn start_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BashBody>,
) -> Result<Json<BashEvent>, ApiError> {
    let (event, _done) = start(&state, body).await?;
    Ok(Json(mask_now(&state, &event.into())))
}

/// `POST /api/bash/execute_bash_command` → the final `BashOutput` once the command ends,
/// holding all the output its events keep.
#[utoipa::path(post, path = "/api/bash/execute_bash_command", tag = "bash", request_body = BashBody, responses(
    (status = 200, description = "The final `BashOutput`, once the command ends", body = BashEventSchema),
    (status = 429, description = "Too many running commands", body = ErrorBody),
))]
pub(crate) async fn execute_bash_command(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BashBody>,
) -> Result<Json<BashEvent>, ApiError> {
    let (_event, mut done) = start(&state, body).await?;
    let last = done.recv().await.ok_or(Internal::Task)?;
    Ok(Json(mask_now(&state, &last.into())))
}

/// `GET /api/bash/bash_events/search`.
#[utoipa::path(get, path = "/api/bash/bash_events/search", tag = "bash", params(SearchParams), responses(
    (status = 200, description = "A page of events, oldest first unless `sort_order=TIMESTAMP_DESC`", body = BashEventPage),
    (status = 422, description = "A search parameter is invalid", body = ErrorBody),
))]
pub(crate) async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
    let query = SearchQuery::from_pairs(&pairs)?;
    let page = state.bash_events.search(&query)?;
    let masker = state.masks.masker();
    let masked = MaskedPage::new(&page, &masker);
    let body = serde_json::to_vec(&masked).map_err(Internal::Encode)?;
    if masked.withheld() {
        tracing::error!("masking failed; bash event texts withheld");
    }
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/bash/bash_events/{event_id}`.
#[utoipa::path(get, path = "/api/bash/bash_events/{event_id}", tag = "bash",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, body = BashEventSchema),
        (status = 404, description = "No such event", body = ErrorBody),
    ),
)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<BashEvent>, ApiError> {
    let id = params.raw("event_id");
    let event = state.bash_events.get(id).ok_or(NotFound::BashEvent)?;
    Ok(Json(mask_now(&state, &event)))
}

/// The reference-compatible bash routes (sandbox-wide; `conversation_id` in the body).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_bash_command))
        .routes(routes!(execute_bash_command))
        .routes(routes!(search))
        .routes(routes!(get_event))
}
