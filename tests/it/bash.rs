//! The reference-compatible bash routes, spoken to exactly as the OpenHands SDK's
//! `RemoteWorkspace.execute_command` does: start, then poll `bash_events/search` every
//! 0.1 s with `command_id__eq`, `kind__eq=BashOutput`, `sort_order=TIMESTAMP`, `limit=100`
//! and `order__gt`, joining stdout and stderr until an event carries an exit code.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{CONV_HEX, TestApp};

/// The SDK's polling loop; returns (exit_code, stdout, stderr, events seen).
async fn sdk_execute(app: &TestApp, body: Value) -> (i64, String, String, usize) {
    let (status, cmd) = app.post("/api/bash/start_bash_command", &body).await;
    assert_eq!(status, 200, "{cmd}");
    assert_eq!(cmd["kind"], "BashCommand");
    let id = cmd["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let (mut stdout, mut stderr, mut last_order, mut seen) =
        (String::new(), String::new(), None::<i64>, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut q = format!(
            "/api/bash/bash_events/search?command_id__eq={id}&kind__eq=BashOutput&sort_order=TIMESTAMP&limit=100"
        );
        if let Some(o) = last_order {
            q.push_str(&format!("&order__gt={o}"));
        }
        let (status, page) = app.get(&q).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            let eid = item["id"].as_str().unwrap().to_owned();
            assert!(!seen.contains(&eid), "duplicate event {eid}");
            seen.push(eid);
            stdout.push_str(item["stdout"].as_str().unwrap_or(""));
            stderr.push_str(item["stderr"].as_str().unwrap_or(""));
            last_order = Some(item["order"].as_i64().unwrap());
            if let Some(code) = item["exit_code"].as_i64() {
                return (code, stdout, stderr, seen.len());
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no exit code");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_sdk_polling_loop_gets_masked_output_and_the_exit_code() {
    let app = TestApp::spawn().await;
    app.post("/api/secrets", &json!({"secrets": {"TOKEN": "bash-secret-9876"}})).await;
    let (code, out, err, _) =
        sdk_execute(&app, json!({"command": "echo $TOKEN; echo oops >&2; exit 7", "timeout": 30})).await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "<secret-hidden>\n", "oops\n"));
    // The echoed command text is masked too.
    let (_, cmd) =
        app.post("/api/bash/start_bash_command", &json!({"command": "echo bash-secret-9876"})).await;
    assert_eq!(cmd["command"], "echo <secret-hidden>");
    let (status, event) = app.get(&format!("/api/bash/bash_events/{}", cmd["id"].as_str().unwrap())).await;
    assert_eq!((status, &event["command"]), (200, &json!("echo <secret-hidden>")));
    assert_eq!(app.get(&format!("/api/bash/bash_events/{}", "0".repeat(32))).await.0, 404);
}

#[tokio::test]
async fn execute_returns_the_final_output_and_timeouts_are_minus_one() {
    let app = TestApp::spawn().await;
    let (status, out) =
        app.post("/api/bash/execute_bash_command", &json!({"command": "echo hi", "cwd": "/tmp"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&out["kind"], &out["exit_code"], &out["stdout"], &out["stderr"], &out["order"]),
        (&json!("BashOutput"), &json!(0), &json!("hi\n"), &json!(null), &json!(0))
    );
    let (_, out) = app
        .post("/api/bash/execute_bash_command", &json!({"command": "sleep 1000 & sleep 1000", "timeout": 1}))
        .await;
    assert_eq!(out["exit_code"], -1);
    let (_, out) =
        app.post("/api/bash/execute_bash_command", &json!({"command": "true", "cwd": "/no/such/dir"})).await;
    assert_eq!(out["exit_code"], -1);
    assert!(out["stderr"].as_str().unwrap().starts_with("Error executing command"));
}

#[tokio::test]
async fn large_output_arrives_in_one_mib_events() {
    // Room for all of it: nothing is dropped from the middle.
    let app = TestApp::spawn_with(&["--max-output-bytes", "4000000"], &[]).await;
    let (code, out, _, events) =
        sdk_execute(&app, json!({"command": "head -c 2500000 /dev/zero | tr '\\0' a"})).await;
    assert_eq!(code, 0);
    assert_eq!(out.len(), 2_500_000);
    assert!(events >= 3, "{events} events");
}

#[tokio::test]
async fn conversation_secrets_with_conversation_id() {
    let app = TestApp::spawn().await;
    app.post(
        &format!("/api/conversations/{CONV_HEX}/secrets"),
        &json!({"secrets": {"CONV_TOKEN": "conv-secret-4321"}}),
    )
    .await;
    let (code, out, _, _) =
        sdk_execute(&app, json!({"command": "echo $CONV_TOKEN", "conversation_id": CONV_HEX})).await;
    assert_eq!((code, out.as_str()), (0, "<secret-hidden>\n"));
    let (code, out, _, _) = sdk_execute(&app, json!({"command": "echo x${CONV_TOKEN}x"})).await;
    assert_eq!((code, out.as_str()), (0, "xx\n"), "not exported without the conversation");
}

#[tokio::test]
async fn search_filters_paging_and_bad_parameters() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        let (_, out) =
            app.post("/api/bash/execute_bash_command", &json!({"command": format!("echo {i}")})).await;
        assert_eq!(out["exit_code"], 0);
    }
    let (_, page) = app.get("/api/bash/bash_events/search?kind__eq=BashCommand&limit=2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next_page_id"].as_str().unwrap().to_owned();
    let (_, rest) =
        app.get(&format!("/api/bash/bash_events/search?kind__eq=BashCommand&limit=2&page_id={next}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_page_id"].is_null());
    let (_, desc) =
        app.get("/api/bash/bash_events/search?kind__eq=BashCommand&sort_order=TIMESTAMP_DESC").await;
    assert_eq!(desc["items"][0]["command"], "echo 2");
    for bad in
        ["limit=0", "limit=101", "limit=x", "sort_order=UP", "timestamp__gte=yesterday", "kind__eq=Nope"]
    {
        let (status, body) = app.get(&format!("/api/bash/bash_events/search?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    assert_eq!(app.post("/api/bash/start_bash_command", &json!({"cmd": "x"})).await.0, 422);
    assert_eq!(app.post("/api/bash/start_bash_command", &json!({"command": "x", "timeout": 0})).await.0, 422);
}

/// Every output event of a command, in order (following the pages).
async fn outputs_of(app: &TestApp, id: &str) -> Vec<Value> {
    let (mut items, mut page_id) = (Vec::new(), None::<String>);
    loop {
        let mut q =
            format!("/api/bash/bash_events/search?command_id__eq={id}&sort_order=TIMESTAMP&limit=100");
        if let Some(p) = &page_id {
            q.push_str(&format!("&page_id={p}"));
        }
        let (status, page) = app.get(&q).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_id"].as_str() {
            Some(next) => page_id = Some(next.to_owned()),
            None => break,
        }
    }
    items.sort_by_key(|o| o["order"].as_u64().unwrap());
    items
}

fn joined(outputs: &[Value], stream: &str) -> String {
    outputs.iter().filter_map(|o| o[stream].as_str()).collect()
}

#[tokio::test]
async fn output_reaches_events_while_the_command_runs() {
    let app = TestApp::spawn().await;
    let (_, cmd) = app
        .post("/api/bash/start_bash_command", &json!({"command": "echo first; sleep 4; echo second"}))
        .await;
    let id = cmd["id"].as_str().unwrap();
    // "first" is in an event of its own, seen while the command still runs (it used to wait
    // for the end, or for 1 MiB).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let outputs = outputs_of(&app, id).await;
        if let Some(o) = outputs.iter().find(|o| o["stdout"].as_str().is_some_and(|t| t.contains("first"))) {
            break o.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "first never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen["exit_code"], Value::Null, "{seen}");
    // The SDK's loop sees both lines, and execute answers with all of the output.
    let (_, out) = app
        .post("/api/bash/execute_bash_command", &json!({"command": "echo a; sleep 0.5; echo b >&2; echo c"}))
        .await;
    assert_eq!(
        (&out["stdout"], &out["stderr"], &out["exit_code"]),
        (&json!("a\nc\n"), &json!("b\n"), &json!(0))
    );
}

#[tokio::test]
async fn long_output_keeps_head_and_tail_like_commands_and_stays_bounded_while_running() {
    const MAX: usize = 300_000;
    let app = TestApp::spawn_with(&["--max-output-bytes", &MAX.to_string()], &[]).await;
    // About 15 MB of output, 50 times the cap.
    let command = "seq 1 2000000";
    let (status, reference) = app.post("/api/commands", &json!({"command": command})).await;
    assert_eq!(status, 200, "{reference}");
    let full = reference["stdout"].as_str().unwrap();
    let dropped = reference["truncated"]["stdout"].as_u64().unwrap();
    assert!(dropped > 10_000_000, "{dropped}");
    let head = secret_sidecar::exec::HEAD_BYTES;
    let expected =
        format!("{}\n[... {dropped} bytes of output dropped ...]\n{}", &full[..head], &full[head..]);

    let (_, cmd) = app.post("/api/bash/start_bash_command", &json!({"command": command})).await;
    let id = cmd["id"].as_str().unwrap().to_owned();
    // The store holds the command's head and tail, never the whole output, while it runs.
    let bound = 2 * MAX + 256 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = app.state.bash_events().total_bytes();
        assert!(stored <= bound, "{stored} bytes stored while running");
        let outputs = outputs_of(&app, &id).await;
        if outputs.iter().any(|o| !o["exit_code"].is_null()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no exit code");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.state.bash_events().total_bytes() <= bound);
    // Read afterwards, the events hold what /commands returns, with the marker in the gap.
    let outputs = outputs_of(&app, &id).await;
    assert_eq!(joined(&outputs, "stdout"), expected);
    assert_eq!(outputs.last().unwrap()["exit_code"], 0);
    // execute_bash_command answers with the same text.
    let (_, out) = app.post("/api/bash/execute_bash_command", &json!({"command": command})).await;
    assert_eq!(out["stdout"].as_str().unwrap(), expected);
}

#[tokio::test]
async fn events_are_masked_when_read_with_values_registered_later() {
    let app = TestApp::spawn().await;
    let value = "late-secret-5678";
    let (_, out) =
        app.post("/api/bash/execute_bash_command", &json!({"command": format!("echo {value}")})).await;
    assert_eq!(out["stdout"], format!("{value}\n"), "nothing to mask yet");
    let command_id = out["command_id"].as_str().unwrap().to_owned();
    let output_id = out["id"].as_str().unwrap().to_owned();

    // Registered after the events were stored.
    let (status, _) = app.post("/api/secrets", &json!({"secrets": {"LATE": value}})).await;
    assert_eq!(status, 200);
    let (_, page) = app.get("/api/bash/bash_events/search").await;
    let text = page.to_string();
    assert!(!text.contains(value), "{text}");
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["command"] == "echo <secret-hidden>"), "{text}");
    assert!(items.iter().any(|e| e["stdout"] == "<secret-hidden>\n"), "{text}");
    for id in [&command_id, &output_id] {
        let (status, event) = app.get(&format!("/api/bash/bash_events/{id}")).await;
        assert_eq!(status, 200);
        assert!(!event.to_string().contains(value), "{event}");
    }
    let (_, event) = app.get(&format!("/api/bash/bash_events/{command_id}")).await;
    assert_eq!(event["command"], "echo <secret-hidden>");
}
