//! The proxy credential: `Proxy-Authorization: Basic base64(cmd:<token>)`, looked up among the
//! live credentials. A missing, malformed, unknown or revoked credential is the same answer
//! (407), so a client learns nothing about which tokens were ever live.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;
use zeroize::Zeroizing;

use crate::egress::grant::{Credential, Grant, Grants};

/// A presented credential token.
pub(crate) type Token = Zeroizing<Vec<u8>>;

/// The token of a `Proxy-Authorization` value, if it is Basic credentials for the user
/// [`Credential::USER`].
#[doc(hidden)]
pub fn token(header_value: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let value = header_value.trim_ascii();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(value[6..].trim_ascii()).ok()?);
    let colon = decoded.iter().position(|b| *b == b':')?;
    if &decoded[..colon] != Credential::USER.as_bytes() || colon + 1 == decoded.len() {
        return None;
    }
    Some(Zeroizing::new(decoded[colon + 1..].to_vec()))
}

/// The token and grants of the live credential a request presents, if any. The token is kept
/// by an intercepted tunnel, which checks it is still live before each request.
pub(crate) fn credential(headers: &HeaderMap, grants: &Grants) -> Option<(Token, Arc<[Grant]>)> {
    let value = headers.get(PROXY_AUTHORIZATION)?;
    let token = token(value.as_bytes())?;
    let live = grants.lookup(&token)?;
    Some((token, live))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cmd_basic_only() {
        let ok = format!("Basic {}", STANDARD.encode("cmd:abc123"));
        assert_eq!(token(ok.as_bytes()).unwrap().as_slice(), b"abc123");
        assert_eq!(
            token(format!("basic  {} ", STANDARD.encode("cmd:a:b")).as_bytes()).unwrap().as_slice(),
            b"a:b"
        );
        for bad in [
            "".to_string(),
            "Basic".into(),
            format!("Bearer {}", STANDARD.encode("cmd:abc")),
            format!("Basic {}", STANDARD.encode("other:abc")),
            format!("Basic {}", STANDARD.encode("cmd:")),
            format!("Basic {}", STANDARD.encode("cmd")),
            "Basic !!!".into(),
        ] {
            assert!(token(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
