//! Hostile input, generated from tables: broken JSON at every byte, wrong types for every
//! field, huge and deep bodies, invalid UTF-8, control characters, header injection, path
//! traversal, out-of-range numbers, duplicate keys, and every wrong method on every route.
//!
//! Every case must get a 4xx with a JSON `{"detail": …}` body (never a 5xx), must not echo
//! the marker planted in it, and must leave the registry exactly as it was. One test per
//! family: it runs every case and reports every failing one at once.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::raw::{self, RawResponse};
use crate::common::{CONV_HEX, KEY, TestApp};

/// Planted in every case; must never come back.
const MARK: &str = "hostile-mark-3b7e";

/// A conversation path prefix.
fn conv(rest: &str) -> String {
    format!("/api/conversations/{CONV_HEX}{rest}")
}

/// One hostile request.
struct Case {
    what: String,
    method: &'static str,
    /// The request target exactly as sent (no normalisation).
    target: Vec<u8>,
    /// The body, sent as `application/json` (none: no body, no content type).
    body: Option<Vec<u8>>,
    /// Further header lines, each ending in CRLF.
    extra_head: Vec<u8>,
    /// A status the case must get exactly; any 4xx otherwise.
    expect: Option<u16>,
    /// Refused by the HTTP parser before the service sees it: no JSON body is possible.
    unparsed: bool,
}

impl Case {
    fn json(what: impl Into<String>, method: &'static str, path: &str, body: Vec<u8>) -> Self {
        Self {
            what: what.into(),
            method,
            target: path.as_bytes().to_vec(),
            body: Some(body),
            extra_head: Vec::new(),
            expect: None,
            unparsed: false,
        }
    }

    fn bare(what: impl Into<String>, method: &'static str, target: &[u8]) -> Self {
        Self {
            what: what.into(),
            method,
            target: target.to_vec(),
            body: None,
            extra_head: Vec::new(),
            expect: None,
            unparsed: false,
        }
    }

    fn expect(mut self, status: u16) -> Self {
        self.expect = Some(status);
        self
    }
}

/// A service with something in every scope to disturb, and `/mask` unthrottled.
async fn app() -> TestApp {
    let app = TestApp::spawn_with(
        &["--allow-lookup-origin", "https://app.example.dev", "--mask-rate", "1000000"],
        &[],
    )
    .await;
    let lookup = json!({"kind": "LookupSecret", "url": "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/L", "headers": {"X-Token": "keep-header"}});
    let body = json!({"secrets": {"KEEP": "keep-value", "LOOK": lookup, "resolve": "named-like-a-route"}});
    for path in ["/api/secrets".to_owned(), conv("/secrets")] {
        assert_eq!(app.post(&path, &body).await.0, 200);
    }
    app
}

/// Runs every case; returns one line per failure. The registry is compared before and after.
async fn run(app: &TestApp, cases: Vec<Case>, min_cases: usize) {
    assert!(cases.len() >= min_cases, "the table shrank: {} cases", cases.len());
    let before = app.snapshot().await;
    let scopes = app.state.registry().conversation_count();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = check(app, case).await {
            failures.push(format!("{}: {why}", case.what));
        }
    }
    if app.snapshot().await != before || app.state.registry().conversation_count() != scopes {
        failures.push("the registry changed".into());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

async fn check(app: &TestApp, case: &Case) -> Result<(), String> {
    let body = case.body.as_deref().unwrap_or_default();
    let mut head = raw::head(&app.base, case.method, &case.target, KEY, case.body.as_ref().map(Vec::len));
    head.extend_from_slice(&case.extra_head);
    let r = raw::send(&app.base, &head, body).await?;
    if case.unparsed {
        let text = String::from_utf8_lossy(&r.body);
        return match r.status {
            400 if !text.contains(MARK) => Ok(()),
            s => Err(format!("status {s}: {text}")),
        };
    }
    judge(&r, case.expect)
}

/// A 4xx (or exactly `expect`), JSON with a `detail`, and no marker.
fn judge(r: &RawResponse, expect: Option<u16>) -> Result<(), String> {
    let text = String::from_utf8_lossy(&r.body);
    match expect {
        Some(want) if r.status != want => return Err(format!("status {} (want {want}): {text}", r.status)),
        None if !(400..500).contains(&r.status) => return Err(format!("status {}: {text}", r.status)),
        _ => {}
    }
    if r.header("content-type") != Some("application/json") {
        return Err(format!("content type {:?}: {text}", r.header("content-type")));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| format!("body is not JSON: {text}"))?;
    if v.get("detail").is_none() {
        return Err(format!("no detail: {text}"));
    }
    if text.contains(MARK) || text.contains("hostile-mark") {
        return Err(format!("echoes the marker: {text}"));
    }
    Ok(())
}

/// A valid body for each JSON route, and where to send it.
fn valid_bodies() -> Vec<(&'static str, String, Value)> {
    let lookup = json!({"kind": "LookupSecret", "url": format!("https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/{MARK}"),
        "headers": {"X-Token": MARK}, "env_headers": {}, "ttl_seconds": 5, "description": "d"});
    let command = json!({"command": format!("true {MARK}"), "cwd": null, "timeout": 5, "secrets": ["KEEP"],
        "env": {"E": MARK}, "on_missing": "skip"});
    vec![
        (
            "secrets",
            "/api/secrets".into(),
            json!({"secrets": {"NEW_A": MARK, "NEW_B": {"value": MARK}, "NEW_C": lookup}}),
        ),
        (
            "conversation secrets",
            conv("/secrets"),
            json!({"secrets": {"NEW_A": {"kind": "StaticSecret", "value": MARK}}}),
        ),
        ("commands", conv("/commands"), command.clone()),
        ("commands/stream", "/api/commands/stream".into(), command),
        (
            "bash",
            "/api/bash/execute_bash_command".into(),
            json!({"command": format!("true {MARK}"), "cwd": null, "timeout": 5}),
        ),
        (
            "start bash",
            "/api/bash/start_bash_command".into(),
            json!({"command": format!("true {MARK}"), "timeout": 5, "conversation_id": CONV_HEX}),
        ),
        ("resolve", "/api/secrets/resolve".into(), json!({"names": ["KEEP", MARK]})),
        ("refresh", conv("/secrets/refresh"), json!({"names": ["KEEP"]})),
        ("mask", "/api/mask".into(), json!({"text": MARK})),
    ]
}

#[tokio::test]
async fn json_truncated_at_every_byte_is_400() {
    let app = app().await;
    let mut cases = Vec::new();
    for (what, path, body) in valid_bodies() {
        let bytes = serde_json::to_vec(&body).unwrap();
        for cut in 0..bytes.len() {
            cases.push(
                Case::json(format!("{what} cut at {cut}"), "POST", &path, bytes[..cut].to_vec()).expect(400),
            );
        }
    }
    run(&app, cases, 500).await;
}

/// The JSON kinds a field can be given; each field lists the ones it accepts.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Null,
    Bool,
    Int,
    Negative,
    Float,
    Str,
    Array,
    Object,
}

fn wrong_values(accepted: &[Kind]) -> Vec<(&'static str, Value)> {
    let all = [
        (Kind::Null, "null", json!(null)),
        (Kind::Bool, "bool", json!(true)),
        (Kind::Int, "integer", json!(7)),
        (Kind::Negative, "negative", json!(-1)),
        (Kind::Float, "float", json!(1.5)),
        (Kind::Str, "string", json!(MARK)),
        (Kind::Array, "array", json!([MARK, {"k": MARK}])),
        (Kind::Object, "object", json!({"k": MARK, "v": [MARK]})),
    ];
    all.into_iter().filter(|(k, ..)| !accepted.contains(k)).map(|(_, n, v)| (n, v)).collect()
}

/// (route label, JSON pointer of the field, the kinds it accepts)
fn fields() -> Vec<(&'static str, &'static str, Vec<Kind>)> {
    use Kind::*;
    vec![
        ("secrets", "", vec![Object]),
        ("secrets", "/secrets", vec![Object]),
        ("secrets", "/secrets/NEW_A", vec![Str, Object]),
        // A null value is "no value" (like `""`), not a type error.
        ("secrets", "/secrets/NEW_B/value", vec![Null, Str]),
        ("secrets", "/secrets/NEW_B", vec![Str, Object]),
        ("secrets", "/secrets/NEW_C/kind", vec![]),
        ("secrets", "/secrets/NEW_C/url", vec![]),
        ("secrets", "/secrets/NEW_C/headers", vec![Null, Object]),
        ("secrets", "/secrets/NEW_C/headers/X-Token", vec![Str]),
        ("secrets", "/secrets/NEW_C/env_headers", vec![Null, Object]),
        ("secrets", "/secrets/NEW_C/ttl_seconds", vec![Null, Int]),
        ("secrets", "/secrets/NEW_C/description", vec![Null, Str]),
        ("conversation secrets", "/secrets/NEW_A/value", vec![Null, Str]),
        ("conversation secrets", "/secrets/NEW_A/kind", vec![]),
        ("commands", "", vec![Object]),
        ("commands", "/command", vec![Str]),
        ("commands", "/cwd", vec![Null]),
        ("commands", "/timeout", vec![Null, Int]),
        ("commands", "/secrets", vec![Null, Array]),
        ("commands", "/secrets/0", vec![]),
        ("commands", "/env", vec![Null, Object]),
        ("commands", "/env/E", vec![Str]),
        ("commands", "/on_missing", vec![Null]),
        ("commands/stream", "/command", vec![Str]),
        ("commands/stream", "/timeout", vec![Null, Int]),
        ("commands/stream", "/secrets", vec![Null, Array]),
        ("commands/stream", "/env/E", vec![Str]),
        ("bash", "", vec![Object]),
        ("bash", "/command", vec![Str]),
        // A bash command's bad `cwd` is a BashOutput with exit code -1 (ref), not a 4xx.
        ("bash", "/cwd", vec![Null, Str]),
        ("bash", "/timeout", vec![Null, Int]),
        ("start bash", "/command", vec![Str]),
        ("start bash", "/timeout", vec![Null, Int]),
        ("start bash", "/conversation_id", vec![Null]),
        ("resolve", "", vec![Object]),
        ("resolve", "/names", vec![Null, Array]),
        ("resolve", "/names/0", vec![]),
        ("refresh", "/names", vec![Null, Array]),
        ("refresh", "/names/0", vec![]),
        ("mask", "", vec![Object]),
        ("mask", "/text", vec![Str]),
    ]
}

#[tokio::test]
async fn wrong_types_for_every_field_are_4xx() {
    let app = app().await;
    let bodies = valid_bodies();
    let mut cases = Vec::new();
    for (route, pointer, accepted) in fields() {
        let (_, path, valid) = bodies.iter().find(|(r, ..)| *r == route).unwrap();
        for (kind, wrong) in wrong_values(&accepted) {
            let mut body = valid.clone();
            match body.pointer_mut(pointer) {
                Some(slot) => *slot = wrong,
                None => panic!("{route}: no field {pointer}"),
            }
            let what = format!("{route} {pointer} as {kind}");
            cases.push(Case::json(what, "POST", path, serde_json::to_vec(&body).unwrap()));
        }
    }
    run(&app, cases, 200).await;
}

#[tokio::test]
async fn huge_and_deeply_nested_bodies_are_4xx() {
    let app = app().await;
    let mut cases = Vec::new();
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    for (what, path, _) in valid_bodies() {
        let over = format!(r#"{{"pad": "{}", "x": "{MARK}"}}"#, "p".repeat(1024 * 1024));
        cases.push(
            Case::json(format!("{what}: 1 MiB and more"), "POST", &path, over.into_bytes()).expect(413),
        );
        for (shape, nested) in [
            ("arrays 10,000 deep", deep("[", "]", 10_000)),
            ("objects 10,000 deep", deep(r#"{"a":"#, "}", 10_000)),
            ("arrays 200 deep", deep("[", "]", 200)),
        ] {
            let body = format!(
                r#"{{"x": "{MARK}", "secrets": {nested}, "command": {nested}, "names": {nested}, "text": {nested}}}"#
            );
            cases.push(Case::json(format!("{what}: {shape}"), "POST", &path, body.into_bytes()));
        }
        let wide = format!(
            r#"{{"secrets": [{}], "command": 1, "names": 1, "text": 1}}"#,
            vec!["1"; 100_000].join(",")
        );
        cases.push(Case::json(format!("{what}: 100,000-element array"), "POST", &path, wide.into_bytes()));
        let long_wrong = json!({"secrets": 1, "command": 1, "names": 1, "text": 1, "timeout": format!("{MARK}{}", "t".repeat(900_000))});
        cases.push(Case::json(
            format!("{what}: 900 KB string in a wrong-typed field"),
            "POST",
            &path,
            serde_json::to_vec(&long_wrong).unwrap(),
        ));
    }
    let many: serde_json::Map<String, Value> = (0..2000).map(|i| (format!("N{i}"), json!(MARK))).collect();
    cases.push(Case::json(
        "2,000 secrets over the per-scope limit",
        "POST",
        &conv("/secrets"),
        serde_json::to_vec(&json!({"secrets": many})).unwrap(),
    ));
    run(&app, cases, 50).await;
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let app = app().await;
    let bad: [(&str, &[u8]); 6] = [
        ("0xff", b"\xff"),
        ("lone continuation byte", b"\x80"),
        ("overlong slash", b"\xc0\xaf"),
        ("UTF-8 surrogate", b"\xed\xa0\x80"),
        ("truncated sequence", b"\xe2\x82"),
        ("lone surrogate escape", br"\ud800"),
    ];
    let mut cases = Vec::new();
    for (what, path, body) in valid_bodies() {
        let text = serde_json::to_vec(&body).unwrap();
        for (how, bytes) in bad {
            // Inside the marker string, and in a key.
            let at = text.windows(MARK.len()).position(|w| w == MARK.as_bytes());
            let at = at.or_else(|| text.windows(5).position(|w| w == b"\"KEEP").map(|i| i + 1)).unwrap();
            let mut in_value = text.clone();
            in_value.splice(at..at, bytes.iter().copied());
            cases.push(Case::json(format!("{what}: {how} in a value"), "POST", &path, in_value).expect(400));
            let mut in_key = text.clone();
            in_key.splice(2..2, bytes.iter().copied());
            cases.push(Case::json(format!("{what}: {how} in a key"), "POST", &path, in_key).expect(400));
        }
    }
    run(&app, cases, 100).await;
}

#[tokio::test]
async fn control_characters_are_refused() {
    let app = app().await;
    let controls = ["\u{0}", "\u{1}", "\u{7}", "\t", "\n", "\r", "\u{1b}", "\u{7f}"];
    let lookup = |url: String, headers: Value| json!({"secrets": {"NEW_C": {"kind": "LookupSecret", "url": url, "headers": headers}}});
    let good_url = "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/C";
    let mut cases = Vec::new();
    for c in controls {
        let n = format!("{:?}", c);
        let bodies = [
            ("name", "/api/secrets".to_owned(), json!({"secrets": {format!("NEW{c}A"): MARK}})),
            ("static value", conv("/secrets"), json!({"secrets": {"NEW_A": format!("{MARK}{c}\u{0}")}})),
            ("url", "/api/secrets".to_owned(), lookup(format!("{good_url}/{MARK}{c}x"), json!({}))),
            (
                "header name",
                "/api/secrets".to_owned(),
                lookup(good_url.into(), json!({format!("X-A{c}"): MARK})),
            ),
            (
                "header value",
                conv("/secrets"),
                lookup(good_url.into(), json!({"X-A": format!("{MARK}{c}x")})),
            ),
            ("env name", conv("/commands"), json!({"command": "true", "env": {format!("E{c}"): MARK}})),
            ("cwd", "/api/commands".to_owned(), json!({"command": "true", "cwd": format!("/tmp/{MARK}{c}")})),
            ("resolve name", "/api/secrets/resolve".to_owned(), json!({"names": [format!("KEEP{c}")]})),
        ];
        for (field, path, body) in bodies {
            let what = format!("{n} in a {field}");
            cases.push(Case::json(what, "POST", &path, serde_json::to_vec(&body).unwrap()));
        }
        // NUL is the one byte no process argument or variable can hold.
        if c == "\u{0}" {
            for (field, body) in [
                ("command", json!({"command": format!("echo {MARK}{c}")})),
                ("env value", json!({"command": "true", "env": {"E": format!("{MARK}{c}")}})),
            ] {
                cases.push(Case::json(
                    format!("NUL in a {field}"),
                    "POST",
                    &conv("/commands"),
                    serde_json::to_vec(&body).unwrap(),
                ));
            }
        }
    }
    // In the request target, percent-encoded.
    for enc in ["%00", "%01", "%0a", "%0d%0a", "%7f", "%1b"] {
        cases.push(Case::bare(
            format!("{enc} in a secret name"),
            "DELETE",
            format!("/api/secrets/KEEP{enc}").as_bytes(),
        ));
        cases.push(Case::bare(
            format!("{enc} in a conversation id"),
            "DELETE",
            format!("/api/conversations/{CONV_HEX}{enc}").as_bytes(),
        ));
        cases.push(Case::bare(
            format!("{enc} in an event id"),
            "GET",
            format!("/api/bash/bash_events/{enc}{MARK}").as_bytes(),
        ));
    }
    run(&app, cases, 60).await;
}

#[tokio::test]
async fn header_injection_in_lookup_headers_is_422() {
    let app = app().await;
    let url = "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/C";
    let injections = [
        "\r\nHost: evil.example",
        "\r\n\r\nGET /admin HTTP/1.1",
        "\nX-Injected: 1",
        "\rX-Injected: 1",
        "\r\n X-Folded: 1",
        "\u{0}\r\nX-After-Nul: 1",
    ];
    let mut cases = Vec::new();
    for inj in injections {
        let short = format!("{inj:?}");
        for (place, headers) in [
            ("value", json!({"X-Token": format!("{MARK}{inj}")})),
            ("name", json!({format!("X-Token{inj}"): MARK})),
            ("env_headers name", json!({})),
        ] {
            let mut entry = json!({"kind": "LookupSecret", "url": url, "headers": headers});
            if place == "env_headers name" {
                entry["env_headers"] = json!({format!("X-K{inj}"): "SESSION_API_KEY"});
            }
            for path in ["/api/secrets".to_owned(), conv("/secrets")] {
                let body = json!({"secrets": {"NEW_C": entry.clone(), "NEW_A": MARK}});
                let case = Case::json(
                    format!("{short} in a header {place} at {path}"),
                    "POST",
                    &path,
                    serde_json::to_vec(&body).unwrap(),
                );
                cases.push(case.expect(422));
            }
        }
    }
    // And in the request's own headers. These never reach the service: the HTTP parser
    // answers a bare 400 and closes the connection.
    for (what, line) in [
        ("NUL in a header value", format!("X-Custom: {MARK}\u{0}x\r\n")),
        ("bare CR in a header value", format!("X-Custom: {MARK}\rInjected: 1\r\n")),
        ("control byte in a header name", format!("X-Cu\u{1}stom: {MARK}\r\n")),
        ("NUL in a forwarded header", format!("X-Forwarded-Host: {MARK}\u{0}\r\n")),
    ] {
        let mut case = Case::bare(what, "GET", b"/api/secrets").expect(400);
        case.extra_head = line.into_bytes();
        case.unparsed = true;
        cases.push(case);
    }
    run(&app, cases, 40).await;
}

#[tokio::test]
async fn path_traversal_in_ids_and_names_is_refused() {
    let app = app().await;
    let ids = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "..%2f..",
        "..%2F..%2Fsecrets",
        "%2f",
        "%2F",
        "..;",
        "...",
        "a%2fb",
        "%5c..%5c",
        "..%5c..",
        "%252e%252e",
        "%c0%ae%c0%ae",
        "0a1b2c3d4e5f6789abcdef0123456789%2f..",
        "0a1b2c3d4e5f6789abcdef0123456789%2F..%2Fsecrets",
        "0a1b2c3d-4e5f-6789-abcd-ef0123456789%2f",
    ];
    let names = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "..%2fKEEP",
        "..%2FKEEP",
        "KEEP%2f..",
        "KEEP%2F",
        "%2fKEEP",
        "KEEP%5c",
        "..%5cKEEP",
        "%252e%252e",
        "KEEP%2f..%2fKEEP",
        "KEEP%00",
        "KEEP%20",
        "KEEP.",
        "%2e%2e%2fsecrets%2fKEEP",
    ];
    let mut cases = Vec::new();
    for id in ids {
        for (method, rest, body) in [
            ("GET", "/secrets", None),
            ("POST", "/secrets", Some(format!(r#"{{"secrets": {{"NEW": "{MARK}"}}}}"#))),
            ("DELETE", "", None),
            ("DELETE", "/secrets/KEEP", None),
            ("POST", "/commands", Some(format!(r#"{{"command": "true {MARK}"}}"#))),
            ("POST", "/mask", Some(format!(r#"{{"text": "{MARK}"}}"#))),
        ] {
            let target = format!("/api/conversations/{id}{rest}");
            let what = format!("{method} {target}");
            cases.push(match body {
                Some(b) => Case::json(what, method, &target, b.into_bytes()),
                None => Case::bare(what, method, target.as_bytes()),
            });
        }
    }
    for name in names {
        for target in [format!("/api/secrets/{name}"), conv(&format!("/secrets/{name}"))] {
            cases.push(Case::bare(format!("DELETE {target}"), "DELETE", target.as_bytes()));
        }
    }
    // Dot segments that a client would have resolved: the service must not.
    for target in [
        "/api/conversations/../secrets",
        "/api/conversations/./secrets",
        "/api/secrets/../secrets/KEEP",
        "/api/secrets/./KEEP",
        "/api/conversations/0a1b2c3d4e5f6789abcdef0123456789/secrets/../../../secrets/KEEP",
        "/api/bash/bash_events/../../secrets",
    ] {
        cases.push(Case::bare(format!("DELETE {target}"), "DELETE", target.as_bytes()));
    }
    run(&app, cases, 150).await;
}

#[tokio::test]
async fn numbers_out_of_range_nan_and_infinity_are_4xx() {
    let app = app().await;
    let numbers = [
        "0",
        "-1",
        "-0",
        "1.5",
        "1e3",
        "1.0",
        "1e400",
        "-1e400",
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "340282366920938463463374607431768211456",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "1_0",
        "+5",
        ".5",
        "5.",
        "01",
        "\"5\"",
    ];
    let mut cases = Vec::new();
    for n in numbers {
        let lookup = format!(
            r#"{{"secrets": {{"NEW_C": {{"kind": "LookupSecret", "url": "https://app.example.dev/api/v1/sandboxes/sb/settings/secrets/{MARK}", "ttl_seconds": {n}}}}}}}"#
        );
        // 0 is a valid `ttl_seconds` (never cache); every other entry is invalid everywhere.
        if n != "0" {
            cases.push(Case::json(format!("ttl_seconds {n}"), "POST", "/api/secrets", lookup.into_bytes()));
        }
        for path in [conv("/commands"), "/api/commands/stream".into()] {
            let body = format!(r#"{{"command": "true {MARK}", "timeout": {n}}}"#);
            cases.push(Case::json(format!("command timeout {n}"), "POST", &path, body.into_bytes()));
        }
        // The bash routes cut a large timeout to `--max-timeout` (ref), so only values
        // that are not whole numbers of seconds in i64 are wrong there.
        if !["18446744073709551616", "9223372036854775808", "340282366920938463463374607431768211456"]
            .contains(&n)
            || n.starts_with('-')
        {
            let body = format!(r#"{{"command": "true {MARK}", "timeout": {n}}}"#);
            cases.push(Case::json(
                format!("bash timeout {n}"),
                "POST",
                "/api/bash/execute_bash_command",
                body.into_bytes(),
            ));
        }
    }
    for n in ["0", "101", "-1", "1.5", "NaN", "1e2", "99999999999999999999", MARK] {
        let target = format!("/api/bash/bash_events/search?limit={n}");
        cases.push(Case::bare(format!("search limit {n}"), "GET", target.as_bytes()));
    }
    for q in [
        "order__gt=NaN",
        "order__gt=-1e999",
        "timestamp__gte=2020-13-45",
        "sort_order=SIDEWAYS",
        "kind__eq=Nope",
        "command_id__eq=..%2f..",
    ] {
        let target = format!("/api/bash/bash_events/search?{q}&x={MARK}");
        cases.push(Case::bare(format!("search {q}"), "GET", target.as_bytes()));
    }
    run(&app, cases, 60).await;
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let app = app().await;
    let mut cases = Vec::new();
    let dups = [
        (
            "secrets",
            "/api/secrets".to_owned(),
            format!(r#"{{"secrets": {{"NEW": "{MARK}"}}, "secrets": {{"KEEP": "replaced-{MARK}"}}}}"#),
        ),
        (
            "secret name",
            conv("/secrets"),
            format!(r#"{{"secrets": {{"NEW": "{MARK}", "NEW": "other-{MARK}"}}}}"#),
        ),
        (
            "value",
            "/api/secrets".into(),
            format!(r#"{{"secrets": {{"NEW": {{"value": "a-{MARK}", "value": "b-{MARK}"}}}}}}"#),
        ),
        (
            "kind",
            "/api/secrets".into(),
            format!(
                r#"{{"secrets": {{"NEW": {{"kind": "LookupSecret", "kind": "StaticSecret", "value": "{MARK}", "url": "https://app.example.dev/x"}}}}}}"#
            ),
        ),
        (
            "url",
            "/api/secrets".into(),
            format!(
                r#"{{"secrets": {{"NEW": {{"kind": "LookupSecret", "url": "https://app.example.dev/{MARK}", "url": "https://app.example.dev/other"}}}}}}"#
            ),
        ),
        (
            "header",
            conv("/secrets"),
            format!(
                r#"{{"secrets": {{"NEW": {{"kind": "LookupSecret", "url": "https://app.example.dev/x", "headers": {{"X-A": "{MARK}", "X-A": "b"}}}}}}}}"#
            ),
        ),
        ("command", conv("/commands"), format!(r#"{{"command": "true {MARK}", "command": "false {MARK}"}}"#)),
        (
            "stream command",
            "/api/commands/stream".into(),
            format!(r#"{{"command": "true {MARK}", "command": "false"}}"#),
        ),
        (
            "env name",
            conv("/commands"),
            format!(r#"{{"command": "true", "env": {{"E": "{MARK}", "E": "b"}}}}"#),
        ),
        (
            "timeout",
            conv("/commands"),
            format!(r#"{{"command": "true {MARK}", "timeout": 5, "timeout": 6}}"#),
        ),
        (
            "bash command",
            "/api/bash/execute_bash_command".into(),
            format!(r#"{{"command": "true {MARK}", "command": "false"}}"#),
        ),
        ("names", "/api/secrets/resolve".into(), format!(r#"{{"names": ["KEEP"], "names": ["{MARK}"]}}"#)),
        ("text", "/api/mask".into(), format!(r#"{{"text": "{MARK}", "text": "b"}}"#)),
    ];
    for (what, path, body) in dups {
        cases.push(Case::json(format!("duplicate {what}"), "POST", &path, body.into_bytes()).expect(400));
    }
    run(&app, cases, 13).await;
}

/// Every route and the methods it answers (from `api::router`; README "HTTP API").
fn routes() -> Vec<(String, &'static [&'static str])> {
    const GET: &[&str] = &["GET"];
    const POST: &[&str] = &["POST"];
    const DELETE: &[&str] = &["DELETE"];
    const GET_POST: &[&str] = &["GET", "POST"];
    let mut routes = vec![
        ("/alive".to_owned(), GET),
        ("/health".to_owned(), GET),
        ("/ready".to_owned(), GET),
        ("/server_info".to_owned(), GET),
        ("/api/bash/start_bash_command".to_owned(), POST),
        ("/api/bash/execute_bash_command".to_owned(), POST),
        ("/api/bash/bash_events/search".to_owned(), GET),
        (format!("/api/bash/bash_events/{}", "e".repeat(32)), GET),
        (conv(""), DELETE),
    ];
    for scope in ["/api".to_owned(), conv("")] {
        routes.extend([
            (format!("{scope}/secrets"), GET_POST),
            (format!("{scope}/secrets/KEEP"), DELETE),
            (format!("{scope}/secrets/resolve"), POST),
            (format!("{scope}/secrets/refresh"), POST),
            (format!("{scope}/commands"), POST),
            (format!("{scope}/commands/stream"), POST),
            (format!("{scope}/mask"), POST),
        ]);
    }
    routes
}

#[tokio::test]
async fn every_route_with_every_wrong_method_is_405() {
    let app = app().await;
    // HEAD has no body to carry a detail (and GET routes answer it); CONNECT needs an authority.
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];
    let mut cases = Vec::new();
    for (path, allowed) in routes() {
        for method in methods.into_iter().filter(|m| !allowed.contains(m)) {
            let body = format!(r#"{{"secrets": {{"NEW": "{MARK}"}}, "command": "true", "text": "{MARK}"}}"#);
            cases.push(Case::json(format!("{method} {path}"), method, &path, body.into_bytes()).expect(405));
        }
    }
    run(&app, cases, 100).await;
}

/// Bad egress bindings (contract §8), one `(what, fields)` a row: `fields` are merged into a
/// static descriptor whose value is the marker (a row may replace the value too). Hosts that
/// are addresses, public suffixes, wildcards anywhere but a leading `*.`, ports, paths,
/// non-strings, confusables; forbidden or invalid header names; bad query names; a value too
/// short to bind.
fn bad_egress_hosts() -> Vec<(String, Value)> {
    let mut rows: Vec<(String, Value)> = Vec::new();
    let hosts = [
        ("IPv4 literal", json!(["127.0.0.1"])),
        ("IPv4 literal with a trailing dot", json!(["10.0.0.1."])),
        ("short IPv4 form", json!(["127.1"])),
        ("decimal IPv4 form", json!(["2130706433"])),
        ("hex IPv4 form", json!(["0x7f.0.0.1"])),
        ("octal IPv4 form", json!(["0177.0.0.1"])),
        ("IPv6 literal", json!(["::1"])),
        ("bracketed IPv6", json!(["[::1]"])),
        ("bracketed IPv6 with a port", json!(["[::1]:443"])),
        ("IPv4-mapped IPv6", json!(["::ffff:127.0.0.1"])),
        ("wildcard over .com", json!(["*.com"])),
        ("wildcard over .co.uk", json!(["*.co.uk"])),
        ("wildcard over github.io", json!(["*.github.io"])),
        ("wildcard over an unknown TLD", json!(["*.internal"])),
        ("bare star", json!(["*"])),
        ("star dot", json!(["*."])),
        ("double wildcard", json!(["*.*.example.com"])),
        ("inner wildcard", json!(["api.*.example.com"])),
        ("partial-label wildcard", json!(["api*.example.com"])),
        ("trailing wildcard", json!(["example.*"])),
        ("host with a port", json!(["api.example.com:443"])),
        ("host with a path", json!(["api.example.com/v1"])),
        ("URL", json!(["https://api.example.com"])),
        ("userinfo", json!([format!("{MARK}@api.example.com")])),
        ("query", json!(["api.example.com?x=1"])),
        ("fragment", json!(["api.example.com#x"])),
        ("backslash", json!(["api.example.com\\evil"])),
        ("space", json!(["api example.com"])),
        ("empty name", json!([""])),
        ("empty label", json!(["api..example.com"])),
        ("leading dot", json!([".example.com"])),
        ("empty list", json!([])),
        ("a string, not a list", json!("api.example.com")),
        ("a number", json!(7)),
        ("an object", json!({"host": "api.example.com"})),
        ("null entry", json!([null])),
        ("number entry", json!([443])),
        ("nested list", json!([["api.example.com"]])),
        ("the marker as a host list entry", json!([MARK, 1])),
        ("NUL in a name", json!(["api.example.com\u{0}.evil.com"])),
        ("newline in a name", json!(["api.example.com\nHost: evil"])),
        ("CR LF in a name", json!(["api.example.com\r\nX: y"])),
        ("tab in a name", json!(["api\texample.com"])),
        ("over 253 bytes", json!([format!("{}.example.com", "a.".repeat(130))])),
        ("a label over 63 bytes", json!([format!("{}.example.com", "a".repeat(64))])),
        ("huge list", json!((0..10_000).map(|i| format!("h{i}.example.com")).collect::<Vec<_>>())),
        ("65 hosts", json!((0..65).map(|i| format!("h{i}.example.com")).collect::<Vec<_>>())),
        ("one huge entry", json!(["a".repeat(100_000)])),
        ("fullwidth dot confusable over .com", json!(["*\u{ff0e}com"])),
        ("fullwidth digits IPv4", json!(["\u{ff11}\u{ff12}\u{ff17}.0.0.1"])),
        ("ideographic full stop wildcard over .com", json!(["*.\u{3002}com"])),
        ("right-to-left override", json!(["api.example.com\u{202e}"])),
        ("zero-width space", json!(["api\u{200b}.example.com"])),
        ("soft hyphen only label", json!(["\u{00ad}.example.com"])),
    ];
    for (what, value) in hosts {
        rows.push((format!("egress_hosts: {what}"), json!({"egress_hosts": value})));
    }
    let headers = [
        ("Host", json!(["Host"])),
        ("Content-Length", json!(["Content-Length"])),
        ("Transfer-Encoding", json!(["transfer-encoding"])),
        ("Connection", json!(["Connection"])),
        ("Upgrade", json!(["Upgrade"])),
        ("Cookie", json!(["Cookie"])),
        ("Proxy-Authorization", json!(["Proxy-Authorization"])),
        ("X-Forwarded-For", json!(["X-Forwarded-For"])),
        ("invalid token (space)", json!(["X Api Key"])),
        ("invalid token (colon)", json!(["X-Api-Key:"])),
        ("CR LF injection", json!(["X-Api-Key\r\nHost: evil"])),
        ("NUL", json!(["X-Api\u{0}Key"])),
        ("empty", json!([""])),
        ("non-ASCII", json!(["X-Ápi-Key"])),
        ("not a list", json!("X-Api-Key")),
        ("non-string entry", json!([1])),
        ("17 names", json!((0..17).map(|i| format!("X-H{i}")).collect::<Vec<_>>())),
    ];
    for (what, value) in headers {
        rows.push((
            format!("egress_headers: {what}"),
            json!({"egress_hosts": ["api.example.com"], "egress_headers": value}),
        ));
    }
    let query = [
        ("empty", json!([""])),
        ("ampersand", json!(["a&b"])),
        ("equals", json!(["a=b"])),
        ("hash", json!(["a#b"])),
        ("percent", json!(["a%20b"])),
        ("plus", json!(["a+b"])),
        ("space", json!(["a b"])),
        ("NUL", json!(["a\u{0}b"])),
        ("non-ASCII", json!(["clé"])),
        ("over 128 bytes", json!(["k".repeat(129)])),
        ("not a list", json!("key")),
        ("non-string entry", json!([{"k": MARK}])),
        ("17 names", json!((0..17).map(|i| format!("k{i}")).collect::<Vec<_>>())),
    ];
    for (what, value) in query {
        rows.push((
            format!("egress_query: {what}"),
            json!({"egress_hosts": ["api.example.com"], "egress_query": value}),
        ));
    }
    rows.push(("egress_headers without egress_hosts".into(), json!({"egress_headers": ["X-Api-Key"]})));
    rows.push(("egress_query without egress_hosts".into(), json!({"egress_query": ["key"]})));
    // 12 bytes: under the 16 a bound value needs; still a marker the answer must not echo.
    for short in ["hostile-mark", "hostile-mark-3b"] {
        rows.push((
            format!("a {}-byte bound value", short.len()),
            json!({"value": short, "egress_hosts": ["api.example.com"]}),
        ));
    }
    rows
}

#[tokio::test]
async fn bad_egress_hosts_are_422() {
    let app = app().await;
    let mut cases = Vec::new();
    for (what, fields) in bad_egress_hosts() {
        let mut entry = json!({"value": MARK});
        for (k, v) in fields.as_object().unwrap() {
            entry[k] = v.clone();
        }
        for path in ["/api/secrets".to_owned(), conv("/secrets")] {
            // Beside a valid secret: the whole update is refused, not just the bad entry.
            let body = json!({"secrets": {"NEW": entry.clone(), "NEW_OK": format!("{MARK}-ok")}});
            let case =
                Case::json(format!("{what} at {path}"), "POST", &path, serde_json::to_vec(&body).unwrap());
            cases.push(case.expect(422));
        }
    }
    run(&app, cases, 150).await;
}

#[tokio::test]
async fn unauthenticated_hostile_requests_are_401_first() {
    let app = app().await;
    let before = app.snapshot().await;
    let mut failures = Vec::new();
    for (path, _) in routes().into_iter().filter(|(p, _)| p.starts_with("/api")) {
        for method in [Method::GET, Method::POST, Method::DELETE, Method::PUT] {
            let r = app
                .client
                .request(method.clone(), format!("{}{path}", app.base))
                .header("X-Session-API-Key", format!("wrong-{MARK}"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"secrets": {{"NEW": "{MARK}"}}"#))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            if status != 401 || text.contains(MARK) || !text.contains("detail") {
                failures.push(format!("{method} {path}: {status} {text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(app.snapshot().await, before);
}
