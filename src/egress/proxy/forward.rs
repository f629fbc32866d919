//! Requests the proxy forwards itself: those inside an intercepted tunnel (substituted,
//! reflected) and absolute-form `http://` requests (forwarded unchanged, audited).
//!
//! Inside a tunnel the only upstream a request can reach is the tunnel's own authority, over a
//! connection verified for it; a `Host` naming anything else is answered 421 before any
//! substitution happens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use tokio::sync::OwnedSemaphorePermit;
use zeroize::Zeroizing;

use super::body::{Filtered, ProxyBody, boxed};
use super::idle::IdleBody;
use super::reflect::Reflector;
use super::scan::{Auditor, PlaceholderScanner};
use super::substitute::{self, Sighting};
use super::upstream::ConnectError;
use super::{Shared, auth, decode, respond, tunnel};
use crate::egress::grant::Grant;

/// One intercepted tunnel: its authority, the presenting command's grants, and what is
/// derived from them once per tunnel.
pub(super) struct Tunnel {
    /// The credential the tunnel was opened with: it must still be live for each request, so
    /// a daemon that outlives its command cannot keep spending through an open tunnel.
    token: Zeroizing<Vec<u8>>,
    host: String,
    port: u16,
    grants: Arc<[Grant]>,
    /// Indices of the grants bound to `host`: the only ones substituted here.
    bound: Vec<usize>,
    reflector: Option<Arc<Reflector>>,
    auditor: Auditor,
}

impl Tunnel {
    pub(super) fn new(
        token: Zeroizing<Vec<u8>>,
        host: String,
        port: u16,
        grants: Arc<[Grant]>,
        shared: &Shared,
    ) -> Self {
        let bound =
            grants.iter().enumerate().filter(|(_, g)| g.binding.covers(&host)).map(|(i, _)| i).collect();
        // Every value the command could have spent is swapped back, not only this host's.
        let reflector = Reflector::new(&grants);
        let auditor = Auditor::new(&host, Arc::clone(&shared.stats));
        Self { token, host, port, grants, bound, reflector, auditor }
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Every request on a client's connection to the proxy.
pub(super) async fn outer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some((token, grants)) = auth::credential(req.headers(), &shared.grants) else {
        shared.stats.auth_failures.inc();
        return Ok(respond::proxy_auth_required());
    };
    if req.method() == Method::CONNECT {
        return Ok(tunnel::connect(req, token, grants, shared, permit).await);
    }
    Ok(plain(req, grants, &shared).await)
}

/// An absolute-form request: forwarded as it is (no substitution over plain http), every
/// placeholder in it reported.
async fn plain(req: Request<Incoming>, grants: Arc<[Grant]>, shared: &Shared) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    if uri.scheme() != Some(&Scheme::HTTP) || uri.authority().is_none() {
        return respond::status(
            StatusCode::BAD_REQUEST,
            "only absolute http:// requests and CONNECT are proxied",
        );
    }
    if wants_upgrade(req.headers()) {
        return respond::status(StatusCode::NOT_IMPLEMENTED, "protocol upgrades are not proxied");
    }
    let host = uri.authority().map(|a| tunnel::target(a).0).unwrap_or_default();
    let auditor = Auditor::new(&host, Arc::clone(&shared.stats));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let pq = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    report(&auditor, substitute::sightings(pq, &parts.headers, &grants));
    parts.version = Version::HTTP_11;
    let body = audited(body, &grants, &auditor);
    let response = match answer(Request::from_parts(parts, body), &host, shared).await {
        Ok(r) => r,
        Err(failed) => return failed,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, boxed(IdleBody::new(body, shared.config.upstream_idle_timeout)))
}

/// A request inside an intercepted tunnel.
pub(super) async fn intercepted(
    req: Request<Incoming>,
    tunnel: Arc<Tunnel>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, Infallible> {
    if shared.grants.lookup(&tunnel.token).is_none() {
        shared.stats.auth_failures.inc();
        return Ok(respond::proxy_auth_required());
    }
    if req.method() == Method::CONNECT {
        return Ok(respond::status(StatusCode::METHOD_NOT_ALLOWED, "CONNECT inside a tunnel"));
    }
    if wants_upgrade(req.headers()) {
        return Ok(respond::status(StatusCode::NOT_IMPLEMENTED, "protocol upgrades are not proxied"));
    }
    match routed_to(&req) {
        Some((host, port)) if host == tunnel.host && port == tunnel.port => {}
        Some(_) => {
            return Ok(respond::status(
                StatusCode::MISDIRECTED_REQUEST,
                "Host differs from the CONNECT authority",
            ));
        }
        None => return Ok(respond::status(StatusCode::BAD_REQUEST, "request without Host")),
    }
    let head_request = req.method() == Method::HEAD;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // Reflection scans plain bytes; ask for them.
    parts.headers.remove(header::ACCEPT_ENCODING);

    let bound: Vec<&Grant> = tunnel.bound.iter().map(|&i| &tunnel.grants[i]).collect();
    let mut count = substitute::headers(&mut parts.headers, &bound);
    let mut pq = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    if let Some((path, query)) = pq.split_once('?') {
        if let Some((new_query, n)) = substitute::query(query, &bound) {
            pq = format!("{path}?{}", new_query.as_str());
            count += n;
        }
    }
    report(&tunnel.auditor, substitute::sightings(&pq, &parts.headers, &tunnel.grants));
    shared.stats.substitutions.inc_by(count as u64);

    let uri = Uri::builder().scheme(Scheme::HTTPS).authority(tunnel.authority()).path_and_query(pq).build();
    parts.uri = match uri {
        Ok(uri) => uri,
        Err(_) => return Ok(respond::status(StatusCode::BAD_REQUEST, "request target not usable")),
    };
    parts.version = Version::HTTP_11;
    let body = audited(body, &tunnel.grants, &tunnel.auditor);
    let response = match answer(Request::from_parts(parts, body), &tunnel.host, &shared).await {
        Ok(r) => r,
        Err(failed) => return Ok(failed),
    };
    Ok(reflected(response, &tunnel, head_request, shared.config.upstream_idle_timeout))
}

/// An answer from a bound host, decoded if compressed, with every encoding of a value swapped
/// for the placeholder's, in headers and body.
fn reflected(
    response: Response<Incoming>,
    tunnel: &Tunnel,
    head_request: bool,
    idle: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let no_body = head_request
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let mut body = boxed(IdleBody::new(body, idle));
    if !no_body {
        body = match decode::decode(&mut parts.headers, body) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(%error, host = %tunnel.host, "answer refused");
                return respond::status(
                    StatusCode::BAD_GATEWAY,
                    "upstream answer in an encoding the proxy cannot scan",
                );
            }
        };
    }
    let Some(reflector) = &tunnel.reflector else { return Response::from_parts(parts, body) };
    reflect_headers(&mut parts.headers, reflector);
    if no_body {
        return Response::from_parts(parts, body);
    }
    if reflector.changes_length() {
        // The length may change: hyper frames the answer as chunked instead.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, boxed(Filtered::new(body, reflector.stream())))
}

fn reflect_headers(headers: &mut HeaderMap, reflector: &Reflector) {
    let mut names: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| reflector.replace_all(v.as_bytes()).is_some())
        .map(|(n, _)| n.clone())
        .collect();
    names.dedup();
    for name in names {
        let values: Vec<Vec<u8>> = headers
            .get_all(&name)
            .iter()
            .map(|v| reflector.replace_all(v.as_bytes()).unwrap_or_else(|| v.as_bytes().to_vec()))
            .collect();
        headers.remove(&name);
        for v in values {
            // A swapped value is as valid as the original: same bytes but for encodings.
            if let Ok(v) = http::HeaderValue::from_bytes(&v) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// The request body, scanned for placeholders as it streams (never rewritten).
fn audited(body: Incoming, grants: &[Grant], auditor: &Auditor) -> ProxyBody {
    if body.is_end_stream() {
        return boxed(body);
    }
    match PlaceholderScanner::new(grants, auditor.clone()) {
        Some(scanner) => boxed(Filtered::new(body, scanner)),
        None => boxed(body),
    }
}

fn report(auditor: &Auditor, sightings: Vec<Sighting>) {
    for sighting in &sightings {
        auditor.report(sighting);
    }
}

/// The upstream's answer head, or the response the client gets instead: 502 when it could not
/// be reached or did not verify, 504 when it sent no head within the idle timeout.
async fn answer(
    req: Request<ProxyBody>,
    host: &str,
    shared: &Shared,
) -> Result<Response<Incoming>, Response<ProxyBody>> {
    let after = shared.config.upstream_idle_timeout;
    match tokio::time::timeout(after, shared.client.request(req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(error)) => Err(upstream_failed(&error, shared)),
        Err(_) => {
            tracing::warn!(%host, ?after, "upstream sent no answer in time");
            Err(respond::status(StatusCode::GATEWAY_TIMEOUT, "upstream sent no answer in time"))
        }
    }
}

/// 502 for an upstream that could not be reached or did not verify; the value was not sent.
fn upstream_failed(error: &hyper_util::client::legacy::Error, shared: &Shared) -> Response<ProxyBody> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut connect = None;
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            connect = Some(c);
            break;
        }
        source = e.source();
    }
    match connect {
        Some(c) if c.is_tls() => {
            shared.stats.upstream_tls_failures.inc();
            tracing::warn!(error = %c, "upstream TLS not verified; request not sent");
            respond::status(StatusCode::BAD_GATEWAY, "upstream certificate did not verify; request not sent")
        }
        Some(c) => {
            tracing::warn!(error = %c, "upstream unreachable");
            respond::status(StatusCode::BAD_GATEWAY, "upstream unreachable")
        }
        None => {
            tracing::warn!(%error, "upstream request failed");
            respond::status(StatusCode::BAD_GATEWAY, "upstream request failed")
        }
    }
}

/// The host and port a request inside a tunnel is for: its absolute-form authority if it has
/// one (which must then agree with `Host`), else `Host`.
fn routed_to<B>(req: &Request<B>) -> Option<(String, u16)> {
    let from_host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<Authority>().ok())
        .map(|a| tunnel::target(&a));
    match (req.uri().authority().map(tunnel::target), from_host) {
        (Some(uri), Some(host)) if uri != host => Some((String::new(), 0)),
        (Some(uri), _) => Some(uri),
        (None, host) => host,
    }
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// Removes the headers that describe one hop (RFC 9110 §7.6.1), including those `Connection`
/// lists, and the proxy credential.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn routing_by_host_and_authority() {
        assert_eq!(routed_to(&req("/x", Some("API.test.example"))), Some(("api.test.example".into(), 443)));
        assert_eq!(
            routed_to(&req("/x", Some("api.test.example:8443"))),
            Some(("api.test.example".into(), 8443))
        );
        assert_eq!(routed_to(&req("/x", None)), None);
        assert_eq!(routed_to(&req("https://a.example/x", None)), Some(("a.example".into(), 443)));
        assert_eq!(routed_to(&req("https://a.example/x", Some("b.example"))), Some((String::new(), 0)));
        assert_eq!(routed_to(&req("/x", Some("bad host"))), None);
    }

    #[test]
    fn hop_by_hop_and_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        assert!(!wants_upgrade(&h));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        assert!(wants_upgrade(&h));
    }
}
