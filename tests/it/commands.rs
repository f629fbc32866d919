//! Running commands through the API: which secrets are exported, the child's environment,
//! process lifetime, and masking of everything the command prints.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{CONV_HEX, KEY, TestApp, json_of};

const SECRET: &str = "s3cr3t-value-ab12";

async fn run(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.post(path, &body).await
}

async fn cmd(app: &TestApp, command: &str) -> Value {
    let (status, body) = run(app, "/api/commands", json!({"command": command, "timeout": 20})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn pid_alive(pid: i32) -> bool {
    // A zombie (never reaped by this sandbox's init) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

async fn assert_gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) {
        assert!(tokio::time::Instant::now() < deadline, "process {pid} outlived its request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn selection_rules() {
    let app = TestApp::spawn().await;
    app.post("/api/secrets", &json!({"secrets": {"API": "api-value-1", "API_KEY": "apikey-value-2", "OTHER": "other-value-3", "EMPTY": ""}})).await;
    // $NAME is explicit; API (a substring of API_KEY) is implicit; OTHER is not referenced.
    let out = cmd(&app, "echo $API_KEY").await;
    assert_eq!(out["exported"], json!(["API", "API_KEY"]));
    assert_eq!(out["stdout"], "<secret-hidden>\n");
    // Case-insensitive substring.
    assert_eq!(cmd(&app, "echo other").await["exported"], json!(["OTHER"]));
    // An explicit list, and "all".
    let (_, out) = run(&app, "/api/commands", json!({"command": "true", "secrets": ["OTHER"]})).await;
    assert_eq!(out["exported"], json!(["OTHER"]));
    let (_, out) = run(&app, "/api/commands", json!({"command": "true", "secrets": "all"})).await;
    assert_eq!(out["exported"], json!(["API", "API_KEY", "OTHER"]), "EMPTY has no value");
    // Inherited by a conversation, which can override.
    let conv = format!("/api/conversations/{CONV_HEX}/commands");
    app.post(
        &format!("/api/conversations/{CONV_HEX}/secrets"),
        &json!({"secrets": {"OTHER": "conv-other-4"}}),
    )
    .await;
    let (_, out) = run(&app, &conv, json!({"command": "printf %s \"$OTHER $API\""})).await;
    assert_eq!(out["exported"], json!(["API", "OTHER"]));
    assert_eq!(out["stdout"], "<secret-hidden> <secret-hidden>");
}

#[tokio::test]
async fn explicit_missing_is_424_implicit_missing_is_skipped() {
    let app = TestApp::spawn().await;
    app.post("/api/secrets", &json!({"secrets": {"EMPTY": "", "OK": "ok-value-123"}})).await;
    let (status, body) = run(&app, "/api/commands", json!({"command": "echo $EMPTY $OK"})).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["missing"], json!([{"name": "EMPTY", "error": "secret EMPTY has no value"}]));
    let (status, body) = run(&app, "/api/commands", json!({"command": "true", "secrets": ["NOPE"]})).await;
    assert_eq!((status, &body["missing"][0]["name"]), (424, &json!("NOPE")));
    let (status, body) =
        run(&app, "/api/commands", json!({"command": "echo $EMPTY $OK", "on_missing": "skip"})).await;
    assert_eq!(status, 200);
    assert_eq!((&body["exported"], &body["skipped"]), (&json!(["OK"]), &json!(["EMPTY"])));
    // Implicit (no $): never a 424.
    let (status, body) = run(&app, "/api/commands", json!({"command": "echo empty"})).await;
    assert_eq!((status, &body["skipped"]), (200, &json!(["EMPTY"])));
}

#[tokio::test]
async fn discovered_lowercase_names_get_an_upper_case_alias() {
    let fake = crate::common::fake_settings::FakeSettings::start(KEY).await;
    fake.set("github_token", b"ghp_aliasvalue123", None);
    let app = TestApp::spawn_with(&["--settings-url", &fake.base], &[]).await;
    let url = url::Url::parse(&format!("{}/api/v1/sandboxes/sb-1/settings/secrets", fake.base)).unwrap();
    let cfg = secret_sidecar::config::DiscoveryConfig { list_url: url, interval: Duration::from_secs(300) };
    secret_sidecar::secrets::discovery::discover_once(&cfg, app.state.registry(), app.state.resolver())
        .await
        .unwrap();
    let out = cmd(&app, "printf %s \"$GITHUB_TOKEN\"").await;
    assert_eq!(out["exported"], json!(["GITHUB_TOKEN", "github_token"]));
    assert_eq!(out["stdout"], "<secret-hidden>");
    assert_eq!(fake.hits("github_token"), 1, "one entry, one lookup");
}

#[tokio::test]
async fn the_child_environment_holds_no_keys() {
    let app = TestApp::spawn_with(
        &["--strip-env", "STRIP_ME", "--allow-env-header", "HDR_VAR"],
        &[
            ("OH_SESSION_API_KEYS_0", "session-key-0123"),
            ("OH_SECRET_KEY", "oh-secret-key-4567"),
            ("OPENHANDS_API_KEY", "oh-api-key-89ab"),
            ("SECRET_SIDECAR_ANYTHING", "sidecar-cdef"),
            ("LEAKY", "prefix-test-key-5f1d-suffix"),
            ("STRIP_ME", "strip-value"),
            ("HDR_VAR", "header-value"),
            ("KEPT", "kept-value"),
        ],
    )
    .await;
    app.post("/api/secrets", &json!({"secrets": {"MINE": "mine-value-0000"}})).await;
    let (status, out) =
        run(&app, "/api/commands", json!({"command": "env; echo $MINE", "env": {"EXTRA": "extra-value"}}))
            .await;
    assert_eq!(status, 200);
    let env = out["stdout"].as_str().unwrap();
    for gone in [
        "SESSION_API_KEY",
        "OH_SESSION_API_KEYS_0",
        "OH_SECRET_KEY",
        "OPENHANDS_API_KEY",
        "SECRET_SIDECAR_ANYTHING",
        "LEAKY",
        "STRIP_ME",
        "HDR_VAR",
        KEY,
        "session-key-0123",
    ] {
        assert!(!env.contains(gone), "{gone} reached the child:\n{env}");
    }
    for kept in ["KEPT=kept-value", "AI_AGENT=openhands", "EXTRA=extra-value", "MINE=<secret-hidden>"] {
        assert!(env.contains(kept), "{kept} missing:\n{env}");
    }
}

#[tokio::test]
async fn exit_codes_signals_timeouts() {
    let app = TestApp::spawn().await;
    let out = cmd(&app, "echo out; echo err >&2; exit 42").await;
    assert_eq!(
        (&out["exit_code"], &out["stdout"], &out["stderr"], &out["signal"]),
        (&json!(42), &json!("out\n"), &json!("err\n"), &json!(null))
    );
    let out = cmd(&app, "kill -TERM $$").await;
    assert_eq!((&out["exit_code"], &out["signal"]), (&json!(143), &json!(15)));
    let (status, out) =
        run(&app, "/api/commands", json!({"command": "sleep 1000 & echo $!; sleep 1000", "timeout": 1}))
            .await;
    assert_eq!(status, 200);
    assert_eq!((&out["timed_out"], &out["exit_code"]), (&json!(true), &json!(-1)));
    assert_gone(out["stdout"].as_str().unwrap().trim().parse().unwrap()).await;
    // A grandchild left behind by a command that exits is killed too.
    let out = cmd(&app, "sleep 1000 >/dev/null 2>&1 & echo $!").await;
    assert_gone(out["stdout"].as_str().unwrap().trim().parse().unwrap()).await;
    // Bad cwd and timeout bounds.
    assert_eq!(
        run(&app, "/api/commands", json!({"command": "true", "cwd": "/nonexistent/dir"})).await.0,
        422
    );
    assert_eq!(run(&app, "/api/commands", json!({"command": "true", "timeout": 0})).await.0, 422);
    let out = run(&app, "/api/commands", json!({"command": "pwd", "cwd": "/tmp"})).await.1;
    assert_eq!(out["stdout"], "/tmp\n");
}

#[tokio::test]
async fn a_disconnected_stream_kills_the_command() {
    let app = TestApp::spawn().await;
    let mut r = app
        .req(Method::POST, "/api/commands/stream")
        .json(&json!({"command": "sleep 1000 & echo $!; sleep 1000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let mut text = String::new();
    while !text.contains("\"stdout\"") {
        text.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
    }
    let line = text.lines().find(|l| l.contains("\"stdout\"")).unwrap();
    let pid: i32 =
        serde_json::from_str::<Value>(line).unwrap()["data"].as_str().unwrap().trim().parse().unwrap();
    assert!(pid_alive(pid));
    drop(r);
    assert_gone(pid).await;
}

#[tokio::test]
async fn streams_frames_and_masks_split_writes() {
    let app = TestApp::spawn().await;
    app.post("/api/secrets", &json!({"secrets": {"TOK": SECRET}})).await;
    let half = SECRET.len() / 2;
    let command = format!(
        "printf %s '{}'; sleep 0.1; printf %s '{}'; echo; echo done >&2",
        &SECRET[..half],
        &SECRET[half..]
    );
    let r = app
        .req(Method::POST, "/api/commands/stream")
        .json(&json!({"command": command, "secrets": ["TOK"]}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let frames: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames[0]["type"], "start");
    assert_eq!(frames[0]["exported"], json!(["TOK"]));
    assert_eq!(frames[0]["command_id"].as_str().unwrap().len(), 32);
    let last = frames.last().unwrap();
    assert_eq!((&last["type"], &last["exit_code"]), (&json!("exit"), &json!(0)));
    let stdout: String =
        frames.iter().filter(|f| f["type"] == "stdout").map(|f| f["data"].as_str().unwrap()).collect();
    let stderr: String =
        frames.iter().filter(|f| f["type"] == "stderr").map(|f| f["data"].as_str().unwrap()).collect();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("<secret-hidden>\n", "done\n"));
    assert!(!text.contains(&SECRET[..half]) || !text.contains(&SECRET[half..]), "{text}");
}

/// The masking table, through real processes (the unit tests run it through every chunking).
#[tokio::test]
async fn masking_table_through_real_processes() {
    let app = TestApp::spawn().await;
    let special = "p\"a/s+s wörd☃-x";
    let long = "L".repeat(16 * 1024) + "-tail";
    let multi = "line-one-aaa\nline-two-bbb";
    // Encodings are derived for values up to 4 KiB; this one wraps over several lines.
    let wrap: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    app.post("/api/secrets", &json!({"secrets": {"SPECIAL": special, "LONG": long, "MULTI": multi, "ABC": "abcd", "ABCDEF": "abcdefgh", "WRAP": wrap}})).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = special
        .replace('%', "%25")
        .replace('"', "%22")
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace(' ', "%20")
        .replace("ö", "%C3%B6")
        .replace("☃", "%E2%98%83");
    let json_escaped = serde_json::to_string(special).unwrap().trim_matches('"').to_owned();
    let wrapped: String = {
        let enc = b64.encode(&wrap);
        enc.as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let inner = b64.encode(format!("xx{special}yy"));
    let cases: Vec<(&str, String)> = vec![
        ("start and end", format!("{special} middle {special}")),
        ("prefix values", "v=abcdefgh.".to_owned()),
        ("16 KiB value", long.clone()),
        ("base64 inside longer base64", inner),
        ("wrapped base64", wrapped),
        ("url-encoded", url.clone()),
        ("form-encoded", url.replace("%20", "+")),
        ("json-escaped", json_escaped),
        ("multi-line, CRLF", multi.replace('\n', "\r\n")),
        ("one line of a multi-line value", "line-two-bbb".to_owned()),
    ];
    for (what, printed) in cases {
        let dir = std::env::temp_dir().join(format!("ss-mask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("out");
        std::fs::write(&file, &printed).unwrap();
        let out = cmd(&app, &format!("cat {} # special long multi abc", file.display())).await;
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.contains("<secret-hidden>"), "{what}: {stdout:.200}");
        for needle in [
            special,
            "abcdefgh",
            "abcd",
            "line-one-aaa",
            "line-two-bbb",
            &long[..64],
            &b64.encode(&wrap)[..40],
        ] {
            assert!(!stdout.contains(needle), "{what}: {needle} survived: {stdout:.300}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn rotated_deleted_and_foreign_values_stay_masked() {
    let app = TestApp::spawn().await;
    let conv = |id: &str| format!("/api/conversations/{id}");
    let (a, b) = ("a".repeat(32), "b".repeat(32));
    app.post(&format!("{}/secrets", conv(&a)), &json!({"secrets": {"T": "old-value-1111"}})).await;
    app.post(&format!("{}/secrets", conv(&a)), &json!({"secrets": {"T": "new-value-2222"}})).await;
    app.post(&format!("{}/secrets", conv(&a)), &json!({"secrets": {"GONE": "deleted-value-3333"}})).await;
    app.delete(&format!("{}/secrets/GONE", conv(&a))).await;
    app.post(&format!("{}/secrets", conv(&b)), &json!({"secrets": {"OTHER": "foreign-value-4444"}})).await;
    let (_, out) = run(
        &app,
        &format!("{}/commands", conv(&a)),
        json!({"command": "echo old-value-1111 new-value-2222 deleted-value-3333 foreign-value-4444"}),
    )
    .await;
    assert_eq!(out["stdout"], "<secret-hidden> <secret-hidden> <secret-hidden> <secret-hidden>\n");
    let (status, masked) = app.post("/api/mask", &json!({"text": "x old-value-1111 y"})).await;
    assert_eq!((status, masked), (200, json!({"text": "x <secret-hidden> y"})));
    let (status, _) = app.post(&format!("{}/mask", conv(&b)), &json!({"text": "x"})).await;
    assert_eq!(status, 200);
    assert_eq!(app.post("/api/mask", &json!({"txt": "x"})).await.0, 422);
}

#[tokio::test]
async fn mask_route_is_rate_limited() {
    let app = TestApp::spawn_with(&["--mask-rate", "1"], &[]).await;
    let mut limited = false;
    for _ in 0..10 {
        let r = app.req(Method::POST, "/api/mask").json(&json!({"text": "x"})).send().await.unwrap();
        if r.status().as_u16() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            limited = true;
            break;
        }
    }
    assert!(limited, "10 quick requests at 1/s were all accepted");
}

#[tokio::test]
async fn concurrent_commands_are_bounded() {
    let app = TestApp::spawn_with(&["--max-concurrent-commands", "1"], &[]).await;
    // A real running command holds the one slot: a stream that has sent its start frame.
    let mut running = app
        .req(Method::POST, "/api/commands/stream")
        .json(&json!({"command": "echo up; sleep 30"}))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("\"stdout\"") {
        seen.push_str(&String::from_utf8_lossy(&running.chunk().await.unwrap().unwrap()));
    }
    let r = app.req(Method::POST, "/api/commands").json(&json!({"command": "true"})).send().await.unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["detail"], "too many commands running");
    drop(running);
}

#[tokio::test]
async fn refuse_unmaskable_turns_short_values_into_424() {
    let app = TestApp::spawn_with(&["--refuse-unmaskable"], &[]).await;
    app.post("/api/secrets", &json!({"secrets": {"TINY": "ab"}})).await;
    let (status, body) = run(&app, "/api/commands", json!({"command": "echo $TINY"})).await;
    assert_eq!(status, 424, "{body}");
    let plain = TestApp::spawn().await;
    plain.post("/api/secrets", &json!({"secrets": {"TINY": "ab"}})).await;
    assert_eq!(cmd(&plain, "echo $TINY").await["stdout"], "ab\n", "exported, reported masked:false");
    assert_eq!(plain.get("/api/secrets").await.1["secrets"][0]["state"]["masked"], false);
}

#[tokio::test]
async fn streamed_output_is_not_held_back_behind_long_secrets() {
    let app = TestApp::spawn().await;
    // A 16 KiB secret and 1,000 others: the old rule held back "longest pattern - 1" bytes.
    let big: String = (0..16 * 1024).map(|i| char::from(b'A' + (i * 7 % 26) as u8)).collect();
    let mut secrets = serde_json::Map::new();
    secrets.insert("BIG".into(), json!(big));
    for i in 0..1000 {
        secrets.insert(format!("MANY_{i}"), json!(format!("many-secret-value-{i:04}-x")));
    }
    let (status, _) = app.post("/api/secrets", &json!({"secrets": secrets})).await;
    assert_eq!(status, 200);
    let mut r = app
        .req(Method::POST, "/api/commands/stream")
        .json(&json!({"command": "echo first; sleep 30; echo second"}))
        .send()
        .await
        .unwrap();
    // "first" must arrive while the command still sleeps; a 10 s wait is far below the 30 s
    // after which the old rule would have released it.
    let mut text = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while !text.contains("first") {
            text.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
        }
    })
    .await;
    assert!(got.is_ok(), "\"first\" was held back: {text}");
    assert!(!text.contains("second"), "{text}");
}
