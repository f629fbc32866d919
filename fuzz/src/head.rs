//! The egress proxy's request-head property: a hostile head (method, target, headers) built
//! from arbitrary bytes goes through the same steps an intercepted request does (parse,
//! substitute headers and query for the grants bound to the host, report sightings), and
//! then:
//!
//! - nothing panics;
//! - a real value appears only where its binding allows (the `Authorization` credential of
//!   Bearer/`token`, a field of Basic, a header or query parameter the binding names), only
//!   when the binding covers the host, and only in place of exactly its placeholder;
//! - every other field keeps its bytes, placeholders included, and the count of replacements
//!   is the count of changed fields;
//! - every placeholder left in a header or the path is reported as a sighting.
//!
//! This file is shared: the fuzz crate's `egress_head` target runs it, and the main crate's
//! regular tests include it by path (`tests/it/properties.rs`) to run it as a proptest. It
//! uses only crates both have.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use secrecy::{ExposeSecret, SecretString};
use secret_sidecar::egress::binding::{Binding, HostPattern};
use secret_sidecar::egress::grant::Grant;
use secret_sidecar::egress::proxy::substitute::{self, Place};

/// Placeholders: distinct, with a byte percent-encoding touches (`_`).
const PLACEHOLDERS: [&str; 3] =
    ["ph_PLACEHOLDER0aaaaaaaaaaaaaaaa", "ph_PLACEHOLDER1bbbbbbbbbbbbbbbb", "ph_PLACEHOLDER2cccccccccccccccc"];
/// Real values: valid header bytes, no `:` or whitespace (so a Basic field is unambiguous),
/// full of bytes that percent- and base64-encoding change.
const VALUES: [&str; 3] = ["REAL0/+=&%~zq9value0", "REAL1?#@!$zq9value1", "REAL2;,'()*zq9value2"];
const HOSTS: [&str; 5] =
    ["api.test.example", "API.Test.Example.", "x.test.example", "other.example", "test.example"];
const HEADER_NAMES: [&str; 7] =
    ["authorization", "x-api-key", "x-token", "x-other", "proxy-authorization", "cookie", "X-Api-Key"];
const BOUND_HEADERS: [&str; 3] = ["x-api-key", "x-token", "authorization"];
const BOUND_QUERY: [&str; 3] = ["key", "token", "k y"];
const METHODS: [&str; 5] = ["GET", "POST", "HEAD", "PUT", "BREW"];
/// Pieces the head's strings are made of, so placeholders and their surroundings are common.
const PIECES: [&str; 20] = [
    PLACEHOLDERS[0],
    PLACEHOLDERS[1],
    PLACEHOLDERS[2],
    "ph%5FPLACEHOLDER0aaaaaaaaaaaaaaaa",
    " ",
    "\t",
    "Bearer ",
    "token ",
    "Basic ",
    "=",
    "&",
    "?",
    "/",
    "%",
    "+",
    ":",
    "key=",
    "token=",
    "k+y=",
    "k%20y=",
];

/// Reads choices from the fuzzer's bytes; past the end every choice is 0.
struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else { return 0 };
        self.data = rest;
        b
    }

    fn pick<'t>(&mut self, table: &[&'t str]) -> &'t str {
        table[usize::from(self.byte()) % table.len()]
    }

    /// A string of up to 7 pieces: table pieces, or printable ASCII bytes as they come.
    fn text(&mut self) -> String {
        let mut out = String::new();
        for _ in 0..self.byte() % 8 {
            let b = self.byte();
            match PIECES.get(usize::from(b)) {
                Some(piece) => out.push_str(piece),
                None if (0x20..0x7f).contains(&b) => out.push(char::from(b)),
                None => {}
            }
        }
        out
    }
}

/// One decoded case: the host, the grants, and the head.
struct Case {
    host: &'static str,
    grants: Vec<Grant>,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
}

fn decode(data: &[u8]) -> Case {
    let mut c = Choices { data };
    let host = c.pick(&HOSTS);
    let grants = (0..1 + c.byte() % 3)
        .map(|i| {
            let i = usize::from(i);
            let (hosts, headers, query) = (c.byte(), c.byte(), c.byte());
            let mut patterns = Vec::new();
            if hosts & 1 != 0 {
                patterns.push(HostPattern::Exact("api.test.example".into()));
            }
            if hosts & 2 != 0 {
                patterns.push(HostPattern::Below("test.example".into()));
            }
            let pick = |mask: u8, table: &[&str]| -> Vec<String> {
                (0..table.len()).filter(|b| mask & (1 << b) != 0).map(|b| table[b].to_owned()).collect()
            };
            Grant {
                name: format!("SECRET_{i}"),
                placeholder: SecretString::from(PLACEHOLDERS[i]),
                value: SecretString::from(VALUES[i]),
                binding: Arc::new(Binding {
                    hosts: patterns,
                    headers: pick(headers, &BOUND_HEADERS)
                        .iter()
                        .map(|h| HeaderName::from_bytes(h.as_bytes()).expect("a valid header name"))
                        .collect(),
                    query: pick(query, &BOUND_QUERY),
                }),
            }
        })
        .collect();
    let method = c.pick(&METHODS);
    let mut target = format!("/{}", c.text());
    if c.byte() % 2 == 1 {
        target.push('?');
        target.push_str(&c.text());
    }
    let headers = (0..c.byte() % 6)
        .map(|_| {
            let name = c.pick(&HEADER_NAMES);
            let value = match c.byte() % 4 {
                0 => c.text(),
                1 => format!("Bearer {}", c.text()),
                2 => {
                    let (user, pass) = (c.text(), c.text());
                    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
                }
                _ => format!(" {} ", c.text()),
            };
            (name, value)
        })
        .collect();
    Case { host, grants, method, target, headers }
}

/// The property; panics (naming what broke, never a value) when it does not hold. Returns how
/// many placeholders were replaced (0 for a head that never reached substitution).
pub fn egress_head(data: &[u8]) -> usize {
    let case = decode(data);
    let mut builder = Request::builder().method(case.method).uri(case.target.as_str());
    for (name, value) in &case.headers {
        builder = builder.header(*name, value.as_str());
    }
    // A head hyper would refuse never reaches substitution.
    let Ok(request) = builder.body(()) else { return 0 };
    let (parts, ()) = request.into_parts();
    assert!(parts.method == Method::from_bytes(case.method.as_bytes()).expect("a valid method"));
    let pq_in = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    if leaks_already(&pq_in, &parts.headers) {
        return 0;
    }

    // What the proxy does with a request inside an intercepted tunnel to `host`.
    let bound: Vec<&Grant> = case.grants.iter().filter(|g| g.binding.covers(case.host)).collect();
    let mut headers = parts.headers.clone();
    let mut count = substitute::headers(&mut headers, &bound);
    let mut pq = pq_in.clone();
    if let Some((path, query)) = pq_in.split_once('?') {
        if let Some((new_query, n)) = substitute::query(query, &bound) {
            pq = format!("{path}?{}", new_query.as_str());
            count += n;
        }
    }
    let seen = substitute::sightings(&pq, &headers, &case.grants);

    let changed = check_headers(&parts.headers, &headers, &bound) + check_target(&pq_in, &pq, &bound);
    assert!(changed == count, "the substitution count is not the count of changed fields");
    for g in &case.grants {
        let needle = g.placeholder.expose_secret().as_bytes();
        for (name, v) in &headers {
            if contains(v.as_bytes(), needle) {
                let place = Place::Header(name.clone());
                assert!(
                    seen.iter().any(|s| s.name == g.name && s.place == place),
                    "a placeholder left in a header is not reported"
                );
            }
        }
        let path = pq.split_once('?').map_or(pq.as_str(), |(p, _)| p);
        if contains(path.as_bytes(), needle) {
            assert!(
                seen.iter().any(|s| s.name == g.name && s.place == Place::Path),
                "a placeholder left in the path is not reported"
            );
        }
    }
    count
}

/// True when the input already holds a real value somewhere (then where it shows up later
/// says nothing about substitution).
fn leaks_already(pq: &str, headers: &HeaderMap) -> bool {
    let mut places = vec![pq.as_bytes().to_vec(), percent_decode(pq.as_bytes())];
    for v in headers.values() {
        places.push(v.as_bytes().to_vec());
        if let Some((_, decoded)) = basic(v.as_bytes()) {
            places.push(decoded);
        }
    }
    VALUES.iter().any(|v| places.iter().any(|p| contains(p, v.as_bytes())))
}

/// Compares each header before and after; returns how many values changed, and panics on a
/// change the bindings do not allow.
fn check_headers(before: &HeaderMap, after: &HeaderMap, bound: &[&Grant]) -> usize {
    let mut changed = 0;
    assert!(before.keys_len() == after.keys_len(), "the set of header names changed");
    for name in before.keys() {
        let old: Vec<&HeaderValue> = before.get_all(name).iter().collect();
        let new: Vec<&HeaderValue> = after.get_all(name).iter().collect();
        assert!(old.len() == new.len(), "a header gained or lost values");
        for (o, n) in old.iter().zip(&new) {
            if o.as_bytes() == n.as_bytes() {
                continue;
            }
            assert!(n.is_sensitive(), "a rewritten header is not marked sensitive");
            changed += if *name == header::AUTHORIZATION {
                authorization_change(o.as_bytes(), n.as_bytes(), bound)
            } else {
                let allowed = bound.iter().any(|g| {
                    g.binding.headers.contains(name)
                        && is_placeholder(o.as_bytes(), g)
                        && n.as_bytes() == value(g)
                });
                assert!(allowed, "a header changed that no bound binding names, or not into its value");
                1
            };
        }
    }
    changed
}

/// How many fields an `Authorization` rewrite replaced; panics unless each replaced field was
/// exactly a bound grant's placeholder and became its value.
fn authorization_change(old: &[u8], new: &[u8], bound: &[&Grant]) -> usize {
    let trimmed = old.trim_ascii();
    let split = trimmed.iter().position(|b| *b == b' ' || *b == b'\t').expect("a changed value has a scheme");
    let (scheme, credential) = (&trimmed[..split], trimmed[split..].trim_ascii());
    if scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token") {
        let ok = bound
            .iter()
            .any(|g| is_placeholder(credential, g) && new == [scheme, b" ", value(g)].concat().as_slice());
        assert!(ok, "a Bearer/token credential changed into something but its value");
        return 1;
    }
    assert!(
        scheme.eq_ignore_ascii_case(b"basic"),
        "an Authorization scheme other than Bearer/token/Basic changed"
    );
    let (_, plain_old) = basic(old).expect("changed Basic credentials decode");
    let (new_scheme, plain_new) = basic(new).expect("rewritten Basic credentials decode");
    assert!(new_scheme == scheme, "the Basic scheme's spelling changed");
    let fields = |p: &[u8]| {
        let colon = p.iter().position(|b| *b == b':').expect("Basic credentials have a colon");
        (p[..colon].to_vec(), p[colon + 1..].to_vec())
    };
    let ((ou, op), (nu, np)) = (fields(&plain_old), fields(&plain_new));
    let mut replaced = 0;
    for (o, n) in [(ou, nu), (op, np)] {
        if o == n {
            continue;
        }
        let ok = bound.iter().any(|g| is_placeholder(&o, g) && n == value(g));
        assert!(ok, "a Basic field changed into something but its value");
        replaced += 1;
    }
    assert!(replaced > 0, "Basic credentials were re-encoded with no field replaced");
    replaced
}

/// Compares the request target before and after; returns how many query values changed.
fn check_target(before: &str, after: &str, bound: &[&Grant]) -> usize {
    let (path_old, query_old) = before.split_once('?').map_or((before, None), |(p, q)| (p, Some(q)));
    let (path_new, query_new) = after.split_once('?').map_or((after, None), |(p, q)| (p, Some(q)));
    assert!(path_old == path_new, "the path changed");
    let (Some(query_old), Some(query_new)) = (query_old, query_new) else {
        assert!(query_old.is_none() && query_new.is_none(), "a query appeared or vanished");
        return 0;
    };
    let (old, new): (Vec<&str>, Vec<&str>) = (query_old.split('&').collect(), query_new.split('&').collect());
    assert!(old.len() == new.len(), "the query gained or lost parameters");
    let mut changed = 0;
    for (o, n) in old.iter().zip(&new) {
        if o == n {
            continue;
        }
        let ((on, ov), (nn, nv)) = (
            o.split_once('=').expect("a changed parameter has a value"),
            n.split_once('=').expect("a rewritten parameter has a value"),
        );
        assert!(on == nn, "a parameter's name changed");
        let name = percent_decode(on.as_bytes());
        let ok = bound.iter().any(|g| {
            g.binding.query.iter().any(|q| q.as_bytes() == name.as_slice())
                && is_placeholder(&percent_decode(ov.as_bytes()), g)
                && percent_decode(nv.as_bytes()) == value(g)
                && nv.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        });
        assert!(ok, "a query parameter changed that no bound binding names, or not into its value");
        changed += 1;
    }
    changed
}

/// True when `field` is exactly `g`'s placeholder, ASCII whitespace around it aside.
fn is_placeholder(field: &[u8], g: &Grant) -> bool {
    field.trim_ascii() == g.placeholder.expose_secret().as_bytes()
}

fn value(g: &Grant) -> &[u8] {
    g.value.expose_secret().as_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The scheme and decoded text of a `Basic` value.
fn basic(v: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let v = v.trim_ascii();
    let split = v.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let scheme = &v[..split];
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    Some((scheme, STANDARD.decode(v[split..].trim_ascii()).ok()?))
}

/// Query-string percent-decoding (`+` is a space); malformed escapes stay.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16)).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match (input[i], hex(input.get(i + 1)), hex(input.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (b, ..) => out.push(b),
        }
        i += 1;
    }
    out
}
