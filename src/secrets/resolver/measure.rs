//! How the resolver's events map onto the metrics vocabularies: a resolution onto an outcome
//! (hit, miss, stale, error), an upstream answer onto a status class. Pure functions, so the
//! mapping is tested without a server.

use super::{ResolveError, Resolved};
use crate::metrics::{LookupOutcome, StatusClass};
use crate::secrets::fetch::FetchError;
use crate::secrets::value::SecretValue;

/// The outcome of one resolution that was answered from the cache (`from_cache`) or by an
/// upstream request (started or joined).
pub(super) fn outcome(from_cache: bool, result: &Result<Resolved, ResolveError>) -> LookupOutcome {
    match result {
        Err(_) => LookupOutcome::Error,
        Ok(r) if r.stale => LookupOutcome::Stale,
        Ok(_) if from_cache => LookupOutcome::Hit,
        Ok(_) => LookupOutcome::Miss,
    }
}

/// The class of the upstream's answer to one request: the status when there was one (a
/// body refused for its size or a NUL byte came with a 2xx), `none` when no answer came
/// (connect error, timeout, refused address or URL).
pub(super) fn answer_class(result: &Result<Option<SecretValue>, FetchError>) -> StatusClass {
    match result {
        Ok(_) => StatusClass::Success,
        Err(FetchError::Status { status, .. }) => StatusClass::of(*status),
        Err(FetchError::TooLarge { .. } | FetchError::NulByte { .. }) => StatusClass::Success,
        Err(
            FetchError::Connect { .. }
            | FetchError::Transport { .. }
            | FetchError::Timeout { .. }
            | FetchError::Blocked { .. }
            | FetchError::InvalidUrl { .. },
        ) => StatusClass::None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::secrets::target::Target;
    use crate::secrets::value::SecretName;

    fn target() -> Target {
        Target::Secret(SecretName::parse("TOKEN").unwrap())
    }

    fn resolved(stale: bool) -> Result<Resolved, ResolveError> {
        Ok(Resolved { value: SecretValue::from_bytes(b"v".to_vec()), stale })
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(true, &resolved(false)), LookupOutcome::Hit);
        assert_eq!(outcome(false, &resolved(false)), LookupOutcome::Miss);
        assert_eq!(outcome(true, &resolved(true)), LookupOutcome::Stale);
        assert_eq!(outcome(false, &resolved(true)), LookupOutcome::Stale);
        let no_value = Ok(Resolved { value: None, stale: false });
        assert_eq!(outcome(true, &no_value), LookupOutcome::Hit, "no value is an answer too");
        let failed = Err(ResolveError::Internal(target()));
        assert_eq!(outcome(true, &failed), LookupOutcome::Error);
        assert_eq!(outcome(false, &failed), LookupOutcome::Error);
    }

    #[test]
    fn answer_classes() {
        let err = |e: FetchError| answer_class(&Err(e));
        assert_eq!(answer_class(&Ok(None)), StatusClass::Success);
        assert_eq!(err(FetchError::Status { target: target(), status: 404 }), StatusClass::ClientError);
        assert_eq!(err(FetchError::Status { target: target(), status: 503 }), StatusClass::ServerError);
        assert_eq!(err(FetchError::Status { target: target(), status: 302 }), StatusClass::Redirection);
        assert_eq!(err(FetchError::TooLarge { target: target(), limit: 1 }), StatusClass::Success);
        assert_eq!(err(FetchError::NulByte { target: target() }), StatusClass::Success);
        let none = [
            FetchError::Connect { target: target(), cause: "refused".into() },
            FetchError::Transport { target: target(), cause: "reset".into() },
            FetchError::Timeout { target: target(), after: Duration::from_secs(1) },
            FetchError::Blocked { target: target() },
            FetchError::InvalidUrl { target: target(), reason: "no host".into() },
        ];
        for e in none {
            assert_eq!(err(e), StatusClass::None);
        }
    }
}
