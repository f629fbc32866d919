//! Durable descriptors: `--state-file PATH` keeps every API-registered descriptor across
//! restarts, sealed with a key that is not the session key.
//!
//! The parts: [`key`] (the [`StateKey`] from `OH_SECRET_KEY` or `--state-key-file`, and the
//! subkeys derived from it), `seal` (XChaCha20-Poly1305 with the header as associated data),
//! `snapshot` (the API layers as plaintext JSON in wire form, and back), `file` (atomic,
//! fsynced replacement; no symlinks; mode 0600) and `writer` ([`Durable`]: an update is on
//! disk before it is acknowledged, with group commit).
//!
//! Loading ([`open`]) happens while the state is built, before anything is served. A file
//! that cannot be opened with the current key, or is damaged, stops the start with an error
//! naming the path and the cause; with `--state-reset-on-error` it is moved aside
//! (`PATH.bad-<unix seconds>`), logged at warn, and the sidecar starts empty. A missing file
//! is an empty state, written at once so that a path that cannot be written fails the start
//! rather than the first update. Nothing here ever logs or returns a value.

mod file;
pub mod key;
mod seal;
mod snapshot;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroizing;

pub use file::FileError;
pub use key::{KeyError, StateKey};
pub use seal::OpenError;
pub use snapshot::DecodeError;
pub(crate) use writer::Durable;
pub use writer::{PersistError, UpdateError};

use crate::mask::{MaskError, MaskSet};
use crate::secrets::registry::{Registry, ScopeId};
use crate::secrets::source::{ParseContext, SecretSource, StaticSecret};

/// Where the state is kept, from `--state-file` and `--state-reset-on-error`.
#[derive(Clone, Debug)]
pub struct StateFileConfig {
    pub path: PathBuf,
    /// Move an unusable file aside and start empty instead of refusing to start.
    pub reset_on_error: bool,
}

/// Why the state file could not be loaded at start. Names the path and the cause, never a
/// value.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path cannot be used: a symlink, not a regular file, or an I/O error.
    #[error("--state-file: {0}")]
    File(#[from] FileError),
    /// Sealed with another key, damaged or truncated.
    #[error(
        "--state-file {}: {source}; restore the key or the file, or start with --state-reset-on-error to move it aside",
        path.display()
    )]
    Open { path: PathBuf, source: OpenError },
    /// Opened, but the content is not a state this build can read.
    #[error(
        "--state-file {}: {source}; start with --state-reset-on-error to move the file aside",
        path.display()
    )]
    Decode { path: PathBuf, source: DecodeError },
    /// The empty state could not be encoded (cannot happen with a sound build).
    #[error("--state-file {}: cannot encode the empty state: {source}", path.display())]
    Encode { path: PathBuf, source: serde_json::Error },
    /// No thread for the writer.
    #[error("--state-file {}: cannot start the writer thread: {source}", path.display())]
    Writer { path: PathBuf, source: std::io::Error },
}

/// Loads the state file (if configured) into `registry` and returns the component every
/// registry change goes through.
pub(crate) fn open(
    registry: Arc<Registry>,
    config: Option<&StateFileConfig>,
    key: Option<&StateKey>,
    ctx: &ParseContext,
) -> Result<Durable, LoadError> {
    let (Some(config), Some(key)) = (config, key) else { return Ok(Durable::in_memory(registry)) };
    let path = &config.path;
    file::check_target(path)?;
    let sealer = seal::Sealer::new(key);
    let loaded = match file::read(path)? {
        None => None,
        Some(bytes) => match read_scopes(path, &bytes, &sealer, ctx) {
            Ok(scopes) => Some(scopes),
            Err(e) if config.reset_on_error => {
                let aside = file::move_aside(path)?;
                tracing::warn!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    "state file cannot be used, moved aside; starting empty: {e}"
                );
                None
            }
            Err(e) => return Err(e),
        },
    };
    match loaded {
        Some(scopes) => {
            registry.load_api(scopes);
            let layers = registry.api_layers();
            tracing::info!(
                path = %path.display(),
                secrets = layers.len(),
                conversations = layers.conversations.len(),
                "state file loaded"
            );
        }
        None => {
            let plain = snapshot::encode(&registry.api_layers())
                .map_err(|source| LoadError::Encode { path: path.clone(), source })?;
            file::replace(path, &sealer.seal(&plain))?;
            tracing::info!(path = %path.display(), "state file created");
        }
    }
    Durable::with_file(registry, path.clone(), sealer)
        .map_err(|source| LoadError::Writer { path: path.clone(), source })
}

fn read_scopes(
    path: &std::path::Path,
    bytes: &[u8],
    sealer: &seal::Sealer,
    ctx: &ParseContext,
) -> Result<snapshot::Scopes, LoadError> {
    let plain = sealer.open(bytes).map_err(|source| LoadError::Open { path: path.to_owned(), source })?;
    snapshot::decode(&plain, ctx).map_err(|source| LoadError::Decode { path: path.to_owned(), source })
}

/// Adds the static values now held in `registry`'s API layers to `masks` (after a load: they
/// are held from the start, so they are masked from the start).
pub(crate) fn mask_loaded(registry: &Registry, masks: &MaskSet) -> Result<(), MaskError> {
    let layers = registry.api_layers();
    let scopes = std::iter::once((ScopeId::Sandbox, &layers.sandbox))
        .chain(layers.conversations.iter().map(|(id, api)| (ScopeId::Conversation(id.clone()), api)));
    let mut items: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();
    for (scope, api) in scopes {
        for (name, entry) in api {
            if let SecretSource::Static(StaticSecret { value: Some(v), .. }) = &entry.source {
                if masks.is_maskable(v.expose()) {
                    items.push((
                        crate::run::mask_key(&scope, name.as_str()),
                        Zeroizing::new(v.expose().to_vec()),
                    ));
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    masks.extend(items.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
}
