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
