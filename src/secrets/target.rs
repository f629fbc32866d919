//! [`Target`]: what one upstream request to a settings (or other allowed) origin is for,
//! as errors and logs name it.
//!
//! Lookups fetch one secret; discovery fetches the list of secrets. Both go through the same
//! request path (policy, headers, session key, 401 retry, transport), and this type is the
//! one thing that differs in what they report: `lookup for secret GITHUB_TOKEN failed…` or
//! `lookup for the secret list failed…`. It never holds a URL, so it is safe to log.

use std::fmt;

use super::value::SecretName;

/// What an upstream request fetches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The value of one secret.
    Secret(SecretName),
    /// The list of secrets the settings API holds for this sandbox (discovery).
    SecretList,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(name) => write!(f, "secret {name}"),
            Self::SecretList => f.write_str("the secret list"),
        }
    }
}

impl From<SecretName> for Target {
    fn from(name: SecretName) -> Self {
        Self::Secret(name)
    }
}

impl From<&SecretName> for Target {
    fn from(name: &SecretName) -> Self {
        Self::Secret(name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_secret_or_the_list() {
        let name = SecretName::parse("GITHUB_TOKEN").unwrap();
        assert_eq!(Target::from(&name).to_string(), "secret GITHUB_TOKEN");
        assert_eq!(Target::SecretList.to_string(), "the secret list");
    }
}
