//! The command pipeline: everything between a route's wire format and the executor, once.
//!
//! [`Runner::prepare`] applies the request bounds (timeout, `cwd`), takes a command slot,
//! gathers the secrets the command uses (concurrent resolution, aliases, the 424 rule), makes
//! them fit what `execve` accepts, and adds their values to the global mask set; in egress
//! mode (`egress`) it then swaps bound values for their placeholders and issues the
//! command's proxy credential, which lives until the command ends;
//! [`Runner::run`] then drives the executor. `/commands`, `/commands/stream` and
//! `/api/bash/*` are thin adapters around these two steps, so the two route families cannot
//! drift apart; where their wire behaviour differs on purpose (the bash routes clamp an
//! over-long timeout and never answer 424), the difference is a field of [`CommandSpec`].
//!
//! Not here: HTTP (statuses, bodies, frames) and the executor's process handling.
//!
//! Invariant: a command runs only with values that are in the mask set, and only while it
//! holds a command slot.

mod egress;
mod error;
mod fit;
mod measure;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc::Sender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::auth::ApiKeys;
use crate::egress::grant::Credential;
use crate::exec::{Chunk, ExecConfig, ExecOutcome, ExecRequest, Executor};
use crate::mask::{MaskSet, Masker};
use crate::metrics::CommandMetrics;
use crate::secrets::export::{Gathered, MissingReason, MissingSecret, gather};
use crate::secrets::registry::{Registry, ScopeId};
use crate::secrets::resolver::Resolver;
use crate::secrets::select::Requested;
use crate::secrets::session_key::SessionKey;
use crate::secrets::value::SecretValue;
use egress::is_egress_var;

pub(crate) use egress::Egress;
pub(crate) use error::RunError;

/// A command's timeout when the request names none (*(ref)*).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What to do with a `timeout` over the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OverMax {
    /// Refuse the request (our routes: 422).
    Refuse,
    /// Cut it to the bound (the reference's bash routes).
    Clamp,
}

/// What to do with an explicit secret that cannot be exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnMissing {
    /// Refuse the command (424).
    Fail,
    /// Run without it, listing it in `skipped`.
    Skip,
}

/// One command as a route received it, already parsed from its wire format.
#[derive(Debug)]
pub(crate) struct CommandSpec {
    /// Shell text, run as `shell -c command`.
    pub command: String,
    /// Working directory; `None` = the configured default.
    pub cwd: Option<PathBuf>,
    /// Seconds, or `None` for [`DEFAULT_TIMEOUT`].
    pub timeout: Option<u64>,
    pub over_max: OverMax,
    pub secrets: Requested,
    /// Request variables (names already checked like secret names, values without NUL).
    pub env: Vec<(String, String)>,
    pub on_missing: OnMissing,
}

/// Which secrets a command got, sorted by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    pub exported: Vec<String>,
    pub skipped: Vec<String>,
    pub stale: Vec<String>,
}

/// A command ready to run: its secrets gathered and masked, its slot taken.
pub(crate) struct Prepared {
    request: ExecRequest,
    masker: Arc<Masker>,
    report: Report,
    /// The command's egress credential, if it holds placeholders: revoked when the command
    /// ends (when [`Runner::run`] returns) or when it never runs.
    credential: Option<Credential>,
    _slot: OwnedSemaphorePermit,
}

impl Prepared {
    /// The secrets the command gets.
    pub(crate) fn report(&self) -> &Report {
        &self.report
    }

    /// The masker for everything the command prints (every value held so far).
    pub(crate) fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }

    /// The command text (to echo it, masked, in a bash event).
    pub(crate) fn command(&self) -> &str {
        &self.request.command
    }

    /// The timeout the command runs with.
    pub(crate) fn timeout(&self) -> Duration {
        self.request.timeout
    }
}

/// A command that ran.
pub(crate) struct Finished {
    pub report: Report,
    pub outcome: ExecOutcome,
}

/// The pipeline. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<Registry>,
    resolver: Resolver,
    executor: Executor,
    masks: Arc<MaskSet>,
    /// Commands running beyond this are refused.
    slots: Arc<Semaphore>,
    /// Inherited variable names never passed on, beyond the executor's built-in ones.
    scrub_names: Vec<String>,
    keys: Arc<ApiKeys>,
    session_key: Arc<SessionKey>,
    egress: Arc<Egress>,
    metrics: CommandMetrics,
}

/// The components the pipeline drives.
pub(crate) struct Parts {
    pub registry: Arc<Registry>,
    pub resolver: Resolver,
    pub executor: Executor,
    pub masks: Arc<MaskSet>,
    pub keys: Arc<ApiKeys>,
    pub session_key: Arc<SessionKey>,
    pub egress: Arc<Egress>,
    /// Where commands are counted.
    pub metrics: CommandMetrics,
}

impl Runner {
    /// A pipeline over `parts`, with the bounds of the executor's configuration; commands
    /// never inherit the `scrub_names` variables.
    pub(crate) fn new(parts: Parts, scrub_names: Vec<String>) -> Self {
        let Parts { registry, resolver, executor, masks, keys, session_key, egress, metrics } = parts;
        let slots = Arc::new(Semaphore::new(executor.config().max_concurrent));
        let inner = Inner {
            registry,
            resolver,
            executor,
            masks,
            slots,
            scrub_names,
            keys,
            session_key,
            egress,
            metrics,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Egress mode's part of the pipeline (bindings, credentials).
    pub(crate) fn egress(&self) -> &Arc<Egress> {
        &self.inner.egress
    }

    /// The configuration commands run with (bounds included).
    pub(crate) fn config(&self) -> &ExecConfig {
        self.inner.executor.config()
    }

    /// The executor's per-stream output cap (`--max-output-bytes`).
    pub(crate) fn max_output_bytes(&self) -> usize {
        self.config().max_output_bytes
    }

    /// Checks `spec`, takes a slot, gathers and masks the secrets it uses.
    pub(crate) async fn prepare(&self, scope: &ScopeId, spec: CommandSpec) -> Result<Prepared, RunError> {
        let inner = &self.inner;
        // Refused before anything is resolved or a slot is taken.
        inner.executor.check_shell().map_err(|_| RunError::NoShell)?;
        let timeout = self.timeout(spec.timeout, spec.over_max)?;
        if let Some(cwd) = &spec.cwd {
            if !cwd.is_dir() {
                return Err(RunError::Cwd);
            }
        }
        let slot = inner.slots.clone().try_acquire_owned().map_err(|_| RunError::Busy)?;
        let gathered = gather(&inner.registry, &inner.resolver, scope, &spec.command, &spec.secrets).await;
        let Gathered { mut exports, mut stale, mut skipped, mut missing, implicit, egress: own } = gathered;
        // Egress mode: which exports are bound, and which cannot be exported as they are.
        let (bound, refused) = inner.egress.classify(&exports, &own);
        for (name, reason) in refused {
            exports.retain(|(n, _)| *n != name);
            if implicit.contains(&name) {
                skipped.push(name);
            } else {
                missing.push(MissingSecret { name, reason });
            }
        }
        skipped.sort();
        missing.sort_by(|a, b| a.name.cmp(&b.name));
        if !missing.is_empty() {
            if spec.on_missing == OnMissing::Fail {
                return Err(RunError::Missing(missing));
            }
            skipped.extend(missing.into_iter().map(|m| m.name));
            skipped.sort();
        }
        // With "skip", any secret may be left out rather than fail the command; else only
        // implicit ones.
        let optional = match spec.on_missing {
            OnMissing::Fail => implicit,
            OnMissing::Skip => exports.iter().map(|(n, _)| n.clone()).collect(),
        };
        let mut env = spec.env;
        inner.egress.scrub_env(&mut env);
        let issued = (!bound.is_empty()).then(|| {
            let inherited = |name: &str| {
                let asked = env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| std::ffi::OsStr::new(v));
                asked.or_else(|| inner.executor.inherited(name))
            };
            inner.egress.issue(|name| mask_key(scope, name), &exports, &bound, inherited)
        });
        let (credential, placeholders) = match issued {
            Some(issued) => {
                exports.extend(issued.vars);
                (Some(issued.credential), issued.placeholders)
            }
            None => (None, Default::default()),
        };
        let mut request = ExecRequest {
            command: spec.command,
            cwd: spec.cwd,
            timeout,
            env,
            secrets: exports,
            scrub_values: self.held_keys(),
            scrub_names: inner.scrub_names.clone(),
        };
        fit::fit(&inner.executor, &mut request, &optional, &mut skipped)?;
        stale.retain(|n| !skipped.contains(n));
        let held = |n: &str| credential.is_none() || !is_egress_var(n);
        let exported = request.secrets.iter().map(|(n, _)| n.clone()).filter(|n| held(n)).collect();
        // Real values are masked (the egress variables are not values, and placeholders are
        // not secret); then the bound ones are swapped for their placeholders.
        let values: Vec<(&str, &SecretValue)> =
            request.secrets.iter().filter(|(n, _)| held(n)).map(|(n, v)| (n.as_str(), v)).collect();
        let masker = self.masks_for(scope, &values).await?;
        drop(values);
        for (name, value) in &mut request.secrets {
            if let Some(placeholder) = placeholders.get(name) {
                *value = placeholder.clone();
            }
        }
        let report = Report { exported, skipped, stale };
        Ok(Prepared { request, masker, report, credential, _slot: slot })
    }

    /// Runs a prepared command to its end. With a `sink`, output goes there as it arrives;
    /// `cancel` (client gone, shutdown) ends it like a timeout. The slot is freed when this
    /// returns.
    pub(crate) async fn run(
        &self,
        prepared: Prepared,
        sink: Option<Sender<Chunk>>,
        cancel: CancellationToken,
    ) -> Result<Finished, RunError> {
        let Prepared { request, masker, report, credential, _slot } = prepared;
        let measured = measure::Measured::start(&self.inner.metrics);
        let ran = self.inner.executor.run(request, masker, sink, cancel).await;
        measured.end(&ran);
        // The command has ended: its placeholders can no longer be spent.
        drop(credential);
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(e) => {
                return Err(match fit::spawn_too_large(e, &report.exported) {
                    Ok(too_large) => RunError::TooLarge(too_large),
                    Err(e) => RunError::Exec(e),
                });
            }
        };
        Ok(Finished { report, outcome })
    }

    /// Adds values held in `scope` to the global mask set, with one compilation off the async
    /// workers; returns once they are masked. Values shorter than `--mask-min-length` cannot
    /// be masked and are skipped (listings report them `masked: false`); any other failure
    /// fails closed.
    pub(crate) async fn remember<'a>(
        &self,
        scope: &ScopeId,
        values: impl IntoIterator<Item = (&'a str, &'a SecretValue)>,
    ) -> Result<(), RunError> {
        let masks = &self.inner.masks;
        let items: Vec<(String, Zeroizing<Vec<u8>>)> = values
            .into_iter()
            .filter(|(_, value)| masks.is_maskable(value.expose()))
            .map(|(name, value)| (mask_key(scope, name), Zeroizing::new(value.expose().to_vec())))
            .collect();
        masks.extend_async(items).await.map_err(RunError::Mask)
    }

    /// Every key the sidecar holds or has held (API keys and session keys), to scrub from
    /// children's environments.
    fn held_keys(&self) -> Vec<SecretString> {
        let mut keys = self.inner.keys.keys().to_vec();
        keys.extend(self.inner.session_key.held());
        keys
    }

    fn timeout(&self, asked: Option<u64>, over_max: OverMax) -> Result<Duration, RunError> {
        let max = self.config().max_timeout.as_secs();
        let secs = match asked {
            None => DEFAULT_TIMEOUT.as_secs().min(max),
            Some(t) if (1..=max).contains(&t) => t,
            Some(t) if t > max && over_max == OverMax::Clamp => max,
            Some(_) => return Err(RunError::Timeout { max }),
        };
        Ok(Duration::from_secs(secs))
    }

    /// Adds `values` to the mask set and returns a masker that hides them (and everything
    /// held before). With `--refuse-unmaskable`, a value too short to mask refuses the command.
    async fn masks_for(
        &self,
        scope: &ScopeId,
        values: &[(&str, &SecretValue)],
    ) -> Result<Arc<Masker>, RunError> {
        let masks = &self.inner.masks;
        if self.config().refuse_unmaskable {
            if let Some((name, _)) = values.iter().find(|(_, v)| !masks.is_maskable(v.expose())) {
                let reason = MissingReason::Unmaskable((*name).to_owned());
                return Err(RunError::Missing(vec![MissingSecret { name: (*name).to_owned(), reason }]));
            }
        }
        self.remember(scope, values.iter().copied()).await?;
        Ok(masks.masker())
    }
}

/// The mask-set key of a secret: its scope and name, so rotations of one secret share a
/// history and same-named secrets of different conversations do not.
pub(crate) fn mask_key(scope: &ScopeId, name: &str) -> String {
    match scope {
        ScopeId::Sandbox => format!("sandbox/{name}"),
        ScopeId::Conversation(id) => format!("{id}/{name}"),
    }
}
