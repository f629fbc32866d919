//! Command routes: `POST …/commands` (one JSON answer) and `POST …/commands/stream`
//! (NDJSON as output arrives), for a conversation or sandbox-wide.
//!
//! Thin adapters: the wire model ([`CommandBody`]) becomes a [`CommandSpec`] for the
//! pipeline (`crate::run`), which does the rest; these routes refuse an over-long `timeout`
//! and a bad `cwd` with 422, and a missing explicit secret with 424 unless `on_missing:
//! "skip"`. A client that goes away cancels the run, which kills the command's process group.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, PathParams};
use super::frames::FrameStream;
use super::schema::ErrorBody;
use crate::error::{ApiError, FieldError};
use crate::exec::{Chunk, ExecOutcome, Stream};
use crate::run::{CommandSpec, OnMissing, OverMax, Report};
use crate::secrets::select::Requested;
use crate::secrets::value::SecretName;
use crate::state::AppState;

/// Frames buffered toward a slow streaming client before the command is slowed down.
const FRAME_BUFFER: usize = 16;

/// The body of `POST …/commands` and `…/commands/stream`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CommandBody {
    /// Shell text, run as `shell -c command`: not blank, without NUL.
    #[schema(pattern = "^[^\\x00]*\\S[^\\x00]*$")]
    command: String,
    /// Working directory (an existing directory); default `--workdir`.
    #[serde(default)]
    #[schema(min_length = 1)]
    cwd: Option<String>,
    /// Seconds, 1..=`--max-timeout`; default 300.
    #[serde(default)]
    #[schema(minimum = 1)]
    timeout: Option<u64>,
    /// `null` (the secrets the command references), a list of names, or `"all"`.
    #[serde(default)]
    secrets: Option<SecretsField>,
    /// Further variables, set after the inherited ones and before the secrets.
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    /// What a missing explicit secret does: `fail` (424, the default) or `skip`.
    #[serde(default)]
    on_missing: Option<OnMissingField>,
}

/// `secrets`: a list of names, or every name in scope.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum SecretsField {
    All(AllSecrets),
    Names(Vec<String>),
}

/// The string `"all"`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AllSecrets {
    All,
}

/// `on_missing`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnMissingField {
    Fail,
    Skip,
}

impl CommandBody {
    /// The pipeline's spec; names are checked here, the bounds by the pipeline.
    fn into_spec(self) -> Result<CommandSpec, FieldError> {
        if self.command.trim().is_empty() {
            return Err(FieldError::new("command", "must not be empty"));
        }
        if self.command.contains('\0') {
            return Err(FieldError::new("command", "must not contain NUL"));
        }
        let cwd = match self.cwd {
            Some(c) if c.is_empty() || c.contains('\0') => {
                return Err(FieldError::new("cwd", "must be a non-empty path without NUL"));
            }
            other => other.map(Into::into),
        };
        let secrets = match self.secrets {
            None => Requested::Referenced,
            Some(SecretsField::All(AllSecrets::All)) => Requested::All,
            Some(SecretsField::Names(names)) => {
                for name in &names {
                    SecretName::parse(name).map_err(|e| FieldError::new("secrets", e.to_string()))?;
                }
                Requested::Names(names)
            }
        };
        let mut env = Vec::new();
        for (name, value) in self.env.unwrap_or_default() {
            SecretName::parse(&name).map_err(|e| FieldError::new("env", e.to_string()))?;
            if value.contains('\0') {
                return Err(FieldError::new("env", format!("{name} must not contain NUL")));
            }
            env.push((name, value));
        }
        let on_missing = match self.on_missing {
            None | Some(OnMissingField::Fail) => OnMissing::Fail,
            Some(OnMissingField::Skip) => OnMissing::Skip,
        };
        Ok(CommandSpec {
            command: self.command,
            cwd,
            timeout: self.timeout,
            over_max: OverMax::Refuse,
            secrets,
            env,
            on_missing,
        })
    }
}

/// Bytes dropped from the middle of each stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Truncated {
    stdout: u64,
    stderr: u64,
}

/// The fields common to the JSON answer and the stream's `exit` frame.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ended {
    exit_code: i32,
    signal: Option<i32>,
    timed_out: bool,
    duration_ms: u64,
    exported: Vec<String>,
    skipped: Vec<String>,
    stale: Vec<String>,
    truncated: Truncated,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    masking_failed: bool,
}

impl Ended {
    fn new(report: Report, o: &ExecOutcome) -> Self {
        Self {
            exit_code: o.exit_code,
            signal: o.signal,
            timed_out: o.timed_out,
            duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
            exported: report.exported,
            skipped: report.skipped,
            stale: report.stale,
            truncated: Truncated { stdout: o.truncated_stdout, stderr: o.truncated_stderr },
            masking_failed: o.masking_failed,
        }
    }
}

/// The answer of `POST …/commands`: masked output and what the command got.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommandResponse {
    #[serde(flatten)]
    ended: Ended,
    stdout: String,
    stderr: String,
}

/// One line of `POST …/commands/stream`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Frame {
    Start { command_id: String, exported: Vec<String>, skipped: Vec<String> },
    Stdout { data: String },
    Stderr { data: String },
    Exit(Ended),
    Error { detail: &'static str },
}

impl Frame {
    fn line(&self) -> Bytes {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| br#"{"type":"error"}"#.to_vec());
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// `POST …/commands`.
#[utoipa::path(post, path = "/commands", tag = "commands", request_body = CommandBody, responses(
    (status = 200, description = "The command ended; its output is masked", body = CommandResponse),
    (status = 424, description = "An explicitly named secret could not be resolved", body = ErrorBody),
    (status = 429, description = "Too many running commands", body = ErrorBody),
))]
pub(crate) async fn run(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<CommandBody>,
) -> Result<Json<CommandResponse>, ApiError> {
    let scope = params.scope()?;
    let prepared = state.runner.prepare(&scope, body.into_spec()?).await?;
    // A child of the shutdown token: draining kills running commands.
    let cancel = state.shutdown.child_token();
    // Dropping this handler (client gone) cancels the run and kills the process group.
    let _guard = cancel.clone().drop_guard();
    let mut done = state.runner.run(prepared, None, cancel).await?;
    let (stdout, stderr) =
        (std::mem::take(&mut done.outcome.stdout), std::mem::take(&mut done.outcome.stderr));
    Ok(Json(CommandResponse { ended: Ended::new(done.report, &done.outcome), stdout, stderr }))
}

/// `POST …/commands/stream`: NDJSON `start`, `stdout`/`stderr`, then `exit` or `error`.
#[utoipa::path(post, path = "/commands/stream", tag = "commands", request_body = CommandBody, responses(
    (status = 200, description = "One JSON frame per line: `start`, `stdout`/`stderr`, then `exit` or `error`",
        content_type = "application/x-ndjson", body = Frame),
    (status = 424, description = "An explicitly named secret could not be resolved", body = ErrorBody),
    (status = 429, description = "Too many running commands", body = ErrorBody),
))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    params: PathParams,
    JsonBody(body): JsonBody<CommandBody>,
) -> Result<Response, ApiError> {
    let scope = params.scope()?;
    let prepared = state.runner.prepare(&scope, body.into_spec()?).await?;
    let (frames_tx, frames_rx) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    // A child of the shutdown token: draining kills running commands.
    let cancel = state.shutdown.child_token();
    let report = prepared.report();
    let start = Frame::Start {
        command_id: uuid::Uuid::new_v4().simple().to_string(),
        exported: report.exported.clone(),
        skipped: report.skipped.clone(),
    };
    // The channel is empty and has room: this cannot block.
    let _ = frames_tx.try_send(start.line());
    let runner = state.runner.clone();
    let run_cancel = cancel.clone();
    tokio::spawn(async move {
        let (chunks_tx, mut chunks_rx) = mpsc::channel::<Chunk>(FRAME_BUFFER);
        let run = runner.run(prepared, Some(chunks_tx), run_cancel.clone());
        let forward = async {
            while let Some(chunk) = chunks_rx.recv().await {
                let frame = match chunk.stream {
                    Stream::Stdout => Frame::Stdout { data: chunk.text },
                    Stream::Stderr => Frame::Stderr { data: chunk.text },
                };
                if frames_tx.send(frame.line()).await.is_err() {
                    run_cancel.cancel();
                }
            }
        };
        let (finished, ()) = tokio::join!(run, forward);
        let last = match finished {
            Ok(f) if f.outcome.masking_failed => Frame::Error { detail: "output withheld: masking failed" },
            Ok(f) => Frame::Exit(Ended::new(f.report, &f.outcome)),
            Err(e) => {
                // The one log line for this failure; the frame stays generic.
                tracing::warn!("command could not be run: {e}");
                Frame::Error { detail: "the command could not be run" }
            }
        };
        let _ = frames_tx.send(last.line()).await;
    });
    let body = Body::from_stream(FrameStream::new(frames_rx, cancel));
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The command routes of one scope, relative to it.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run)).routes(routes!(stream))
}
