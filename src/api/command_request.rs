//! The body of a command request, checked by hand so errors name the field and never echo
//! the command text or an `env` value.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::ApiError;
use crate::secrets::select::Requested;
use crate::secrets::value::SecretName;

/// Default command timeout, in seconds (*(ref)*).
const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// A validated command request.
#[derive(Debug)]
pub struct CommandRequest {
    pub command: String,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    pub secrets: Requested,
    pub env: Vec<(String, String)>,
    /// `on_missing: "fail"` (the default): an explicit secret that cannot be exported is a 424.
    pub fail_on_missing: bool,
}

fn bad(field: &str, rule: &str) -> ApiError {
    ApiError::Unprocessable(format!("{field}: {rule}"))
}

impl CommandRequest {
    /// Parses `body`; `max_timeout` bounds `timeout`.
    pub fn parse(body: &Value, max_timeout: Duration) -> Result<Self, ApiError> {
        let obj = body.as_object().ok_or_else(|| bad("body", "must be a JSON object"))?;
        let command = match obj.get("command") {
            Some(Value::String(c)) if c.trim().is_empty() => return Err(bad("command", "must not be empty")),
            Some(Value::String(c)) if c.contains('\0') => return Err(bad("command", "must not contain NUL")),
            Some(Value::String(c)) => c.clone(),
            None | Some(Value::Null) => return Err(bad("command", "field required")),
            Some(_) => return Err(bad("command", "must be a string")),
        };
        let cwd = match obj.get("cwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if c.contains('\0') || c.is_empty() => {
                return Err(bad("cwd", "must be a non-empty path without NUL"));
            }
            Some(Value::String(c)) => Some(PathBuf::from(c)),
            Some(_) => return Err(bad("cwd", "must be a string or null")),
        };
        let max = max_timeout.as_secs();
        let timeout = match obj.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS.min(max),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(t) if (1..=max).contains(&t) => t,
                _ => {
                    return Err(bad(
                        "timeout",
                        &format!("must be a whole number of seconds from 1 to {max}"),
                    ));
                }
            },
            Some(_) => return Err(bad("timeout", "must be a whole number of seconds")),
        };
        let secrets = match obj.get("secrets") {
            None | Some(Value::Null) => Requested::Referenced,
            Some(Value::String(s)) if s == "all" => Requested::All,
            Some(Value::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    let name = item.as_str().ok_or_else(|| bad("secrets", "must list secret names"))?;
                    SecretName::parse(name).map_err(|e| bad("secrets", &e.to_string()))?;
                    names.push(name.to_owned());
                }
                Requested::Names(names)
            }
            Some(_) => return Err(bad("secrets", "must be null, a list of names, or \"all\"")),
        };
        let env = match obj.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(vars)) => {
                let mut env = Vec::with_capacity(vars.len());
                for (name, value) in vars {
                    SecretName::parse(name).map_err(|e| bad("env", &e.to_string()))?;
                    let Value::String(value) = value else {
                        return Err(bad("env", &format!("{name} must have a string value")));
                    };
                    if value.contains('\0') {
                        return Err(bad("env", &format!("{name} must not contain NUL")));
                    }
                    env.push((name.clone(), value.clone()));
                }
                env
            }
            Some(_) => return Err(bad("env", "must be an object of NAME: value")),
        };
        let fail_on_missing = match obj.get("on_missing") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) if s == "fail" => true,
            Some(Value::String(s)) if s == "skip" => false,
            Some(_) => return Err(bad("on_missing", "must be \"fail\" or \"skip\"")),
        };
        Ok(Self { command, cwd, timeout: Duration::from_secs(timeout), secrets, env, fail_on_missing })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn defaults() {
        let r = CommandRequest::parse(&json!({"command": "true"}), MAX).unwrap();
        assert_eq!(r.timeout, Duration::from_secs(300));
        assert_eq!(r.secrets, Requested::Referenced);
        assert!(r.fail_on_missing && r.env.is_empty() && r.cwd.is_none());
        let r = CommandRequest::parse(&json!({"command": "x", "secrets": "all", "on_missing": "skip"}), MAX)
            .unwrap();
        assert_eq!(r.secrets, Requested::All);
        assert!(!r.fail_on_missing);
    }

    #[test]
    fn errors_name_the_field_and_never_echo() {
        let cases = [
            (json!({}), "command"),
            (json!({"command": 5}), "command"),
            (json!({"command": ""}), "command"),
            (json!({"command": "canary\u{0}"}), "command"),
            (json!({"command": "x", "timeout": 0}), "timeout"),
            (json!({"command": "x", "timeout": 3601}), "timeout"),
            (json!({"command": "x", "timeout": "5"}), "timeout"),
            (json!({"command": "x", "cwd": 5}), "cwd"),
            (json!({"command": "x", "secrets": "canary"}), "secrets"),
            (json!({"command": "x", "secrets": ["1canary"]}), "secrets"),
            (json!({"command": "x", "secrets": ["PATH"]}), "secrets"),
            (json!({"command": "x", "env": {"LD_PRELOAD": "canary"}}), "env"),
            (json!({"command": "x", "env": {"A": "canary\u{0}"}}), "env"),
            (json!({"command": "x", "env": {"A": 5}}), "env"),
            (json!({"command": "x", "on_missing": "canary"}), "on_missing"),
        ];
        for (body, field) in cases {
            let e = CommandRequest::parse(&body, MAX).unwrap_err().to_string();
            assert!(e.starts_with(field), "{body}: {e}");
            assert!(!e.contains("canary"), "{body}: {e}");
        }
    }
}
