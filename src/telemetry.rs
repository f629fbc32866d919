//! Log setup: tracing to stderr, text or JSON.
//!
//! HTTP client and server internals (`hyper`, `reqwest`, `h2`, `rustls`) are switched off
//! whatever filter the operator gives, because their debug lines can print request URLs and
//! a lookup URL may carry a token in its query.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Targets that are always silenced, appended after the operator's filter so they win.
const SILENCED: &[&str] =
    &["hyper=off", "hyper_util=off", "reqwest=off", "h2=off", "rustls=off", "tower=off"];

/// The operator's filter plus `SILENCED`; an unparsable filter is an error naming it.
pub fn filter(directives: &str) -> Result<EnvFilter, String> {
    let mut all = directives.to_owned();
    for s in SILENCED {
        all.push(',');
        all.push_str(s);
    }
    EnvFilter::try_new(&all).map_err(|e| format!("--log {directives}: {e}"))
}

/// Installs the global subscriber writing to stderr.
pub fn init(directives: &str, format: LogFormat) -> Result<(), String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(directives)?)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
