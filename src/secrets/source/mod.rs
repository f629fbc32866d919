//! Wire parsing of secret descriptors (`StaticSecret`, `LookupSecret`), compatible with the
//! OpenHands agent-server's `{"secrets": {NAME: entry}}` bodies.
//!
//! Entries are parsed from `serde_json::Value` by hand rather than through serde derive, for
//! two reasons: the reference accepts several shapes (a bare string, an untagged object with
//! `value`, a tagged object), and serde's own messages quote the offending input, which would
//! put secret values into error bodies. Every error here names the entry and the field and
//! never the value, URL or header value. Unknown fields are ignored, as the reference does.
//!
//! Input is refused rather than normalised: a URL, header name or header value with a
//! control character, or a URL with whitespace or a backslash, is an error, because a WHATWG
//! parser would drop or rewrite those and the stored URL would differ from the one submitted.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

mod egress;
mod lookup;
mod wire;

use egress::parse_egress;
use lookup::{MAX_HEADERS, parse_env_headers, parse_headers, parse_url};
pub use wire::Wire;

use super::origin::{Origin, OriginKind, OriginPolicy};
use super::value::{SecretName, SecretValue, is_env_name};
use crate::egress::binding::Binding;
use crate::egress::parse::MIN_BOUND_BYTES;

/// Longest accepted description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Largest per-descriptor cache TTL, in seconds (one day).
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// One registered secret: where its value comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// A value given inline.
    Static(StaticSecret),
    /// A value fetched from a URL when a command needs it.
    Lookup(LookupSecret),
}

/// A value given inline; `value: None` is an explicit "no value" (it exports nothing and
/// shadows an inherited entry of the same name).
#[derive(Clone)]
pub struct StaticSecret {
    pub value: Option<SecretValue>,
    pub description: Option<String>,
    /// The descriptor's own egress binding (`egress_hosts`…), if any.
    pub egress: Option<Arc<Binding>>,
}

/// "GET this URL; the body is the value."
#[derive(Clone)]
pub struct LookupSecret {
    /// Absolute URL (relative ones were joined at parse time). May carry a token in its
    /// query, so it is never logged or returned.
    pub url: Url,
    /// The URL's normalised origin, which may be logged and listed.
    pub origin: Origin,
    /// Whether the origin is a settings origin (session key, `env_headers`).
    pub origin_kind: OriginKind,
    /// Header name (as given) and value.
    pub headers: Vec<(String, SecretString)>,
    /// Header name and the environment variable that supplies its value at request time.
    pub env_headers: Vec<(String, String)>,
    /// Cache TTL override in seconds (`0` = never cache).
    pub ttl_seconds: Option<u64>,
    pub description: Option<String>,
    /// The descriptor's own egress binding (`egress_hosts`…), if any.
    pub egress: Option<Arc<Binding>>,
}

impl SecretSource {
    /// The wire name of the variant (`StaticSecret` / `LookupSecret`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Static(_) => "StaticSecret",
            Self::Lookup(_) => "LookupSecret",
        }
    }

    /// The free-text description, if any.
    pub fn description(&self) -> Option<&str> {
        match self {
            Self::Static(s) => s.description.as_deref(),
            Self::Lookup(l) => l.description.as_deref(),
        }
    }

    /// The descriptor's own egress binding, if it carries one.
    pub fn egress(&self) -> Option<&Arc<Binding>> {
        match self {
            Self::Static(s) => s.egress.as_ref(),
            Self::Lookup(l) => l.egress.as_ref(),
        }
    }

    /// True for a StaticSecret without a value (an explicit unset).
    pub fn is_no_value(&self) -> bool {
        matches!(self, Self::Static(StaticSecret { value: None, .. }))
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(s) => f
                .debug_struct("StaticSecret")
                .field("has_value", &s.value.is_some())
                .field("egress", &s.egress)
                .finish_non_exhaustive(),
            Self::Lookup(l) => f
                .debug_struct("LookupSecret")
                .field("origin", &l.origin.to_string())
                .field("headers", &l.headers.len())
                .field("env_headers", &l.env_headers.len())
                .field("ttl_seconds", &l.ttl_seconds)
                .field("egress", &l.egress)
                .finish_non_exhaustive(),
        }
    }
}

impl PartialEq for SecretSource {
    /// Descriptor equality (values and header values compared too), used to decide whether
    /// a re-registration changed anything and so must invalidate cached values.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Static(a), Self::Static(b)) => {
                a.description == b.description
                    && a.egress == b.egress
                    && a.value.as_ref().map(SecretValue::expose) == b.value.as_ref().map(SecretValue::expose)
            }
            (Self::Lookup(a), Self::Lookup(b)) => {
                a.url == b.url
                    && a.description == b.description
                    && a.ttl_seconds == b.ttl_seconds
                    && a.egress == b.egress
                    && a.env_headers == b.env_headers
                    && a.headers.len() == b.headers.len()
                    && a.headers
                        .iter()
                        .zip(&b.headers)
                        .all(|((n1, v1), (n2, v2))| n1 == n2 && v1.expose_secret() == v2.expose_secret())
            }
            _ => false,
        }
    }
}

/// One invalid entry: where (`loc`, FastAPI style) and what rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {msg}", loc.join("."))]
pub struct EntryError {
    pub loc: Vec<String>,
    pub msg: String,
}

/// What parsing needs from configuration.
#[derive(Clone, Debug)]
pub struct ParseContext {
    /// The lookup allow-list.
    pub policy: OriginPolicy,
    /// `OH_INTERNAL_SERVER_URL`, the base for relative URLs, when set.
    pub internal_base: Option<Url>,
    /// Environment variables `env_headers` may read.
    pub allowed_env_headers: Vec<String>,
    /// Largest static value accepted (`--max-value-bytes`, the cap on lookup bodies too).
    pub max_value_bytes: usize,
}

impl Default for ParseContext {
    fn default() -> Self {
        Self {
            policy: OriginPolicy::default(),
            internal_base: None,
            allowed_env_headers: Vec::new(),
            // The `--max-value-bytes` default.
            max_value_bytes: 64 * 1024,
        }
    }
}

/// Parses the `secrets` object of an update body. All entries are checked; the first error
/// (in name order) is returned and nothing is kept.
pub fn parse_update(body: &Value, ctx: &ParseContext) -> Result<Vec<(SecretName, SecretSource)>, EntryError> {
    let root = |msg: &str| EntryError { loc: vec!["body".into()], msg: msg.into() };
    let obj = body.as_object().ok_or_else(|| root("body must be a JSON object"))?;
    let secrets = obj.get("secrets").ok_or_else(|| EntryError {
        loc: vec!["body".into(), "secrets".into()],
        msg: "field required".into(),
    })?;
    let secrets = secrets.as_object().ok_or_else(|| EntryError {
        loc: vec!["body".into(), "secrets".into()],
        msg: "must be an object of NAME: entry".into(),
    })?;
    let mut out = Vec::with_capacity(secrets.len());
    let mut names: Vec<&String> = secrets.keys().collect();
    names.sort();
    for raw_name in names {
        let loc = |field: Option<&str>| {
            let mut l = vec!["body".to_owned(), "secrets".to_owned(), display_name(raw_name)];
            l.extend(field.map(str::to_owned));
            l
        };
        let name =
            SecretName::parse(raw_name).map_err(|e| EntryError { loc: loc(None), msg: e.to_string() })?;
        let source = parse_entry(&secrets[raw_name], ctx)
            .map_err(|(field, msg)| EntryError { loc: loc(field), msg })?;
        out.push((name, source));
    }
    Ok(out)
}

/// A name as it may appear in an error: valid-looking names as they are, anything else as a
/// placeholder (a caller who mixed up names and values must not get the value echoed).
fn display_name(raw: &str) -> String {
    if is_env_name(raw) { raw.to_owned() } else { "<invalid name>".to_owned() }
}

type FieldError = (Option<&'static str>, String);

fn field_err(field: &'static str, msg: impl Into<String>) -> FieldError {
    (Some(field), msg.into())
}

/// Parses one entry in any of the reference's three shapes.
fn parse_entry(entry: &Value, ctx: &ParseContext) -> Result<SecretSource, FieldError> {
    match entry {
        Value::String(s) => Ok(SecretSource::Static(StaticSecret {
            value: static_value(s, ctx.max_value_bytes).map_err(|msg| (None, msg))?,
            description: None,
            egress: None,
        })),
        Value::Object(obj) => match obj.get("kind") {
            Some(Value::String(k)) if k == "StaticSecret" => parse_static(obj, ctx),
            Some(Value::String(k)) if k == "LookupSecret" => parse_lookup(obj, ctx),
            Some(_) => Err(field_err("kind", "unknown kind (expected StaticSecret or LookupSecret)")),
            // The reference's shorthand: an object with `value` and no `kind` is static.
            None if obj.contains_key("value") => parse_static(obj, ctx),
            None => Err(field_err("kind", "field required (StaticSecret or LookupSecret)")),
        },
        Value::Null => Err((None, "entry must be a string or an object, not null".into())),
        Value::Bool(_) => Err((None, "entry must be a string or an object, not a boolean".into())),
        Value::Number(_) => Err((None, "entry must be a string or an object, not a number".into())),
        Value::Array(_) => Err((None, "entry must be a string or an object, not a list".into())),
    }
}

fn parse_static(obj: &Map<String, Value>, ctx: &ParseContext) -> Result<SecretSource, FieldError> {
    if obj.contains_key("ttl_seconds") {
        return Err(field_err("ttl_seconds", "only a LookupSecret can have ttl_seconds"));
    }
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => static_value(s, ctx.max_value_bytes).map_err(|m| field_err("value", m))?,
        Some(_) => return Err(field_err("value", "must be a string or null")),
    };
    let egress = parse_egress(obj)?;
    if egress.is_some() && value.as_ref().is_some_and(|v| v.len() < MIN_BOUND_BYTES) {
        return Err(field_err("value", too_short_to_bind()));
    }
    Ok(SecretSource::Static(StaticSecret { value, description: parse_description(obj)?, egress }))
}

/// A static value, held to the rules a looked-up value meets (`fetch`): no NUL byte (an
/// environment variable cannot carry one) and at most `max_bytes`. Accepting either would
/// only move the failure to every command that mentions the name.
fn static_value(s: &str, max_bytes: usize) -> Result<Option<SecretValue>, String> {
    if s.len() > max_bytes {
        return Err(format!("must be at most {max_bytes} bytes (--max-value-bytes)"));
    }
    if s.contains('\0') {
        return Err("must not contain a NUL byte (it cannot be exported as an environment variable)".into());
    }
    Ok(SecretValue::from_bytes(s.as_bytes().to_vec()))
}

/// The message for a bound value under [`MIN_BOUND_BYTES`].
pub fn too_short_to_bind() -> String {
    format!(
        "a value bound to egress hosts must be at least {MIN_BOUND_BYTES} bytes (its placeholder would be guessable)"
    )
}

fn parse_description(obj: &Map<String, Value>) -> Result<Option<String>, FieldError> {
    match obj.get("description") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_DESCRIPTION_CHARS => {
            Err(field_err("description", format!("must be at most {MAX_DESCRIPTION_CHARS} characters")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_err("description", "must be a string or null")),
    }
}

fn parse_lookup(obj: &Map<String, Value>, ctx: &ParseContext) -> Result<SecretSource, FieldError> {
    let raw_url = match obj.get("url") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(field_err("url", "field required")),
        Some(_) => return Err(field_err("url", "must be a string")),
    };
    let url = parse_url(raw_url, ctx).map_err(|m| field_err("url", m))?;
    let (origin, origin_kind) = ctx.policy.check(&url).map_err(|e| field_err("url", e.to_string()))?;

    let headers = parse_headers(obj.get("headers"))?;
    let env_headers = parse_env_headers(obj.get("env_headers"), origin_kind, ctx)?;
    if headers.len() + env_headers.len() > MAX_HEADERS {
        return Err(field_err("headers", format!("at most {MAX_HEADERS} headers in all")));
    }
    let mut seen: Vec<String> = Vec::new();
    for name in headers.iter().map(|(n, _)| n).chain(env_headers.iter().map(|(n, _)| n)) {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(field_err("headers", format!("header {name} is given more than once")));
        }
        seen.push(lower);
    }

    let ttl_seconds = match obj.get("ttl_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t) if t <= MAX_TTL_SECONDS => Some(t),
            _ => {
                return Err(field_err(
                    "ttl_seconds",
                    format!("must be a whole number from 0 to {MAX_TTL_SECONDS}"),
                ));
            }
        },
        Some(_) => return Err(field_err("ttl_seconds", "must be a whole number")),
    };
    Ok(SecretSource::Lookup(LookupSecret {
        url,
        origin,
        origin_kind,
        headers,
        env_headers,
        ttl_seconds,
        description: parse_description(obj)?,
        egress: parse_egress(obj)?,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> ParseContext {
        let o = |s: &str| Origin::parse(s).unwrap();
        ParseContext {
            policy: OriginPolicy::new(
                vec![o("https://app.example.dev")],
                vec![o("http://127.0.0.1:8000"), o("https://other.example")],
            ),
            internal_base: Some(Url::parse("http://127.0.0.1:8000").unwrap()),
            allowed_env_headers: vec!["SESSION_API_KEY".into()],
            max_value_bytes: 64,
        }
    }

    fn one(entry: Value) -> Result<SecretSource, EntryError> {
        parse_update(&json!({"secrets": {"N": entry}}), &ctx()).map(|mut v| v.remove(0).1)
    }

    fn err(entry: Value) -> String {
        one(entry).unwrap_err().to_string()
    }

    #[test]
    fn reference_shapes() {
        let body = json!({"secrets":{"PLAIN":"plain-value","STATIC":{"description":"d","value":"static-value","kind":"StaticSecret"},"GITHUB_TOKEN":{"description":"GitHub token","url":"https://app.example.dev/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN","headers":{"X-Session-API-Key":"sess-key"},"kind":"LookupSecret"}}});
        let parsed = parse_update(&body, &ctx()).unwrap();
        let names: Vec<_> = parsed.iter().map(|(n, s)| (n.as_str(), s.kind())).collect();
        assert_eq!(
            names,
            [("GITHUB_TOKEN", "LookupSecret"), ("PLAIN", "StaticSecret"), ("STATIC", "StaticSecret")]
        );
        let SecretSource::Lookup(l) = &parsed[0].1 else { panic!() };
        assert_eq!(l.origin_kind, OriginKind::Settings);
        assert_eq!(l.headers.len(), 1);
        // Untagged `value` keeps its description (the reference drops it).
        assert_eq!(one(json!({"value": "v", "description": "kept"})).unwrap().description(), Some("kept"));
        assert!(one(json!({"kind": "StaticSecret", "value": "x", "extra": 1})).is_ok());
    }

    #[test]
    fn no_value_forms() {
        for v in [
            json!(""),
            json!("   "),
            json!("**********"),
            json!({"kind":"StaticSecret"}),
            json!({"kind":"StaticSecret","value":null}),
        ] {
            assert!(one(v).unwrap().is_no_value());
        }
        let SecretSource::Lookup(l) = one(json!({"kind":"LookupSecret","url":"https://app.example.dev/x","headers":{"Authorization":"","X-Token":"**********","Cookie":"  ","Accept":"text/plain"}})).unwrap() else { panic!() };
        assert_eq!(l.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["Accept"]);
    }

    #[test]
    fn relative_urls() {
        let SecretSource::Lookup(l) =
            one(json!({"kind":"LookupSecret","url":"/api/settings/secrets/X"})).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.url.as_str(), "http://127.0.0.1:8000/api/settings/secrets/X");
        assert_eq!(l.origin_kind, OriginKind::Other);
        for bad in [
            "//app.example.dev/x",
            "api/x",
            "app.example.dev:443/x",
            "localhost:8000/x",
            "file:///etc/passwd",
            "https://u:p@app.example.dev/x",
            "https://evil.example/x",
            "http://169.254.169.254/latest",
        ] {
            assert!(err(json!({"kind":"LookupSecret","url":bad})).contains("url"), "{bad}");
        }
        let no_base = ParseContext { internal_base: None, ..ctx() };
        let e =
            parse_update(&json!({"secrets":{"N":{"kind":"LookupSecret","url":"/x"}}}), &no_base).unwrap_err();
        assert!(e.msg.contains("OH_INTERNAL_SERVER_URL"));
    }

    #[test]
    fn errors_never_echo_values() {
        let cases = [
            json!({"kind":"LookupSecret","value":"sekrit-canary"}),
            json!({"kind":"StaticSecret","value":["sekrit-canary"]}),
            json!({"kind":"LookupSecret","url":"https://evil.example/sekrit-canary"}),
            json!({"kind":"LookupSecret","url":"https://app.example.dev/x","headers":{"A":"sekrit-canary\n"}}),
            json!({"kind":"LookupSecret","url":"https://app.example.dev/x","headers":{"A":7}}),
            json!({"kind":"sekrit-canary"}),
            json!({"kind":"StaticSecret","value":"sekrit-canary","ttl_seconds":5}),
        ];
        for c in cases {
            let e = err(c.clone());
            assert!(!e.contains("sekrit"), "{c}: {e}");
        }
    }

    #[test]
    fn limits() {
        let url = |n: usize| format!("https://app.example.dev/{}", "a".repeat(n));
        assert!(one(json!({"kind":"LookupSecret","url": url(8000)})).is_ok());
        assert!(err(json!({"kind":"LookupSecret","url": url(8200)})).contains("8192"));
        let many: Map<String, Value> = (0..33).map(|i| (format!("H{i}"), json!("v"))).collect();
        assert!(err(json!({"kind":"LookupSecret","url": url(1),"headers": many})).contains("32"));
        assert!(
            err(json!({"kind":"LookupSecret","url": url(1),"headers": {"A": "v".repeat(8200)}}))
                .contains("8192")
        );
        for h in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "TE",
            "Upgrade",
            "Proxy-Authorization",
            "X-Forwarded-For",
        ] {
            assert!(
                err(json!({"kind":"LookupSecret","url": url(1),"headers": {h: "v"}})).contains("may not"),
                "{h}"
            );
        }
        assert!(
            err(json!({"kind":"LookupSecret","url": url(1),"headers": {"X-A": "1", "x-a": "2"}}))
                .contains("more than once")
        );
        assert!(
            err(json!({"kind":"LookupSecret","url": url(1),"ttl_seconds": 86401})).contains("ttl_seconds")
        );
        assert!(err(json!({"kind":"LookupSecret","url": url(1),"ttl_seconds": -1})).contains("ttl_seconds"));
        assert!(err(json!({"kind":"LookupSecret","url": url(1),"ttl_seconds": 1.5})).contains("ttl_seconds"));
        assert!(one(json!({"kind":"LookupSecret","url": url(1),"ttl_seconds": 0})).is_ok());
        assert!(err(json!({"value":"v","description": "d".repeat(1025)})).contains("1024"));
        for bad in [
            json!(null),
            json!(1),
            json!(true),
            json!(["v"]),
            json!({"description":"x"}),
            json!({"kind":"Nope"}),
        ] {
            let _ = err(bad);
        }
    }

    #[test]
    fn static_values_must_be_exportable() {
        // The context caps values at 64 bytes.
        assert!(one(json!("v".repeat(64))).is_ok());
        for entry in [
            json!(format!("sekrit-canary\u{0}")),
            json!({"value": "sekrit-canary\u{0}x"}),
            json!({"kind": "StaticSecret", "value": "\u{0}sekrit-canary"}),
            json!(format!("sekrit-canary{}", "v".repeat(60))),
            json!({"kind": "StaticSecret", "value": format!("sekrit-canary{}", "v".repeat(60))}),
        ] {
            let e = one(entry.clone()).unwrap_err();
            assert_eq!(e.loc[..3], ["body", "secrets", "N"], "{entry}");
            assert!(e.msg.contains("NUL") || e.msg.contains("64 bytes"), "{entry}: {e}");
            assert!(!e.to_string().contains("sekrit"), "{entry}: {e}");
        }
    }

    #[test]
    fn env_headers() {
        let ok = json!({"kind":"LookupSecret","url":"https://app.example.dev/x","env_headers":{"X-Session-API-Key":"SESSION_API_KEY"}});
        let SecretSource::Lookup(l) = one(ok).unwrap() else { panic!() };
        assert_eq!(l.env_headers, [("X-Session-API-Key".to_owned(), "SESSION_API_KEY".to_owned())]);
        assert!(err(json!({"kind":"LookupSecret","url":"https://other.example/x","env_headers":{"X-K":"SESSION_API_KEY"}})).contains("settings origin"));
        assert!(
            err(
                json!({"kind":"LookupSecret","url":"https://app.example.dev/x","env_headers":{"X-K":"HOME"}})
            )
            .contains("allow-env-header")
        );
    }

    #[test]
    fn control_characters_are_refused_not_normalised() {
        let at = |suffix: &str| format!("https://app.example.dev/sekrit-canary{suffix}");
        let urls = [
            at("\u{0}"),
            at("\n"),
            at("\r"),
            format!("{}\nx", at("")),
            format!("{}\tx", at("")),
            format!("\t{}", at("")),
            format!(" {}", at("")),
            at(" "),
            at(" x"),
            at("\u{7f}"),
            at("\u{1b}[31m"),
            at("\u{a0}x"),
            at("\\x"),
            "https://app.example.dev\\sekrit-canary".to_owned(),
            "/api/sekrit-canary\n".to_owned(),
            "/api/sekrit canary".to_owned(),
        ];
        let mut cases: Vec<(Value, &str)> = Vec::new();
        for url in &urls {
            // A WHATWG parser takes every one of these, changed: that is the point.
            let base = Url::parse("http://127.0.0.1:8000").unwrap();
            assert!(base.join(url).is_ok(), "{url:?}");
            cases.push((json!({"kind": "LookupSecret", "url": url}), "url"));
        }
        let lookup = |field: &str, headers: Value| json!({"kind": "LookupSecret", "url": "https://app.example.dev/x", field: headers});
        for value in [
            "sekrit-canary\t",
            "\t",
            "\n",
            "sekrit\u{0}canary",
            "sekrit-canary\u{7f}",
            "sekrit-canary\r\nX-B: 1",
        ] {
            cases.push((lookup("headers", json!({"X-A": value})), "headers"));
        }
        for name in ["X-A\n", "X\tA", "X-A\u{0}", "\u{7f}", " X-A"] {
            cases.push((lookup("headers", json!({name: "sekrit-canary"})), "headers"));
            cases.push((lookup("env_headers", json!({name: "SESSION_API_KEY"})), "env_headers"));
        }
        for var in ["SESSION_API_KEY\n", "\tSESSION_API_KEY", "SESSION_API_KEY\u{0}"] {
            cases.push((lookup("env_headers", json!({"X-K": var})), "env_headers"));
        }
        for (entry, field) in cases {
            let e = one(entry.clone()).unwrap_err();
            assert_eq!(e.loc, ["body", "secrets", "N", field], "{entry}: {e}");
            assert!(!e.to_string().contains("sekrit"), "{entry}: {e}");
        }
        // Folding the scheme's and host's case and a default port is fine.
        let SecretSource::Lookup(l) =
            one(json!({"kind": "LookupSecret", "url": "HTTPS://App.Example.DEV:443/Path?q=%20"})).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.url.as_str(), "https://app.example.dev/Path?q=%20");
        assert!(one(lookup("headers", json!({"X-A": "a b"}))).is_ok(), "a space inside a value is fine");
    }

    #[test]
    fn debug_hides_everything_secret() {
        let s = one(json!({"kind":"LookupSecret","url":"https://app.example.dev/x?token=canary-q","headers":{"Authorization":"canary-h"}})).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("canary"), "{shown}");
        let s = one(json!("canary-v")).unwrap();
        assert!(!format!("{s:?}").contains("canary"));
    }
}
