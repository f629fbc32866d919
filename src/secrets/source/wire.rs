//! The wire form of a descriptor: the JSON object a `POST …/secrets` entry would carry, so
//! [`super::parse_update`] reads back what [`Wire`] writes. The state file stores descriptors
//! this way; a new descriptor field needs adding here and in the parser, nowhere else.
//!
//! Serializing exposes values and header values (that is its job); it writes through
//! `serde::Serializer`, so the caller chooses where the bytes go and must keep them in a
//! zeroizing buffer. A header the caller says the sidecar supplies itself can be left out.

use secrecy::ExposeSecret;
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use super::{LookupSecret, SecretSource};

/// A descriptor, serializable in its wire form.
pub struct Wire<'a> {
    source: &'a SecretSource,
    omit_header: fn(&LookupSecret, &str) -> bool,
}

impl<'a> Wire<'a> {
    /// `source` with every field.
    pub fn new(source: &'a SecretSource) -> Self {
        Self { source, omit_header: |_, _| false }
    }

    /// Leaves out the headers of a lookup for which `omit(lookup, name)` is true.
    pub fn omitting_headers(mut self, omit: fn(&LookupSecret, &str) -> bool) -> Self {
        self.omit_header = omit;
        self
    }
}

/// A list of `(name, value)` pairs as a JSON object.
struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("kind", self.source.kind())?;
        match self.source {
            SecretSource::Static(st) => {
                let value = match &st.value {
                    // Parsed values come from JSON strings; a value that is not UTF-8 cannot
                    // be written as one (the error does not show it).
                    Some(v) => Some(
                        std::str::from_utf8(v.expose())
                            .map_err(|_| S::Error::custom("a static value is not UTF-8"))?,
                    ),
                    None => None,
                };
                map.serialize_entry("value", &value)?;
            }
            SecretSource::Lookup(l) => {
                map.serialize_entry("url", l.url.as_str())?;
                let headers: Vec<(&str, &str)> = l
                    .headers
                    .iter()
                    .filter(|(n, _)| !(self.omit_header)(l, n))
                    .map(|(n, v)| (n.as_str(), v.expose_secret()))
                    .collect();
                if !headers.is_empty() {
                    map.serialize_entry("headers", &Pairs(&headers))?;
                }
                if !l.env_headers.is_empty() {
                    let env: Vec<(&str, &str)> =
                        l.env_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    map.serialize_entry("env_headers", &Pairs(&env))?;
                }
                if let Some(ttl) = l.ttl_seconds {
                    map.serialize_entry("ttl_seconds", &ttl)?;
                }
            }
        }
        if let Some(d) = self.source.description() {
            map.serialize_entry("description", d)?;
        }
        if let Some(binding) = self.source.egress() {
            let hosts: Vec<String> = binding.hosts.iter().map(ToString::to_string).collect();
            map.serialize_entry("egress_hosts", &hosts)?;
            if !binding.headers.is_empty() {
                let headers: Vec<&str> = binding.headers.iter().map(|h| h.as_str()).collect();
                map.serialize_entry("egress_headers", &headers)?;
            }
            if !binding.query.is_empty() {
                map.serialize_entry("egress_query", &binding.query)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use url::Url;

    use super::*;
    use crate::secrets::origin::{Origin, OriginPolicy};
    use crate::secrets::source::{ParseContext, parse_update};

    fn ctx() -> ParseContext {
        let o = |s: &str| Origin::parse(s).unwrap();
        ParseContext {
            policy: OriginPolicy::new(vec![o("https://app.example.dev")], vec![o("http://127.0.0.1:8000")]),
            internal_base: Some(Url::parse("http://127.0.0.1:8000").unwrap()),
            allowed_env_headers: vec!["SESSION_API_KEY".into()],
            max_value_bytes: 1024,
        }
    }

    fn parse(entry: &Value) -> SecretSource {
        parse_update(&json!({"secrets": {"N": entry}}), &ctx()).unwrap().remove(0).1
    }

    fn wire(source: &SecretSource) -> Value {
        serde_json::to_value(Wire::new(source)).unwrap()
    }

    #[test]
    fn parse_of_serialize_is_the_descriptor() {
        let entries = [
            json!("plain-value-canary"),
            json!({"value": "v-canary", "description": "untagged"}),
            json!({"kind": "StaticSecret", "value": null, "description": "explicit unset"}),
            json!({"kind": "StaticSecret", "value": "quote \" backslash \\ unicode é ☃"}),
            json!({"kind": "LookupSecret", "url": "/api/settings/secrets/X?token=q-canary"}),
            json!({
                "kind": "LookupSecret",
                "url": "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/GH",
                "headers": {"Authorization": "Bearer h-canary", "X-Other": "o-canary"},
                "env_headers": {"X-From-Env": "SESSION_API_KEY"},
                "ttl_seconds": 0,
                "description": "all fields",
            }),
            json!({"kind": "LookupSecret", "url": "http://127.0.0.1:8000/x", "ttl_seconds": 86400}),
            json!({"value": "bound-value-canary-0123", "egress_hosts": ["api.github.com", "*.example.com"],
                   "egress_headers": ["X-Api-Key"], "egress_query": ["key"]}),
            json!({"kind": "LookupSecret", "url": "http://127.0.0.1:8000/y", "egress_hosts": ["gitlab.com"]}),
        ];
        for entry in &entries {
            let d = parse(entry);
            let w = wire(&d);
            assert!(parse(&w) == d, "{entry} -> {w}");
            assert_eq!(wire(&parse(&w)), w, "stable: {entry}");
        }
        assert_eq!(wire(&parse(&json!("pv"))), json!({"kind": "StaticSecret", "value": "pv"}));
    }

    #[test]
    fn a_header_can_be_left_out() {
        let d = parse(&json!({
            "kind": "LookupSecret",
            "url": "https://app.example.dev/x",
            "headers": {"X-Session-API-Key": "sess-canary", "Accept": "text/plain"},
        }));
        let w = serde_json::to_value(
            Wire::new(&d).omitting_headers(|_, n| n.eq_ignore_ascii_case("x-session-api-key")),
        )
        .unwrap();
        assert_eq!(w["headers"], json!({"Accept": "text/plain"}));
        assert!(!w.to_string().contains("sess-canary"));
    }
}
