//! The checks a `LookupSecret`'s URL and headers must pass: limits, forbidden headers, and
//! text that is refused rather than normalised (control characters, whitespace and `\` in a
//! URL). Errors name the field and never the URL or a header value.

use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use super::{FieldError, ParseContext, field_err};
use crate::secrets::origin::OriginKind;
use crate::secrets::value::{is_env_name, is_placeholder};

/// Longest accepted lookup URL, in bytes.
pub(super) const MAX_URL_BYTES: usize = 8192;
/// Most headers (plain and `env_headers` together) one lookup may carry.
pub(super) const MAX_HEADERS: usize = 32;
/// Longest accepted header (name plus value), in bytes.
pub(super) const MAX_HEADER_BYTES: usize = 8192;
/// Headers a descriptor may not set: they would let it smuggle requests or spoof routing.
const FORBIDDEN_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "te", "upgrade"];
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["proxy-", "x-forwarded-"];

/// A C0 control character or DEL.
fn is_control(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}'
}

/// What a URL's text contains that a WHATWG parser would silently drop or rewrite (tabs and
/// newlines removed, leading and trailing C0 and spaces trimmed, `\` read as `/`), if
/// anything. Scheme and host case and default ports may still be normalised: they do not
/// change where the request goes.
fn url_text_fault(raw: &str) -> Option<&'static str> {
    raw.chars().find_map(|c| {
        if is_control(c) {
            Some("must not contain a control character")
        } else if c.is_whitespace() {
            Some("must not contain whitespace")
        } else if c == '\\' {
            Some("must not contain a backslash")
        } else {
            None
        }
    })
}

/// An absolute http(s) URL, or a path starting with exactly one `/` joined to
/// `OH_INTERNAL_SERVER_URL`. Anything else without a scheme is refused: the reference's
/// `urljoin` turns `host:8000/x` and `api/x` into surprising targets.
pub(super) fn parse_url(raw: &str, ctx: &ParseContext) -> Result<Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    if let Some(fault) = url_text_fault(raw) {
        return Err(fault.into());
    }
    if raw.starts_with('/') && !raw.starts_with("//") {
        let base =
            ctx.internal_base.as_ref().ok_or("a relative url needs OH_INTERNAL_SERVER_URL to be set")?;
        return base.join(raw).map_err(|_| "relative url could not be joined".to_owned());
    }
    let url = Url::parse(raw)
        .map_err(|_| "must be an absolute http(s) url or a path starting with one /".to_owned())?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("url scheme must be http or https".into());
    }
    Ok(url)
}

fn check_header_name(name: &str) -> Result<(), FieldError> {
    if name.chars().any(is_control) {
        return Err(field_err("headers", "a header name contains a control character"));
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(field_err("headers", "a header name is not a valid HTTP token"));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str())
        || FORBIDDEN_HEADER_PREFIXES.iter().any(|p| lower.starts_with(p))
    {
        return Err(field_err("headers", format!("header {name} may not be set by a descriptor")));
    }
    Ok(())
}

pub(super) fn parse_headers(v: Option<&Value>) -> Result<Vec<(String, SecretString)>, FieldError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(field_err("headers", "must be an object of name: value")),
    };
    let mut out = Vec::new();
    for (name, value) in obj {
        check_header_name(name)?;
        let Value::String(value) = value else {
            return Err(field_err("headers", format!("header {name} must have a string value")));
        };
        if name.len() + value.len() > MAX_HEADER_BYTES {
            return Err(field_err("headers", format!("header {name} is over {MAX_HEADER_BYTES} bytes")));
        }
        // Before the placeholder check: a value of only tabs or newlines is refused, not
        // dropped as blank.
        if value.chars().any(is_control) {
            return Err(field_err("headers", format!("header {name} has a value with a control character")));
        }
        if is_placeholder(value.as_bytes()) {
            continue; // the reference drops redacted or empty header values
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(field_err("headers", format!("header {name} has a value that is not valid in HTTP")));
        }
        out.push((name.clone(), SecretString::from(value.clone())));
    }
    Ok(out)
}

pub(super) fn parse_env_headers(
    v: Option<&Value>,
    kind: OriginKind,
    ctx: &ParseContext,
) -> Result<Vec<(String, String)>, FieldError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) if o.is_empty() => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(field_err("env_headers", "must be an object of header: ENV_VAR")),
    };
    if kind != OriginKind::Settings {
        return Err(field_err("env_headers", "env_headers are only allowed toward a settings origin"));
    }
    let mut out = Vec::new();
    for (name, var) in obj {
        check_header_name(name).map_err(|(_, m)| field_err("env_headers", m))?;
        let Value::String(var) = var else {
            return Err(field_err("env_headers", format!("header {name} must name an environment variable")));
        };
        if var.chars().any(is_control) {
            return Err(field_err(
                "env_headers",
                format!("header {name} names a variable with a control character"),
            ));
        }
        if !is_env_name(var) || !ctx.allowed_env_headers.iter().any(|a| a == var) {
            return Err(field_err(
                "env_headers",
                format!("header {name} reads a variable that is not on --allow-env-header"),
            ));
        }
        out.push((name.clone(), var.clone()));
    }
    Ok(out)
}
