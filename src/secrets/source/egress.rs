//! The egress fields of a descriptor: `egress_hosts`, `egress_headers`, `egress_query`
//! (contract §8). The rules themselves live in [`crate::egress::parse`]; this file reads the
//! JSON shapes and maps errors to the field at fault. Like every parser here, it never
//! quotes the input.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{FieldError, field_err};
use crate::egress::binding::Binding;
use crate::egress::parse::{BindingError, Field, build};

/// The descriptor's own binding, if it has one. `egress_headers` or `egress_query` without
/// `egress_hosts` is an error: places without hosts bind nothing.
pub(super) fn parse_egress(obj: &Map<String, Value>) -> Result<Option<Arc<Binding>>, FieldError> {
    let hosts = strings(obj, Field::Hosts)?;
    let headers = strings(obj, Field::Headers)?;
    let query = strings(obj, Field::Query)?;
    let Some(hosts) = hosts else {
        if headers.is_some() || query.is_some() {
            return Err(field_err("egress_hosts", "required when egress_headers or egress_query is given"));
        }
        return Ok(None);
    };
    let binding = build(hosts, headers.unwrap_or_default(), query.unwrap_or_default())
        .map_err(|(field, e)| field_err(field.descriptor_field(), e.to_string()))?;
    Ok(Some(Arc::new(binding)))
}

/// A list of strings, or `None` when the field is absent or null.
fn strings(obj: &Map<String, Value>, field: Field) -> Result<Option<Vec<&str>>, FieldError> {
    let name = field.descriptor_field();
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().ok_or_else(|| field_err(name, BindingError::NotString(i).to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(field_err(name, "must be a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{EntryError, ParseContext, SecretSource, parse_update};
    use crate::secrets::origin::{Origin, OriginPolicy};

    fn one(entry: serde_json::Value) -> Result<SecretSource, EntryError> {
        let allowed = vec![Origin::parse("https://app.example.dev").unwrap()];
        let ctx = ParseContext { policy: OriginPolicy::new(Vec::new(), allowed), ..ParseContext::default() };
        parse_update(&json!({"secrets": {"N": entry}}), &ctx).map(|mut v| v.remove(0).1)
    }

    #[test]
    fn egress_fields() {
        let s = one(json!({"value": "v".repeat(16), "egress_hosts": ["API.example.com", "*.example.org"], "egress_headers": ["X-Api-Key", "Authorization"], "egress_query": ["key"]})).unwrap();
        let b = s.egress().unwrap();
        assert!(b.covers("api.example.com") && b.covers("a.example.org") && !b.covers("example.org"));
        assert_eq!(b.headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(), ["x-api-key"]);
        let l = one(json!({"kind": "LookupSecret", "url": "https://app.example.dev/x", "egress_hosts": ["api.example.com"]})).unwrap();
        assert!(l.egress().is_some());
        // Part of descriptor equality: a changed binding is a changed descriptor.
        let other = one(json!({"kind": "LookupSecret", "url": "https://app.example.dev/x", "egress_hosts": ["api.example.net"]})).unwrap();
        assert!(l != other);
        assert!(one(json!("plain-value")).unwrap().egress().is_none());
        let e = one(json!({"value": "sekrit-canary", "egress_hosts": ["api.example.com"]})).unwrap_err();
        assert_eq!(e.loc, ["body", "secrets", "N", "value"]);
        assert!(e.msg.contains("16 bytes") && !e.to_string().contains("sekrit"), "{e}");
        for (entry, field) in [
            (json!({"value": "v".repeat(16), "egress_hosts": "api.example.com"}), "egress_hosts"),
            (json!({"value": "v".repeat(16), "egress_hosts": [1]}), "egress_hosts"),
            (json!({"value": "v".repeat(16), "egress_hosts": ["127.0.0.1"]}), "egress_hosts"),
            (json!({"value": "v".repeat(16), "egress_query": ["key"]}), "egress_hosts"),
            (
                json!({"value": "v".repeat(16), "egress_hosts": ["a.example.com"], "egress_headers": ["Cookie"]}),
                "egress_headers",
            ),
        ] {
            assert_eq!(one(entry.clone()).unwrap_err().loc[3], field, "{entry}");
        }
    }
}
