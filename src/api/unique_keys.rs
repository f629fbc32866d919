//! JSON syntax with one rule more than serde_json's: an object may not name a key twice.
//!
//! `serde_json::Value` keeps the last of duplicate keys, so `{"command": "a", "command": "b"}`
//! would run `b` while a proxy or an audit log in front of the service read `a`. Request
//! bodies are parsed here instead, at every depth; a duplicate is a syntax error (400) that
//! gives its line and column, never the key or the value. serde_json's own limits (nesting
//! depth, number range) still apply, since this only replaces how values are built.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value, refusing duplicate object keys.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(bytes).map(|u| u.0)
}

/// A [`Value`] built with duplicate keys refused.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    #[test]
    fn values_parse_as_serde_json_parses_them() {
        for text in [r#"{"a": [1, -2, 2.5, "s", null, true, {"b": {}}], "c": "\u00e9"}"#, "[]", "7", r#""x""#]
        {
            assert_eq!(
                parse(text.as_bytes()).unwrap(),
                serde_json::from_str::<serde_json::Value>(text).unwrap()
            );
        }
        assert_eq!(parse(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#).unwrap()["b"][1], json!({"a": 2}));
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_depth_without_echo() {
        for text in [
            r#"{"command": "a", "command": "canary"}"#,
            r#"{"secrets": {"K": "v", "K": "canary"}}"#,
            r#"[{"x": {"y": [{"z": 1, "z": "canary"}]}}]"#,
        ] {
            let err = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("duplicate object key at line 1 column"), "{err}");
            assert!(!err.contains("canary") && !err.contains('"'), "{err}");
        }
    }

    #[test]
    fn syntax_errors_and_limits_are_unchanged() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for bad in [
            &b"{\"a\": 1"[..],
            b"{\"a\": 1} x",
            b"NaN",
            b"\"\\ud800\"",
            b"\"\xff\"",
            deep.as_bytes(),
            b"1e400",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
