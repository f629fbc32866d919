//! Resolving LookupSecrets against a fake settings API: the session key, the cache,
//! single-flight, retries, stale-if-error, the SSRF guard, key rotation, discovery.

use std::time::Duration;

use secret_sidecar::secrets::registry::ScopeId;
use secret_sidecar::secrets::resolver::{ResolveError, Resolved};
use secret_sidecar::secrets::value::SecretName;
use serde_json::{Value, json};

use crate::common::fake_settings::{FakeSettings, Fault};
use crate::common::{KEY, TestApp};

async fn app_for(fake: &FakeSettings, extra: &[&str]) -> TestApp {
    let mut args = vec!["--settings-url", fake.base.as_str(), "--lookup-timeout", "3"];
    args.extend_from_slice(extra);
    TestApp::spawn_with(&args, &[]).await
}

fn lookup(url: &str) -> Value {
    json!({"kind": "LookupSecret", "url": url})
}

async fn register(app: &TestApp, name: &str, entry: Value) {
    let (status, body) = app.post("/api/secrets", &json!({"secrets": {name: entry}})).await;
    assert_eq!(status, 200, "{body}");
}

async fn resolve(app: &TestApp, name: &str) -> Result<Resolved, ResolveError> {
    let entry = app.state.registry().get(&ScopeId::Sandbox, &SecretName::parse(name).unwrap()).unwrap().entry;
    app.state.resolver().resolve(&entry).await
}

fn value(r: &Resolved) -> Vec<u8> {
    r.value.as_ref().unwrap().expose().to_vec()
}

/// Polls `cond` (no fixed sleeps): true within `timeout` or the test fails.
async fn eventually(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn value_is_the_raw_body_and_the_session_key_is_ours() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("TOK", "pässwörd☃ value\n".as_bytes(), None);
    let app = app_for(&fake, &[]).await;
    // The descriptor carries a stale copy of the key, as the SDK embeds it.
    register(&app, "TOK", json!({"kind": "LookupSecret", "url": fake.url("TOK"), "headers": {"X-Session-API-Key": "stale-key"}})).await;
    let r = resolve(&app, "TOK").await.unwrap();
    assert_eq!(value(&r), "pässwörd☃ value\n".as_bytes());
    assert!(!r.stale);
    assert_eq!(fake.seen_keys(), [Some(KEY.to_owned())]);
}

#[tokio::test]
async fn the_key_never_goes_to_other_origins_or_paths() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("P", b"plain", None);
    let other = FakeSettings::start(KEY).await;
    other.set("O", b"other", None);
    let app = app_for(&fake, &["--allow-lookup-origin", &other.base]).await;
    register(&app, "P", lookup(&fake.plain_url("P"))).await;
    register(&app, "O", lookup(&other.plain_url("O"))).await;
    assert_eq!(value(&resolve(&app, "P").await.unwrap()), b"plain");
    assert_eq!(value(&resolve(&app, "O").await.unwrap()), b"other");
    assert_eq!(fake.seen_keys(), [None], "settings origin, but not under /api/v1/sandboxes/");
    assert_eq!(other.seen_keys(), [None]);
    // Toward the other origin, a settings-style path gets no key either.
    register(&app, "O2", lookup(&other.url("O"))).await;
    assert!(resolve(&app, "O2").await.unwrap_err().to_string().contains("401"));
    assert_eq!(other.seen_keys(), [None, None]);
}

#[tokio::test]
async fn env_headers_read_allowed_variables_toward_settings_only() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("E", b"e", None);
    let app = TestApp::spawn_with(
        &["--settings-url", &fake.base, "--allow-env-header", "MY_TOKEN"],
        &[("MY_TOKEN", "env-token-value")],
    )
    .await;
    register(&app, "E", json!({"kind": "LookupSecret", "url": fake.plain_url("E"), "env_headers": {"Authorization": "MY_TOKEN"}})).await;
    resolve(&app, "E").await.unwrap();
    assert_eq!(fake.seen_headers()[0].get("authorization").unwrap(), "env-token-value");
}

#[tokio::test]
async fn transient_errors_are_retried_within_the_deadline() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("T", b"ok", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "T", lookup(&fake.url("T"))).await;
    fake.fault("T", Fault::Status(503, None));
    fake.fault("T", Fault::Status(429, Some("1".into())));
    let started = std::time::Instant::now();
    assert_eq!(value(&resolve(&app, "T").await.unwrap()), b"ok");
    assert_eq!(fake.hits("T"), 3);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After honoured");
}

#[tokio::test]
async fn a_stalled_server_hits_the_deadline() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("S", b"late", None);
    let app = TestApp::spawn_with(&["--settings-url", &fake.base, "--lookup-timeout", "1"], &[]).await;
    register(&app, "S", lookup(&fake.url("S"))).await;
    for _ in 0..3 {
        fake.fault("S", Fault::Delay(Duration::from_secs(30)));
    }
    let started = std::time::Instant::now();
    let err = resolve(&app, "S").await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(3), "one deadline per lookup");
    assert!(err.contains("S") && err.contains("timed out"), "{err}");
    assert!(!err.contains(&fake.base) && !err.contains("/api/v1"), "{err}");
}

#[tokio::test]
async fn oversized_bodies_and_redirects_are_refused() {
    let fake = FakeSettings::start(KEY).await;
    let target = FakeSettings::start(KEY).await;
    target.set("R", b"stolen", None);
    let app = app_for(&fake, &["--max-value-bytes", "16", "--allow-lookup-origin", &target.base]).await;
    register(&app, "BIG", lookup(&fake.url("BIG"))).await;
    fake.set("BIG", &[b'x'; 17], None);
    assert!(resolve(&app, "BIG").await.unwrap_err().to_string().contains("BIG"));
    register(&app, "R", lookup(&fake.url("R"))).await;
    fake.fault("R", Fault::Redirect(target.plain_url("R")));
    let err = resolve(&app, "R").await.unwrap_err().to_string();
    assert!(err.contains('R'), "{err}");
    assert_eq!(target.hits("R"), 0, "the redirect target got no request");
    assert_eq!(fake.hits("R"), 1, "a redirect is not retried");
}

#[tokio::test]
async fn a_rotated_key_file_is_reread_after_401() {
    let (k1, k2) = ("session-key-one", "session-key-two");
    let fake = FakeSettings::start(k1).await;
    fake.set("K", b"v", None);
    let dir = std::env::temp_dir().join(format!("ss-rot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("session-key");
    std::fs::write(&file, format!("{k1}\n")).unwrap();
    let app = app_for(&fake, &["--session-key-file", file.to_str().unwrap()]).await;
    register(&app, "K", json!({"kind": "LookupSecret", "url": fake.url("K"), "ttl_seconds": 0})).await;
    resolve(&app, "K").await.unwrap();
    // The sandbox is resumed: new key on both sides.
    fake.set_key(k2);
    std::fs::write(&file, format!("{k2}\n")).unwrap();
    assert_eq!(value(&resolve(&app, "K").await.unwrap()), b"v");
    assert_eq!(fake.seen_keys(), [Some(k1.into()), Some(k1.into()), Some(k2.into())]);
    // Both keys are masked, the one read at start and the one read after the 401.
    let masker = app.state.masks().masker();
    assert_eq!(masker.mask(format!("{k1} {k2}").as_bytes()).unwrap(), b"<secret-hidden> <secret-hidden>");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn not_found_is_not_retried_and_never_served_stale() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("N", b"old", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "N", json!({"kind": "LookupSecret", "url": fake.url("N"), "ttl_seconds": 0})).await;
    resolve(&app, "N").await.unwrap();
    fake.remove("N");
    let err = resolve(&app, "N").await.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    assert_eq!(fake.hits("N"), 2, "404 is not retried");
    // Even when the server then fails transiently, the revoked value is not served.
    fake.outage(Some(503));
    assert!(resolve(&app, "N").await.is_err());
}

#[tokio::test]
async fn stale_values_are_served_during_an_outage_and_reported() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("ST", b"last-good", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "ST", json!({"kind": "LookupSecret", "url": fake.url("ST"), "ttl_seconds": 0})).await;
    resolve(&app, "ST").await.unwrap();
    fake.outage(Some(502));
    let r = resolve(&app, "ST").await.unwrap();
    assert!(r.stale);
    assert_eq!(value(&r), b"last-good");
    let (_, body) = app.post("/api/secrets/resolve", &json!({"names": ["ST"]})).await;
    assert_eq!(body, json!({"resolved": [], "stale": ["ST"], "failed": []}));
    let list = app.get("/api/secrets").await.1;
    let st = &list["secrets"][0]["state"];
    assert_eq!((&st["status"], &st["stale"]), (&json!("stale"), &json!(true)), "{list}");
    assert!(st["last_error"].as_str().unwrap().contains("502"));
}

#[tokio::test]
async fn with_max_stale_zero_nothing_is_served_stale() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("Z", b"v", None);
    let app = app_for(&fake, &["--max-stale", "0"]).await;
    register(&app, "Z", json!({"kind": "LookupSecret", "url": fake.url("Z"), "ttl_seconds": 0})).await;
    resolve(&app, "Z").await.unwrap();
    fake.outage(Some(500));
    assert!(resolve(&app, "Z").await.is_err());
}

#[tokio::test]
async fn concurrent_cold_resolves_make_one_request() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("C", b"cold", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "C", lookup(&fake.url("C"))).await;
    fake.fault("C", Fault::Delay(Duration::from_millis(200)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (registry, resolver) = (app.state.registry().clone(), app.state.resolver().clone());
        tasks.spawn(async move {
            let entry = registry.get(&ScopeId::Sandbox, &SecretName::parse("C").unwrap()).unwrap().entry;
            resolver.resolve(&entry).await.map(|r| r.value.unwrap().expose().to_vec())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), b"cold");
    }
    assert_eq!(fake.hits("C"), 1);
}

#[tokio::test]
async fn the_request_completes_when_its_caller_disconnects() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("D", b"v", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "D", lookup(&fake.url("D"))).await;
    fake.fault("D", Fault::Delay(Duration::from_millis(300)));
    // The first caller gives up long before the settings API answers.
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let r = quick
        .post(format!("{}/api/secrets/resolve", app.base))
        .header("X-Session-API-Key", KEY)
        .json(&json!({"names": ["D"]}))
        .send()
        .await;
    assert!(r.is_err(), "the caller timed out");
    eventually("the upstream request to complete", Duration::from_secs(5), || fake.completed("D") == 1).await;
    // The value it fetched is cached for everyone else.
    let (_, body) = app.post("/api/secrets/resolve", &json!({"names": ["D"]})).await;
    assert_eq!(body["resolved"], json!(["D"]));
    assert_eq!(fake.hits("D"), 1);
}

#[tokio::test]
async fn a_caller_arriving_after_the_first_went_away_joins_its_request() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("J", b"joined", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "J", lookup(&fake.url("J"))).await;
    fake.fault("J", Fault::Delay(Duration::from_millis(2000)));
    // Long enough for the request to reach the settings API on a loaded machine.
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let r = quick
        .post(format!("{}/api/secrets/resolve", app.base))
        .header("X-Session-API-Key", KEY)
        .json(&json!({"names": ["J"]}))
        .send()
        .await;
    assert!(r.is_err(), "the first caller timed out");
    eventually("the upstream request to start", Duration::from_secs(5), || fake.hits("J") == 1).await;
    // The request outlived its caller; a new caller waits for it rather than asking again.
    assert_eq!(value(&resolve(&app, "J").await.unwrap()), b"joined");
    assert_eq!(fake.hits("J"), 1);
}

#[tokio::test]
async fn at_most_max_upstream_lookups_are_in_flight() {
    const NAMES: [&str; 6] = ["U0", "U1", "U2", "U3", "U4", "U5"];
    const DELAY: Duration = Duration::from_millis(300);
    let fake = FakeSettings::start(KEY).await;
    let app = app_for(&fake, &["--max-upstream", "2"]).await;
    for name in NAMES {
        fake.set(name, name.as_bytes(), None);
        register(&app, name, lookup(&fake.url(name))).await;
        fake.fault(name, Fault::Delay(DELAY));
    }
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for name in NAMES {
        let (registry, resolver) = (app.state.registry().clone(), app.state.resolver().clone());
        tasks.spawn(async move {
            let entry = registry.get(&ScopeId::Sandbox, &SecretName::parse(name).unwrap()).unwrap().entry;
            resolver.resolve(&entry).await.map(|r| r.value.unwrap().expose().to_vec())
        });
    }
    let in_flight = || NAMES.iter().map(|n| fake.hits(n) - fake.completed(n)).sum::<usize>();
    let mut peak = 0;
    while !tasks.is_empty() {
        peak = peak.max(in_flight());
        if let Ok(Some(done)) = tokio::time::timeout(Duration::from_millis(5), tasks.join_next()).await {
            assert!(done.unwrap().is_ok());
        }
    }
    assert!(peak <= 2, "{peak} lookups in flight at once");
    // Six requests of at least 300 ms, two at a time, take at least three rounds.
    assert!(started.elapsed() >= DELAY * 3, "{:?}", started.elapsed());
    assert!(NAMES.iter().all(|n| fake.hits(n) == 1));
}

#[tokio::test]
async fn refresh_after_a_failure_waits_a_second() {
    let fake = FakeSettings::start(KEY).await;
    let app = app_for(&fake, &[]).await;
    register(&app, "R", lookup(&fake.url("R"))).await;
    assert!(resolve(&app, "R").await.unwrap_err().to_string().contains("404"));
    assert_eq!(fake.hits("R"), 1);
    // A refresh right after the failure is answered with it: no refresh storm in an outage.
    let (_, body) = app.post("/api/secrets/refresh", &json!({"names": ["R"]})).await;
    assert_eq!(body["failed"][0]["name"], "R");
    assert_eq!(fake.hits("R"), 1, "failed less than a second ago");
    // A second later, refresh goes upstream again (without waiting out the 5 s memory).
    fake.set("R", b"back", None);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    loop {
        let (_, body) = app.post("/api/secrets/refresh", &json!({"names": ["R"]})).await;
        if body["resolved"] == json!(["R"]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "refresh never went upstream again: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.hits("R"), 2);
}

#[tokio::test]
async fn resolves_within_the_ttl_hit_the_cache_and_replacement_invalidates() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("W", b"v1", None);
    let app = app_for(&fake, &[]).await;
    register(&app, "W", lookup(&fake.url("W"))).await;
    for _ in 0..1000 {
        resolve(&app, "W").await.unwrap();
    }
    assert_eq!(fake.hits("W"), 1);
    fake.set("W", b"v2", None);
    register(&app, "W", lookup(&fake.url("W"))).await;
    assert_eq!(value(&resolve(&app, "W").await.unwrap()), b"v2");
    assert_eq!(fake.hits("W"), 2);
    // Refresh bypasses the cache, at most once per second.
    let (_, body) = app.post("/api/secrets/refresh", &json!({"names": ["W"]})).await;
    assert_eq!(body["resolved"], json!(["W"]));
    assert_eq!(fake.hits("W"), 2, "fetched less than a second ago");
}

#[tokio::test]
async fn short_ttls_expire() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("X", b"v", None);
    let app = app_for(&fake, &["--cache-ttl", "1"]).await;
    register(&app, "X", lookup(&fake.url("X"))).await;
    resolve(&app, "X").await.unwrap();
    resolve(&app, "X").await.unwrap();
    assert_eq!(fake.hits("X"), 1);
    // TTL 1 s ±10 %: poll until a new request goes out (moka's clock cannot be paused).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.hits("X") < 2 {
        assert!(std::time::Instant::now() < deadline, "ttl never expired");
        resolve(&app, "X").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn failures_are_remembered_briefly() {
    let fake = FakeSettings::start(KEY).await;
    let app = app_for(&fake, &[]).await;
    register(&app, "M", lookup(&fake.url("M"))).await;
    for _ in 0..20 {
        assert!(resolve(&app, "M").await.is_err());
    }
    assert_eq!(fake.hits("M"), 1, "a 404 is remembered, not retried per call");
}

#[tokio::test]
async fn resolve_route_reports_every_kind_of_result() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("OK", b"v", None);
    fake.set("EMPTY", b"", None);
    let app = app_for(&fake, &[]).await;
    let body = json!({"secrets": {"OK": lookup(&fake.url("OK")), "EMPTY": lookup(&fake.url("EMPTY")),
        "GONE": lookup(&fake.url("GONE")), "S": "static", "UNSET": ""}});
    assert_eq!(app.post("/api/secrets", &body).await.0, 200);
    let (status, r) = app.post("/api/secrets/resolve", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(r["resolved"], json!(["OK", "S"]));
    let failed: Vec<_> =
        r["failed"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(failed, ["EMPTY", "GONE"]);
    let (_, r) = app.post("/api/secrets/resolve", &json!({"names": ["NOPE", "OK"]})).await;
    assert_eq!(r["failed"][0]["name"], "NOPE");
    assert_eq!(app.post("/api/secrets/resolve", &json!({"names": "OK"})).await.0, 422);
    assert_eq!(app.post("/api/secrets/resolve", &json!({"names": ["1X"]})).await.0, 422);
    // A conversation resolves inherited entries too, cached once in the sandbox scope.
    let conv = "/api/conversations/0a1b2c3d4e5f6789abcdef0123456789/secrets/resolve";
    let (_, r) = app.post(conv, &json!({"names": ["OK"]})).await;
    assert_eq!(r["resolved"], json!(["OK"]));
    assert_eq!(fake.hits("OK"), 1);
    let list = app.get("/api/secrets").await.1;
    let ok = list["secrets"].as_array().unwrap().iter().find(|e| e["name"] == "OK").unwrap().clone();
    assert_eq!(ok["state"]["status"], "resolved");
    assert!(ok["state"]["age_seconds"].as_u64().is_some());
    assert!(!list.to_string().contains("/api/v1"), "no URL paths in listings");
}

#[tokio::test]
async fn blocked_addresses_are_refused_at_connect_time() {
    let fake = FakeSettings::start(KEY).await;
    let app = app_for(
        &fake,
        &[
            "--allow-lookup-origin",
            "http://169.254.169.254",
            "--allow-lookup-origin",
            "http://meta.test",
            "--allow-lookup-origin",
            "http://[::ffff:169.254.169.254]",
            "--allow-lookup-origin",
            "http://0.0.0.0:9",
            "--lookup-resolve",
            "meta.test=169.254.169.254",
        ],
    )
    .await;
    let cases = [
        ("LIT", "http://169.254.169.254/latest/meta-data"),
        ("HOSTNAME", "http://meta.test/latest/meta-data"),
        ("MAPPED", "http://[::ffff:169.254.169.254]/x"),
        ("ZERO", "http://0.0.0.0:9/x"),
    ];
    for (name, url) in cases {
        register(&app, name, lookup(url)).await;
        let err = resolve(&app, name).await.unwrap_err().to_string();
        assert!(err.contains("blocked") || err.contains("refused"), "{name}: {err}");
        assert!(!err.contains("meta-data"), "{err}");
    }
}

#[tokio::test]
async fn discovery_registers_keeps_api_entries_and_removes_names() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("GITHUB_TOKEN", b"gh", Some("GitHub token"));
    fake.set("github_token", b"gh-lower", Some("github_token provider token"));
    fake.set("API_OWN", b"from-settings", None);
    fake.set("bad-name", b"x", None);
    let app = app_for(&fake, &["--sandbox-id", "sb-1"]).await;
    register(&app, "API_OWN", json!("from-api")).await;
    let cfg = secret_sidecar::config::DiscoveryConfig {
        list_url: url::Url::parse(&format!("{}/api/v1/sandboxes/sb-1/settings/secrets", fake.base)).unwrap(),
        interval: Duration::from_secs(300),
    };
    let count =
        secret_sidecar::secrets::discovery::discover_once(&cfg, app.state.registry(), app.state.resolver())
            .await
            .unwrap();
    assert_eq!(count, 3, "bad-name skipped");
    let list = app.get("/api/secrets").await.1;
    let entries: Vec<_> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["source"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        entries,
        [
            ("API_OWN".into(), "api".into()),
            ("GITHUB_TOKEN".into(), "discovery".into()),
            ("github_token".into(), "discovery".into())
        ]
    );
    assert_eq!(value(&resolve(&app, "GITHUB_TOKEN").await.unwrap()), b"gh");
    assert_eq!(value(&resolve(&app, "API_OWN").await.unwrap()), b"from-api", "API entry wins");
    fake.remove("GITHUB_TOKEN");
    secret_sidecar::secrets::discovery::discover_once(&cfg, app.state.registry(), app.state.resolver())
        .await
        .unwrap();
    let names: Vec<_> = app.get("/api/secrets").await.1["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["API_OWN", "github_token"]);
    // A wrong key is a logged failure that names the secret list (no made-up secret name),
    // and changes nothing.
    fake.set_key("rotated");
    let err =
        secret_sidecar::secrets::discovery::discover_once(&cfg, app.state.registry(), app.state.resolver())
            .await
            .unwrap_err();
    assert_eq!(err, "lookup for the secret list failed: upstream answered 401");
    assert_eq!(app.get("/api/secrets").await.1["secrets"].as_array().unwrap().len(), 2);
}
