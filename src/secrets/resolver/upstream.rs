//! The one upstream request path, shared by lookups and discovery: the lookup policy
//! re-checked before every request, the bound on requests in flight, the headers (the
//! descriptor's, `env_headers`, and the session key set toward a settings origin), and the
//! retry after a 401 with a re-read key file.
//!
//! What a request is for is a [`Request`]: one secret's descriptor, or the secret list.
//! The HTTP mechanics of the GET (deadline, retries, redirects, address guard) are the
//! [`Fetcher`]'s; caching, single-flight and stale-if-error are the resolver's.
//!
//! Invariant: the session key goes only to a settings origin, under
//! [`SANDBOX_PATH_PREFIX`], and `env_headers` only to a settings origin, whatever a
//! descriptor says; both are decided by [`request_headers`], a pure function.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use url::Url;
use zeroize::Zeroizing;

use super::{ResolveError, measure};
use crate::mask::MaskSet;
use crate::metrics::{LookupMetrics, UpstreamTarget};
use crate::secrets::fetch::{FetchError, Fetcher};
use crate::secrets::origin::{OriginKind, OriginPolicy};
use crate::secrets::session_key::SessionKey;
use crate::secrets::source::LookupSecret;
use crate::secrets::target::Target;
use crate::secrets::value::{SecretName, SecretValue};

/// Paths under which a settings origin gets the sidecar's own session key.
pub(super) const SANDBOX_PATH_PREFIX: &str = "/api/v1/sandboxes/";
/// The header carrying the session key toward settings origins.
const SESSION_KEY_HEADER: &str = "x-session-api-key";

/// What one upstream request is for, and so where it goes and which headers of its own it
/// carries.
#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    /// A LookupSecret's value: its URL, headers and `env_headers`.
    Secret { name: &'a SecretName, lookup: &'a LookupSecret },
    /// Discovery's list of secrets: a settings URL, no headers of its own.
    SecretList { url: &'a Url },
}

impl Request<'_> {
    fn target(&self) -> Target {
        match self {
            Self::Secret { name, .. } => Target::Secret((*name).clone()),
            Self::SecretList { .. } => Target::SecretList,
        }
    }

    fn kind(&self) -> UpstreamTarget {
        match self {
            Self::Secret { .. } => UpstreamTarget::Secret,
            Self::SecretList { .. } => UpstreamTarget::SecretList,
        }
    }

    fn url(&self) -> &Url {
        match self {
            Self::Secret { lookup, .. } => &lookup.url,
            Self::SecretList { url } => url,
        }
    }

    fn headers(&self) -> &[(String, SecretString)] {
        match self {
            Self::Secret { lookup, .. } => &lookup.headers,
            Self::SecretList { .. } => &[],
        }
    }

    fn env_headers(&self) -> &[(String, String)] {
        match self {
            Self::Secret { lookup, .. } => &lookup.env_headers,
            Self::SecretList { .. } => &[],
        }
    }
}

/// Makes upstream requests for the resolver and for discovery.
pub(super) struct Upstream {
    fetcher: Fetcher,
    policy: OriginPolicy,
    session_key: Arc<SessionKey>,
    /// Values of the variables `env_headers` may read, captured at start.
    env_headers: HashMap<String, SecretString>,
    /// The global mask set, which a re-read session key joins.
    masks: Arc<MaskSet>,
    /// `--max-upstream`: requests in flight, lookups and discovery together.
    slots: Semaphore,
    /// Where requests are counted, with their latency and the class of the answer.
    metrics: LookupMetrics,
}

impl Upstream {
    pub(super) fn new(
        fetcher: Fetcher,
        policy: OriginPolicy,
        session_key: Arc<SessionKey>,
        env_headers: HashMap<String, SecretString>,
        masks: Arc<MaskSet>,
        max_in_flight: usize,
        metrics: LookupMetrics,
    ) -> Self {
        let slots = Semaphore::new(max_in_flight.max(1));
        Self { fetcher, policy, session_key, env_headers, masks, slots, metrics }
    }

    /// GETs what `request` is for; `Ok(None)` when the body is empty (no value).
    pub(super) async fn get(&self, request: Request<'_>) -> Result<Option<SecretValue>, ResolveError> {
        let target = request.target();
        let _slot = self.slots.acquire().await.map_err(|_| ResolveError::Internal(target.clone()))?;
        let url = request.url();
        let (_, kind) = self
            .policy
            .check(url)
            .map_err(|e| ResolveError::Refused { target: target.clone(), reason: e.to_string() })?;
        let headers = self.headers(&request, &target, kind)?;
        match self.fetch(&request, target.clone(), headers).await {
            Err(e)
                if e.status() == Some(401) && kind == OriginKind::Settings && self.session_key.reload() =>
            {
                tracing::info!(lookup = %target, "settings origin answered 401; retrying once with the new session key");
                self.remember_session_key().await;
                let headers = self.headers(&request, &target, kind)?;
                Ok(self.fetch(&request, target, headers).await?)
            }
            other => Ok(other?),
        }
    }

    /// One GET through the fetcher, counted with its latency and the class of its answer.
    async fn fetch(
        &self,
        request: &Request<'_>,
        target: Target,
        headers: HeaderMap,
    ) -> Result<Option<SecretValue>, FetchError> {
        let started = Instant::now();
        let result = self.fetcher.fetch(target, request.url(), headers).await;
        self.metrics.upstream(request.kind(), measure::answer_class(&result), started.elapsed());
        result
    }

    fn headers(
        &self,
        request: &Request<'_>,
        target: &Target,
        kind: OriginKind,
    ) -> Result<HeaderMap, ResolveError> {
        let key = self.session_key.current();
        request_headers(request, kind, &self.env_headers, key.as_ref())
            .map_err(|reason| ResolveError::Refused { target: target.clone(), reason: reason.to_owned() })
    }

    /// Masks the session key just read from `--session-key-file`, like the keys held at start.
    async fn remember_session_key(&self) {
        let Some(key) = self.session_key.current() else { return };
        let bytes = key.expose_secret().as_bytes();
        if self.masks.is_maskable(bytes) {
            let item = vec![("sidecar/session-key".to_owned(), Zeroizing::new(bytes.to_vec()))];
            if self.masks.extend_async(item).await.is_err() {
                tracing::error!("cannot mask the new session key");
            }
        }
    }
}

/// True when a request to `url`, an origin of `kind`, carries the sidecar's session key.
pub(crate) fn carries_session_key(kind: OriginKind, url: &Url) -> bool {
    kind == OriginKind::Settings && url.path().starts_with(SANDBOX_PATH_PREFIX)
}

/// The request headers, all marked sensitive: the request's own, then (toward a settings
/// origin only) its `env_headers` read from `env`, then the session key, which replaces a
/// descriptor's stale copy. The error says which header could not be built, without it.
fn request_headers(
    request: &Request<'_>,
    kind: OriginKind,
    env: &HashMap<String, SecretString>,
    session_key: Option<&SecretString>,
) -> Result<HeaderMap, &'static str> {
    let mut map = HeaderMap::new();
    let mut put = |header: &str, value: &str| -> Result<(), &'static str> {
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| "invalid header name")?;
        let mut value = HeaderValue::from_str(value).map_err(|_| "invalid header value")?;
        value.set_sensitive(true);
        map.insert(name, value);
        Ok(())
    };
    for (header, value) in request.headers() {
        put(header, value.expose_secret())?;
    }
    if kind == OriginKind::Settings {
        for (header, var) in request.env_headers() {
            if let Some(value) = env.get(var) {
                put(header, value.expose_secret())?;
            }
        }
    }
    if carries_session_key(kind, request.url()) {
        if let Some(key) = session_key {
            put(SESSION_KEY_HEADER, key.expose_secret())?;
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::origin::Origin;

    const KEY: &str = "the-sidecar-session-key";

    fn lookup(url: &str, kind: OriginKind) -> LookupSecret {
        let url = Url::parse(url).unwrap();
        LookupSecret {
            origin: Origin::of(&url).unwrap(),
            url,
            origin_kind: kind,
            headers: vec![
                ("X-Session-API-Key".into(), "stale-copy".to_owned().into()),
                ("X-Other".into(), "descriptor".to_owned().into()),
            ],
            env_headers: vec![("X-From-Env".into(), "SESSION_API_KEY".into())],
            ttl_seconds: None,
            description: None,
            egress: None,
        }
    }

    fn env() -> HashMap<String, SecretString> {
        HashMap::from([("SESSION_API_KEY".to_owned(), "env-value".to_owned().into())])
    }

    /// The headers a lookup of `url` gets toward an origin of `kind`, as (name, value) text.
    fn sent(url: &str, kind: OriginKind) -> Vec<(String, String)> {
        let name = SecretName::parse("TOKEN").unwrap();
        let l = lookup(url, kind);
        let key = SecretString::from(KEY.to_owned());
        let map =
            request_headers(&Request::Secret { name: &name, lookup: &l }, kind, &env(), Some(&key)).unwrap();
        assert!(map.values().all(HeaderValue::is_sensitive), "every header is marked sensitive");
        let mut out: Vec<_> =
            map.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        out.sort();
        out
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_session_key_replaces_a_stale_copy_toward_settings_sandbox_paths() {
        for url in [
            "https://app.example.dev/api/v1/sandboxes/sb1/settings/secrets/TOKEN",
            "https://app.example.dev/api/v1/sandboxes/sb1/settings/secrets",
            "https://app.example.dev/api/v1/sandboxes/x?token=1",
        ] {
            let h = sent(url, OriginKind::Settings);
            assert_eq!(header(&h, "x-session-api-key"), Some(KEY), "{url}");
            assert_eq!(h.iter().filter(|(n, _)| n == "x-session-api-key").count(), 1, "replaced, not added");
        }
    }

    #[test]
    fn the_session_key_is_never_set_elsewhere() {
        let settings_elsewhere = [
            "https://app.example.dev/api/v1/sandboxes",
            "https://app.example.dev/api/v1/sandboxesX/sb1",
            "https://app.example.dev/api/v2/sandboxes/sb1",
            "https://app.example.dev/x/api/v1/sandboxes/sb1",
            "https://app.example.dev/api/v1/sandboxes/../secrets",
            "https://app.example.dev/api/v1/sandboxes/%2e%2e/secrets",
            "https://app.example.dev/API/V1/SANDBOXES/sb1",
        ];
        for url in settings_elsewhere {
            let h = sent(url, OriginKind::Settings);
            assert_eq!(
                header(&h, "x-session-api-key"),
                Some("stale-copy"),
                "{url}: the descriptor's own header"
            );
        }
        let other =
            sent("https://other.example/api/v1/sandboxes/sb1/settings/secrets/TOKEN", OriginKind::Other);
        assert_eq!(header(&other, "x-session-api-key"), Some("stale-copy"));
        assert!(other.iter().all(|(_, v)| v != KEY), "the sidecar's key never goes to another origin");
        assert!(!carries_session_key(
            OriginKind::Other,
            &Url::parse("https://o/api/v1/sandboxes/s").unwrap()
        ));
    }

    #[test]
    fn no_key_configured_means_no_key_header_added() {
        let url = Url::parse("https://app.example.dev/api/v1/sandboxes/sb1/settings/secrets").unwrap();
        let list =
            request_headers(&Request::SecretList { url: &url }, OriginKind::Settings, &env(), None).unwrap();
        assert!(list.is_empty());
    }

    #[test]
    fn env_headers_only_toward_settings_origins() {
        let url = "https://app.example.dev/api/v1/sandboxes/sb1/settings/secrets/TOKEN";
        assert_eq!(header(&sent(url, OriginKind::Settings), "x-from-env"), Some("env-value"));
        assert_eq!(header(&sent(url, OriginKind::Other), "x-from-env"), None);
        assert_eq!(header(&sent(url, OriginKind::Other), "x-other"), Some("descriptor"));
        // A variable not captured at start (not on --allow-env-header) sends nothing.
        let name = SecretName::parse("TOKEN").unwrap();
        let l = lookup(url, OriginKind::Settings);
        let map = request_headers(
            &Request::Secret { name: &name, lookup: &l },
            OriginKind::Settings,
            &HashMap::new(),
            None,
        )
        .unwrap();
        assert!(map.get("x-from-env").is_none());
    }

    #[test]
    fn the_secret_list_carries_only_the_session_key() {
        let url = Url::parse("https://app.example.dev/api/v1/sandboxes/sb1/settings/secrets").unwrap();
        let key = SecretString::from(KEY.to_owned());
        let list = Request::SecretList { url: &url };
        assert_eq!(list.target(), Target::SecretList);
        let map = request_headers(&list, OriginKind::Settings, &env(), Some(&key)).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(SESSION_KEY_HEADER).unwrap(), KEY);
        let elsewhere = request_headers(&list, OriginKind::Other, &env(), Some(&key)).unwrap();
        assert!(elsewhere.is_empty());
    }

    #[test]
    fn bad_header_bytes_are_refused_without_the_value() {
        let name = SecretName::parse("TOKEN").unwrap();
        let mut l = lookup("https://other.example/x", OriginKind::Other);
        l.headers = vec![("X-Bad".into(), "line\nbreak".to_owned().into())];
        let err =
            request_headers(&Request::Secret { name: &name, lookup: &l }, OriginKind::Other, &env(), None)
                .unwrap_err();
        assert_eq!(err, "invalid header value");
    }
}
