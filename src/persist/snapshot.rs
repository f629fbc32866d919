//! The state file's plaintext: the registry's API layers as JSON, every descriptor in its
//! wire form ([`Wire`]), and the way back.
//!
//! `{"version": 1, "scopes": [{"scope": "sandbox" | "<conversation id>", "secrets": {NAME:
//! entry}}]}`. Left out: discovered entries (found again at start), resolved lookup values
//! (never held here) and the `X-Session-API-Key` header of a lookup the sidecar supplies its
//! own session key to (it rotates; a stored copy would be stale and is a key). Encoding
//! writes into a buffer that is zeroized on drop and on every growth.
//!
//! Reading back re-parses each entry with the current configuration; an entry the current
//! allow-list or limits refuse is dropped with a warning naming scope, name and rule.

use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::secrets::registry::{ApiLayers, ConversationId, Entry, ScopeId};
use crate::secrets::resolver::carries_session_key;
use crate::secrets::source::{LookupSecret, ParseContext, SecretSource, Wire, parse_update};
use crate::secrets::value::SecretName;

/// The plaintext layout version.
const VERSION: u64 = 1;
/// The header a lookup toward a settings origin's sandbox paths gets from the sidecar.
const SESSION_KEY_HEADER: &str = "x-session-api-key";

/// The plaintext could not be read back. Never quotes it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the sealed content is not a state document")]
    NotJson,
    #[error("the sealed content has layout version {0}, which this build cannot read")]
    Version(String),
    #[error("the sealed content is malformed at {0}")]
    Malformed(&'static str),
}

/// Scopes and their entries, as read back.
pub(crate) type Scopes = Vec<(ScopeId, Vec<(SecretName, SecretSource)>)>;

/// A `Vec<u8>` writer that zeroizes every buffer it lets go of.
struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl Write for ZeroizingBuf {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let need = self.0.len() + bytes.len();
        if need > self.0.capacity() {
            // Grow by hand: `Vec`'s own growth would free the old buffer unzeroized.
            let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(4096) * 2));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `header` of `lookup` is one the sidecar supplies itself (so not stored).
fn supplied_by_sidecar(lookup: &LookupSecret, header: &str) -> bool {
    header.eq_ignore_ascii_case(SESSION_KEY_HEADER) && carries_session_key(lookup.origin_kind, &lookup.url)
}

struct Secrets<'a>(&'a std::collections::BTreeMap<SecretName, std::sync::Arc<Entry>>);

impl Serialize for Secrets<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, entry) in self.0 {
            map.serialize_entry(
                name.as_str(),
                &Wire::new(&entry.source).omitting_headers(supplied_by_sidecar),
            )?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct ScopeOut<'a> {
    scope: &'a str,
    secrets: Secrets<'a>,
}

#[derive(Serialize)]
struct Document<'a> {
    version: u64,
    scopes: Vec<ScopeOut<'a>>,
}

/// The plaintext of `layers`.
pub(crate) fn encode(layers: &ApiLayers) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut scopes = vec![ScopeOut { scope: "sandbox", secrets: Secrets(&layers.sandbox) }];
    scopes.extend(
        layers.conversations.iter().map(|(id, api)| ScopeOut { scope: id.as_str(), secrets: Secrets(api) }),
    );
    let mut out = ZeroizingBuf(Zeroizing::new(Vec::new()));
    serde_json::to_writer(&mut out, &Document { version: VERSION, scopes })?;
    Ok(out.0)
}

/// The scopes in `plaintext`, each entry parsed with `ctx`; entries `ctx` refuses are
/// dropped with a warning.
pub(crate) fn decode(plaintext: &[u8], ctx: &ParseContext) -> Result<Scopes, DecodeError> {
    let doc: Value = serde_json::from_slice(plaintext).map_err(|_| DecodeError::NotJson)?;
    match doc.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(Value::Number(n)) => return Err(DecodeError::Version(n.to_string())),
        _ => return Err(DecodeError::Malformed("version")),
    }
    let scopes = doc.get("scopes").and_then(Value::as_array).ok_or(DecodeError::Malformed("scopes"))?;
    let mut out = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let id = match scope.get("scope").and_then(Value::as_str) {
            Some("sandbox") => ScopeId::Sandbox,
            Some(id) => ScopeId::Conversation(
                ConversationId::parse(id).ok_or(DecodeError::Malformed("scopes.scope"))?,
            ),
            None => return Err(DecodeError::Malformed("scopes.scope")),
        };
        let secrets = scope
            .get("secrets")
            .and_then(Value::as_object)
            .ok_or(DecodeError::Malformed("scopes.secrets"))?;
        let mut entries = Vec::with_capacity(secrets.len());
        for (name, entry) in secrets {
            let one = json!({ "secrets": Map::from_iter([(name.clone(), entry.clone())]) });
            match parse_update(&one, ctx) {
                Ok(parsed) => entries.extend(parsed),
                Err(e) => tracing::warn!(
                    scope = %id,
                    "a stored secret is refused by the current configuration and dropped: {e}"
                ),
            }
        }
        out.push((id, entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::secrets::origin::{Origin, OriginPolicy};
    use crate::secrets::registry::{Limits, Registry};

    fn ctx(max_value_bytes: usize) -> ParseContext {
        let o = |s: &str| Origin::parse(s).unwrap();
        ParseContext {
            policy: OriginPolicy::new(vec![o("https://app.example.dev")], vec![o("https://other.example")]),
            internal_base: Some(Url::parse("http://127.0.0.1:8000").unwrap()),
            allowed_env_headers: Vec::new(),
            max_value_bytes,
        }
    }

    fn registry(body: Value, scope: &ScopeId) -> Registry {
        let r = Registry::new(Limits { max_conversations: 8, max_secrets_per_scope: 8 });
        r.update(scope, parse_update(&body, &ctx(1024)).unwrap()).unwrap();
        r
    }

    #[test]
    fn round_trip_leaves_out_the_session_key_the_sidecar_supplies() {
        let conv = ScopeId::Conversation(ConversationId::parse(&format!("{:032x}", 7)).unwrap());
        let sandbox_path = "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/GH";
        let r = registry(
            json!({"secrets": {
                "GH": {"kind": "LookupSecret", "url": sandbox_path,
                       "headers": {"X-Session-API-Key": "sess-canary", "X-Extra": "extra-canary"}},
                "OTHER": {"kind": "LookupSecret", "url": "https://other.example/x",
                          "headers": {"X-Session-API-Key": "kept-canary"}},
                "S": "static-canary",
            }}),
            &conv,
        );
        r.update(&ScopeId::Sandbox, vec![]).unwrap();
        let plain = encode(&r.api_layers()).unwrap();
        let text = std::str::from_utf8(&plain).unwrap();
        assert!(!text.contains("sess-canary"), "{text}");
        assert!(
            text.contains("extra-canary") && text.contains("kept-canary") && text.contains("static-canary")
        );
        let scopes = decode(&plain, &ctx(1024)).unwrap();
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].0, ScopeId::Sandbox);
        assert_eq!(scopes[1].0, conv);
        let names: Vec<&str> = scopes[1].1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["GH", "OTHER", "S"]);
        let SecretSource::Lookup(gh) = &scopes[1].1[0].1 else { panic!() };
        let headers: Vec<&str> = gh.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(headers, ["X-Extra"]);
    }

    #[test]
    fn an_entry_the_configuration_now_refuses_is_dropped_not_fatal() {
        let r =
            registry(json!({"secrets": {"BIG": "v".repeat(100), "SMALL": "small-value"}}), &ScopeId::Sandbox);
        let plain = encode(&r.api_layers()).unwrap();
        let scopes = decode(&plain, &ctx(64)).unwrap();
        let names: Vec<&str> = scopes[0].1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["SMALL"]);
    }

    #[test]
    fn malformed_documents_are_errors() {
        let c = ctx(64);
        assert_eq!(decode(b"not json", &c).unwrap_err(), DecodeError::NotJson);
        assert_eq!(
            decode(br#"{"version":2,"scopes":[]}"#, &c).unwrap_err(),
            DecodeError::Version("2".into())
        );
        assert!(decode(br#"{"scopes":[]}"#, &c).is_err());
        assert!(decode(br#"{"version":1}"#, &c).is_err());
        assert!(decode(br#"{"version":1,"scopes":[{"scope":"nope","secrets":{}}]}"#, &c).is_err());
        assert!(decode(br#"{"version":1,"scopes":[{"scope":"sandbox"}]}"#, &c).is_err());
        assert_eq!(decode(br#"{"version":1,"scopes":[]}"#, &c).unwrap(), vec![]);
    }
}
