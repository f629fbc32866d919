//! `GET /metrics`: the key it needs, its content type, every family moving after real traffic
//! (requests, lookups against the fake settings API, commands, masked output, a timeout,
//! discovery), and no secret name, value, host name, key or raw path in its body.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::bin::BinApp;
use crate::common::fake_settings::{FakeSettings, Fault};
use crate::common::{KEY, TestApp, json_of};

/// Markers that must never reach the metrics.
const NAME: &str = "MARKERNAME_Q7ZK";
const VALUE: &str = "marker-value-8d3f1c";
const HOST: &str = "marker-host-5e2a.example";
const CONV: &str = "deadbeefcafe4bad9e11a5c0ffee1234";
const PATH: &str = "marker-path-3c9d";
const LOOKED_UP: &str = "looked-up-value-71b0";

/// The exposition, read with the key.
async fn scrape(base: &str, client: &reqwest::Client) -> String {
    let r = client.get(format!("{base}/metrics")).header("X-Session-API-Key", KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, exactly as exposed); 0 when the series
/// is not shown yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// How much each series grew between two scrapes.
fn grew(before: &str, after: &str, series: &str) -> f64 {
    sample(after, series) - sample(before, series)
}

#[tokio::test]
async fn metrics_need_the_key_and_are_prometheus_text() {
    let app = TestApp::spawn().await;
    let url = format!("{}/metrics", app.base);
    let (status, body) = json_of(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!((status, body), (401, json!({"detail": "Unauthorized"})));
    let wrong = app.client.get(&url).header("X-Session-API-Key", "not-the-key").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let r = app.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE secret_sidecar_http_requests_total counter"), "{text}");
    assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    // The refused scrapes were counted, by template.
    let refused = "secret_sidecar_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}";
    assert_eq!(sample(&text, refused), 2.0, "{text}");
}

#[tokio::test]
async fn every_family_moves_and_no_marker_reaches_the_body() {
    let fake = FakeSettings::start(KEY).await;
    fake.set(NAME, LOOKED_UP.as_bytes(), None);
    fake.set("SLOW", b"slow-value-2f9e", None);
    let origin = format!("https://{HOST}");
    let app = TestApp::spawn_with(
        &["--settings-url", &fake.base, "--lookup-timeout", "20", "--allow-lookup-origin", &origin],
        &[],
    )
    .await;
    let before = scrape(&app.base, &app.client).await;

    // Secrets: a static value, lookups against the fake settings API, one at a host that is
    // never contacted, and a conversation's own secret.
    let secrets = json!({"secrets": {
        "STATIC_ONE": VALUE,
        NAME: {"kind": "LookupSecret", "url": fake.url(NAME)},
        "SLOW": {"kind": "LookupSecret", "url": fake.url("SLOW")},
        "GONE": {"kind": "LookupSecret", "url": fake.url("GONE")},
        "ELSEWHERE": {"kind": "LookupSecret", "url": format!("{origin}/{NAME}")},
    }});
    assert_eq!(app.post("/api/secrets", &secrets).await.0, 200);
    let conv_secret = json!({"secrets": {"CONV_ONE": "conversation-value-6a2d"}});
    assert_eq!(app.post(&format!("/api/conversations/{CONV}/secrets"), &conv_secret).await.0, 200);

    // Lookups: a miss, then a hit; a 404 (an error with a 4xx answer).
    for _ in 0..2 {
        let (status, body) = app.post("/api/secrets/resolve", &json!({"names": [NAME]})).await;
        assert_eq!((status, &body["resolved"]), (200, &json!([NAME])), "{body}");
    }
    let (_, body) = app.post("/api/secrets/resolve", &json!({"names": ["GONE"]})).await;
    assert_eq!(body["failed"][0]["name"], "GONE", "{body}");

    // Single flight: a second caller arrives while the first one's request is held upstream.
    fake.fault("SLOW", Fault::Delay(Duration::from_secs(3)));
    let first = tokio::spawn({
        let req = app.req(Method::POST, "/api/secrets/resolve").json(&json!({"names": ["SLOW"]}));
        async move { req.send().await.unwrap().status() }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fake.hits("SLOW") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first lookup never reached upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = app.post("/api/secrets/resolve", &json!({"names": ["SLOW"]})).await;
    assert_eq!((status, &body["resolved"]), (200, &json!(["SLOW"])), "{body}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(fake.hits("SLOW"), 1, "one upstream request for both callers");

    // Commands: one that prints secrets (masked), one that times out.
    let (status, out) = app
        .post("/api/commands", &json!({"command": format!("echo $STATIC_ONE ${NAME}"), "timeout": 20}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["stdout"], "<secret-hidden> <secret-hidden>\n");
    let (status, out) = app.post("/api/commands", &json!({"command": "sleep 30", "timeout": 1})).await;
    assert_eq!((status, &out["timed_out"]), (200, &json!(true)), "{out}");
    // `/mask` passes through the masker too.
    let (status, out) = app.post("/api/mask", &json!({"text": format!("x {VALUE} y")})).await;
    assert_eq!((status, out["text"].as_str()), (200, Some("x <secret-hidden> y")));

    // Raw paths that must stay out of the labels: an unknown route, and an unknown route
    // under a conversation.
    assert_eq!(app.get(&format!("/{PATH}")).await.0, 404);
    assert_eq!(app.get(&format!("/api/conversations/{CONV}/{PATH}")).await.0, 404);

    let after = scrape(&app.base, &app.client).await;
    let moved = |series: &str, at_least: f64| {
        let d = grew(&before, &after, series);
        assert!(d >= at_least, "{series} grew by {d}, expected at least {at_least}\n{after}");
    };
    moved("secret_sidecar_http_requests_total{method=\"POST\",route=\"/api/secrets\",status=\"200\"}", 1.0);
    moved(
        "secret_sidecar_http_requests_total{method=\"POST\",route=\"/api/conversations/{id}/secrets\",status=\"200\"}",
        1.0,
    );
    moved("secret_sidecar_http_request_duration_seconds_count{route=\"/api/commands\"}", 2.0);
    moved("secret_sidecar_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}", 1.0);
    moved("secret_sidecar_lookups_total{outcome=\"miss\"}", 1.0);
    moved("secret_sidecar_lookups_total{outcome=\"hit\"}", 1.0);
    moved("secret_sidecar_lookups_total{outcome=\"error\"}", 1.0);
    moved("secret_sidecar_upstream_requests_total{target=\"secret\",status_class=\"2xx\"}", 2.0);
    moved("secret_sidecar_upstream_requests_total{target=\"secret\",status_class=\"4xx\"}", 1.0);
    moved("secret_sidecar_upstream_request_duration_seconds_count{target=\"secret\"}", 3.0);
    moved("secret_sidecar_lookup_flight_joins_total", 1.0);
    moved("secret_sidecar_commands_started_total", 2.0);
    moved("secret_sidecar_commands_finished_total{ending=\"exited\"}", 1.0);
    moved("secret_sidecar_commands_finished_total{ending=\"timed_out\"}", 1.0);
    moved("secret_sidecar_command_duration_seconds_count", 2.0);
    moved("secret_sidecar_masked_bytes_total", 1.0);
    moved("secret_sidecar_mask_replacements_total", 3.0);
    assert_eq!(sample(&after, "secret_sidecar_secrets_registered{scope=\"sandbox\"}"), 5.0, "{after}");
    assert_eq!(sample(&after, "secret_sidecar_secrets_registered{scope=\"conversation\"}"), 1.0, "{after}");

    for marker in [NAME, VALUE, LOOKED_UP, HOST, KEY, CONV, PATH, "conversation-value", "slow-value", "GONE"]
    {
        assert!(!after.contains(marker), "{marker} reached /metrics:\n{after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_runs_are_counted() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("DISCOVERED_ONE", b"discovered-value-40c1", None);
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--settings-url", &fake.base, "--sandbox-id", "sb-1"],
        &[("SESSION_API_KEY", KEY)],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let ok = "secret_sidecar_discovery_runs_total{result=\"ok\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&app.base, &client).await;
        if sample(&text, ok) >= 1.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no discovery run counted:\n{}", app.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&text, "secret_sidecar_discovery_runs_total{result=\"error\"}"), 0.0);
    assert_eq!(sample(&text, "secret_sidecar_secrets_registered{scope=\"sandbox\"}"), 1.0, "{text}");
    let list = "secret_sidecar_upstream_requests_total{target=\"secret_list\",status_class=\"2xx\"}";
    assert!(sample(&text, list) >= 1.0, "{text}");
    assert!(!text.contains("DISCOVERED_ONE") && !text.contains("sb-1"), "{text}");
}

#[tokio::test]
async fn a_saturated_service_is_still_scraped() {
    let app = TestApp::spawn_with(&["--max-concurrent-requests", "1"], &[]).await;
    let _held = app.state.take_request_slot().unwrap();
    assert_eq!(json_of(app.req(Method::GET, "/api/secrets").send().await.unwrap()).await.0, 429);
    let text = scrape(&app.base, &app.client).await;
    let busy = "secret_sidecar_http_requests_total{method=\"GET\",route=\"/api/secrets\",status=\"429\"}";
    assert_eq!(sample(&text, busy), 1.0, "{text}");
    // The key is still required.
    assert_eq!(app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().status(), 401);
}
