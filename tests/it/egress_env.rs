//! Egress mode as a command sees it: a bound secret is its placeholder in the environment
//! (and in `/proc/self/environ`), the proxy and CA variables go only to commands that hold a
//! placeholder, the credential lives exactly as long as the command, and the registration
//! and list routes check and show bindings without ever showing a placeholder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use secrecy::SecretBox;
use secret_sidecar::AppState;
use secret_sidecar::auth::ApiKeys;
use secret_sidecar::cli::ServeArgs;
use secret_sidecar::config::{Config, Env};
use secret_sidecar::server::{Listener, serve};
use serde_json::{Value, json};

use crate::common::bin::BinApp;
use crate::common::fake_settings::FakeSettings;
use crate::common::{KEY, TestApp, json_of};

/// A GitHub-classic-shaped value (36 base62 characters after `ghp_`).
const GH_VALUE: &str = "ghp_R3alT0kenValue0123456789abcdefGHIJ";
const HIDDEN: &str = "<secret-hidden>";

/// A fresh directory for this test's CA bundle.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecar-egress-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The service in-process with the test CA's PEM in the commands' bundle.
async fn spawn(args: &[&str], env: &[(&str, &str)]) -> TestApp {
    spawn_keyed(args, env, None).await
}

/// [`spawn`], with placeholders derived from `placeholder_key` (as a state key provides).
async fn spawn_keyed(args: &[&str], env: &[(&str, &str)], placeholder_key: Option<[u8; 32]>) -> TestApp {
    let mut argv = vec!["secret-sidecar", "--listen", "127.0.0.1:0"];
    if !args.contains(&"--egress-listen") {
        argv.extend(["--egress-listen", "127.0.0.1:0"]);
    }
    argv.extend_from_slice(args);
    let args = ServeArgs::parse_from(argv).expect("test flags parse");
    let path = std::env::var("PATH").unwrap_or_default();
    let mut vars = vec![("SESSION_API_KEY", KEY), ("PATH", path.as_str())];
    vars.extend_from_slice(env);
    let mut config = Config::new(&args, &Env::from_pairs(vars)).expect("test config is valid");
    config.egress.placeholder_key = placeholder_key.map(|k| Arc::new(SecretBox::new(Box::new(k))));
    let keys = ApiKeys::load(&config.auth).expect("keys load");
    let listener = Listener::bind(&config.listen).await.expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(&config, keys).expect("state builds");
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    TestApp { base, state, client }
}

async fn register(app: &TestApp, secrets: Value) -> (u16, Value) {
    app.post("/api/secrets", &json!({ "secrets": secrets })).await
}

async fn run(app: &TestApp, body: Value) -> Value {
    let (status, out) = app.post("/api/commands", &body).await;
    assert_eq!(status, 200, "{out}");
    out
}

/// `NAME=value` lines of the command's `/proc/self/environ`, as a map.
fn environ(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

const PRINT_ENVIRON: &str = "cat /proc/self/environ | tr '\\0' '\\n'";

#[tokio::test]
async fn a_bound_secret_is_its_placeholder_with_the_proxy_and_ca_variables() {
    let dir = temp_dir("env");
    let bundle = dir.join("bundle.pem");
    let system = dir.join("system.pem");
    std::fs::write(&system, "SYSTEM-BUNDLE\n").unwrap();
    let app = spawn(
        &["--egress-bind", "GITHUB_TOKEN=api.github.com", "--egress-ca-bundle", bundle.to_str().unwrap()],
        &[("NO_PROXY", "internal.example"), ("SSL_CERT_FILE", system.to_str().unwrap())],
    )
    .await;
    assert_eq!(register(&app, json!({"GITHUB_TOKEN": GH_VALUE, "PLAIN": "plain-value-1234"})).await.0, 200);

    let out = run(
        &app,
        json!({"command": PRINT_ENVIRON, "secrets": ["GITHUB_TOKEN"], "env": {"no_proxy": "corp.example"}}),
    )
    .await;
    let stdout = out["stdout"].as_str().unwrap();
    assert!(!stdout.contains(GH_VALUE) && !stdout.contains(HIDDEN), "{stdout}");
    let env = environ(stdout);
    let placeholder = env.get("GITHUB_TOKEN").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(placeholder.len(), GH_VALUE.len());
    assert!(placeholder.starts_with("ghp_") && placeholder != GH_VALUE, "{placeholder}");
    assert_eq!(out["exported"], json!(["GITHUB_TOKEN"]), "{out}");

    let proxy = &env["HTTPS_PROXY"];
    let addr = app.state.egress_proxy_addr().expect("the proxy listens");
    assert!(proxy.starts_with("http://cmd:") && proxy.ends_with(&format!("@{addr}")), "{proxy}");
    for var in ["HTTP_PROXY", "http_proxy", "https_proxy"] {
        assert_eq!(&env[var], proxy, "{var}");
    }
    assert_eq!(env["NO_PROXY"], "internal.example,localhost,127.0.0.1,::1");
    assert_eq!(env["no_proxy"], "corp.example,localhost,127.0.0.1,::1");
    assert_eq!(env["NODE_USE_ENV_PROXY"], "1");
    for var in
        ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"]
    {
        assert_eq!(env[var], bundle.to_str().unwrap(), "{var}");
    }
    let text = std::fs::read_to_string(&bundle).unwrap();
    let ca = app.state.egress_ca_pem().expect("a CA");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert!(text.starts_with("SYSTEM-BUNDLE\n") && text.contains(ca), "{text}");

    // The same placeholder next time (per secret, not per command); the real value is still
    // masked wherever a command prints it some other way.
    let out = run(&app, json!({"command": format!("printf '%s\\n' \"$GITHUB_TOKEN\" {GH_VALUE}")})).await;
    assert_eq!(out["stdout"], format!("{placeholder}\n{HIDDEN}\n"), "{out}");

    // A command without a placeholder gets none of it, and an unbound secret is as before.
    let out = run(&app, json!({"command": PRINT_ENVIRON, "secrets": ["PLAIN"]})).await;
    let stdout = out["stdout"].as_str().unwrap();
    let env = environ(stdout);
    assert_eq!(env["PLAIN"], HIDDEN, "unbound values are exported and masked");
    for var in
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NODE_USE_ENV_PROXY", "CURL_CA_BUNDLE"]
    {
        assert!(!env.contains_key(var), "{var} in {stdout}");
    }
    assert_eq!(env["NO_PROXY"], "internal.example", "inherited as it was");
    assert_eq!(env["SSL_CERT_FILE"], system.to_str().unwrap(), "inherited as it was");
    assert_eq!(app.state.grants().live_count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_credential_lives_exactly_as_long_as_its_command() {
    let dir = temp_dir("cred");
    let (token_file, go) = (dir.join("token"), dir.join("go"));
    let app = spawn(&["--egress-bind", "GITHUB_TOKEN=api.github.com"], &[]).await;
    assert_eq!(register(&app, json!({"GITHUB_TOKEN": GH_VALUE})).await.0, 200);
    let command = format!(
        "printf '%s' \"$HTTPS_PROXY\" > {t}.tmp && mv {t}.tmp {t}; while [ ! -e {go} ]; do sleep 0.05; done; echo \"$GITHUB_TOKEN\" >/dev/null",
        t = token_file.display(),
        go = go.display()
    );
    let req = app.req(Method::POST, "/api/commands").json(&json!({"command": command, "timeout": 120}));
    let running = tokio::spawn(req.send());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let proxy = loop {
        if let Ok(p) = std::fs::read_to_string(&token_file) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "the command never wrote its proxy URL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token =
        proxy.strip_prefix("http://cmd:").and_then(|r| r.split_once('@')).map(|(t, _)| t.to_owned()).unwrap();
    assert_eq!(app.state.grants().live_count(), 1);
    let grants = app.state.grants().lookup(token.as_bytes()).expect("live while the command runs");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].name, "GITHUB_TOKEN");

    // Another command cannot be handed the live token through its request env.
    let out =
        run(&app, json!({"command": "printf '%s' \"${STOLEN:-unset}\"", "env": {"STOLEN": proxy}})).await;
    assert_eq!(out["stdout"], "unset", "{out}");

    std::fs::write(&go, "").unwrap();
    let (status, body) = json_of(running.await.unwrap().unwrap()).await;
    assert_eq!((status, body["exit_code"].as_i64()), (200, Some(0)), "{body}");
    assert!(app.state.grants().lookup(token.as_bytes()).is_none(), "revoked when the command ended");
    assert_eq!(app.state.grants().live_count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_list_shows_the_effective_binding_and_never_a_placeholder() {
    let app = spawn(
        &["--egress-defaults", "--egress-bind", "MY_KEY=api.example.com;header=X-Api-Key;query=key"],
        &[],
    )
    .await;
    let secrets = json!({
        "OPENAI_API_KEY": "sk-proj-0123456789abcdefABCDEF",
        "MY_KEY": "my-key-value-0123456789",
        "OWN": {"kind": "StaticSecret", "value": "own-value-0123456789", "egress_hosts": ["*.Example.org", "api.example.net"]},
        "UNBOUND": "unbound-value-0123",
    });
    assert_eq!(register(&app, secrets).await.0, 200);
    let out = run(
        &app,
        json!({"command": "printf '%s %s %s' \"$OPENAI_API_KEY\" \"$MY_KEY\" \"$OWN\"", "secrets": "all"}),
    )
    .await;
    let placeholders: Vec<String> = out["stdout"].as_str().unwrap().split(' ').map(str::to_owned).collect();
    assert_eq!(placeholders.len(), 3, "{out}");
    assert!(
        placeholders[0].starts_with("sk-proj-") && !placeholders.iter().any(|p| p.contains(HIDDEN)),
        "{out}"
    );

    let (status, list) = app.get("/api/secrets").await;
    assert_eq!(status, 200);
    let by_name =
        |n: &str| list["secrets"].as_array().unwrap().iter().find(|e| e["name"] == n).unwrap().clone();
    assert_eq!(by_name("OPENAI_API_KEY")["egress"]["hosts"], json!(["api.openai.com"]));
    assert_eq!(
        by_name("MY_KEY")["egress"],
        json!({"hosts": ["api.example.com"], "headers": ["x-api-key"], "query": ["key"]})
    );
    assert_eq!(by_name("OWN")["egress"]["hosts"], json!(["*.example.org", "api.example.net"]));
    assert!(by_name("UNBOUND").get("egress").is_none());
    let text = list.to_string();
    for p in &placeholders {
        assert!(!text.contains(p.as_str()), "placeholder listed: {text}");
    }
}

#[tokio::test]
async fn bad_bindings_are_422_naming_the_field_never_the_text() {
    let app = spawn(&["--egress-bind", "SHORT_BOUND=api.example.com"], &[]).await;
    let entry = |extra: Value| {
        let mut e = json!({"kind": "StaticSecret", "value": "a-long-enough-value-123"});
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    let cases = [
        (entry(json!({"egress_hosts": ["10.0.0.1"]})), "egress_hosts"),
        (entry(json!({"egress_hosts": ["[::1]"]})), "egress_hosts"),
        (entry(json!({"egress_hosts": ["*.com"]})), "egress_hosts"),
        (entry(json!({"egress_hosts": ["*.co.uk"]})), "egress_hosts"),
        (entry(json!({"egress_hosts": []})), "egress_hosts"),
        (entry(json!({"egress_hosts": ["sekrit-canary.example:443"]})), "egress_hosts"),
        (entry(json!({"egress_hosts": ["a.example.com"], "egress_headers": ["Host"]})), "egress_headers"),
        (
            entry(json!({"egress_hosts": ["a.example.com"], "egress_headers": ["sekrit canary"]})),
            "egress_headers",
        ),
        (entry(json!({"egress_hosts": ["a.example.com"], "egress_query": ["a=sekrit"]})), "egress_query"),
        (entry(json!({"egress_headers": ["X-Key"]})), "egress_hosts"),
        (
            json!({"kind": "StaticSecret", "value": "short-sekrit", "egress_hosts": ["a.example.com"]}),
            "value",
        ),
    ];
    for (e, field) in cases {
        let (status, body) = register(&app, json!({"N": e})).await;
        assert_eq!(status, 422, "{e}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "secrets", "N", field]), "{e}: {body}");
        assert!(!body.to_string().contains("sekrit"), "{body}");
    }
    // A value bound by name is held to the same rule at registration.
    let (status, body) = register(&app, json!({"SHORT_BOUND": "short-sekrit"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "secrets", "SHORT_BOUND", "value"]));
    assert!(!body.to_string().contains("sekrit"), "{body}");
    let (status, list) = app.get("/api/secrets").await;
    assert_eq!((status, list["secrets"].as_array().map(Vec::len)), (200, Some(0)), "nothing was kept");
}

#[tokio::test]
async fn a_looked_up_value_too_short_to_bind_fails_the_command() {
    let fake = FakeSettings::start(KEY).await;
    fake.set("TOK", b"short-value", None);
    let app =
        spawn(&["--settings-url", fake.base.as_str(), "--egress-bind", "TOK=api.example.com"], &[]).await;
    let lookup = json!({"TOK": {"kind": "LookupSecret", "url": fake.url("TOK")}});
    assert_eq!(register(&app, lookup).await.0, 200);
    let (status, body) = app.post("/api/commands", &json!({"command": "true", "secrets": ["TOK"]})).await;
    assert_eq!(status, 424, "{body}");
    let error = body["missing"][0]["error"].as_str().unwrap();
    assert!(error.contains("TOK") && error.contains("too short to bind"), "{body}");
    assert!(!body.to_string().contains("short-value"), "{body}");
}

#[tokio::test]
async fn a_bound_value_is_never_exported_raw_under_another_name() {
    let app = spawn(&["--egress-bind", "GITHUB_TOKEN=api.github.com"], &[]).await;
    let secrets = json!({"GITHUB_TOKEN": GH_VALUE, "COPY": GH_VALUE, "OTHER": "other-value-01234"});
    assert_eq!(register(&app, secrets).await.0, 200);
    let (status, body) = app.post("/api/commands", &json!({"command": "true", "secrets": ["COPY"]})).await;
    assert_eq!(status, 424, "{body}");
    assert!(body["missing"][0]["error"].as_str().unwrap().contains("bound to egress hosts"), "{body}");
    // Implicitly used, it is skipped; the command still runs with the rest.
    // (`printenv COPY` names it without a `$`: an implicit use.)
    let out =
        run(&app, json!({"command": "printf '%s|%s' \"$(printenv COPY || echo unset)\" \"$OTHER\""})).await;
    assert_eq!(out["stdout"], format!("unset|{HIDDEN}"), "{out}");
    assert_eq!(out["skipped"], json!(["COPY"]), "{out}");
}

#[tokio::test]
async fn egress_off_exports_values_as_before() {
    let app = spawn(&["--egress", "off", "--egress-bind", "GITHUB_TOKEN=api.github.com"], &[]).await;
    assert_eq!(register(&app, json!({"GITHUB_TOKEN": GH_VALUE})).await.0, 200);
    let out = run(&app, json!({"command": PRINT_ENVIRON, "secrets": ["GITHUB_TOKEN"]})).await;
    let env = environ(out["stdout"].as_str().unwrap());
    assert_eq!(env["GITHUB_TOKEN"], HIDDEN);
    assert!(!env.contains_key("HTTPS_PROXY"));
    let (_, list) = app.get("/api/secrets").await;
    assert!(list["secrets"][0].get("egress").is_none(), "{list}");
}

#[tokio::test]
async fn the_binary_takes_bindings_from_its_environment_and_defaults() {
    let dir = temp_dir("bin");
    let bundle = dir.join("bundle.pem");
    let app = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--egress-defaults"],
        &[
            ("SESSION_API_KEY", KEY),
            ("SECRET_SIDECAR_EGRESS_BIND", "MY_TOKEN=api.example.com MY_OTHER=*.example.org"),
            ("SECRET_SIDECAR_EGRESS_CA_BUNDLE", bundle.to_str().unwrap()),
        ],
    )
    .unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let post = |path: &str, body: Value| {
        client.post(format!("{}{path}", app.base)).header("X-Session-API-Key", KEY).json(&body).send()
    };
    let secrets = json!({"secrets": {"MY_TOKEN": "my-token-value-0123456789", "MY_OTHER": "my-other-value-0123456789", "ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"}});
    assert_eq!(post("/api/secrets", secrets).await.unwrap().status(), 200);
    let cmd = json!({"command": PRINT_ENVIRON, "secrets": "all"});
    let (status, out) = json_of(post("/api/commands", cmd).await.unwrap()).await;
    assert_eq!(status, 200, "{out}");
    let stdout = out["stdout"].as_str().unwrap();
    let env = environ(stdout);
    for (name, value) in [
        ("MY_TOKEN", "my-token-value-0123456789"),
        ("MY_OTHER", "my-other-value-0123456789"),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
    ] {
        assert_eq!(env[name].len(), value.len(), "{name}");
        assert!(env[name] != value && env[name] != HIDDEN, "{name}: {stdout}");
    }
    assert!(env["ANTHROPIC_API_KEY"].starts_with("sk-ant-api03-"));
    assert!(env["HTTPS_PROXY"].starts_with("http://cmd:"), "{stdout}");
    assert!(std::fs::read_to_string(&bundle).is_ok(), "the bundle is written at start");
    let logs = app.logs();
    let token = env["HTTPS_PROXY"].trim_start_matches("http://cmd:").split('@').next().unwrap().to_owned();
    assert!(!logs.contains(&token), "the proxy token was logged");
    for value in ["my-token-value-0123456789", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"] {
        assert!(!logs.contains(value), "a value was logged");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn placeholders_survive_a_restart_with_a_placeholder_key_and_only_then() {
    let placeholder = |app: TestApp| async move {
        assert_eq!(register(&app, json!({"GITHUB_TOKEN": GH_VALUE})).await.0, 200);
        let out = run(&app, json!({"command": "printf '%s' \"$GITHUB_TOKEN\""})).await;
        out["stdout"].as_str().unwrap().to_owned()
    };
    let args = ["--egress-bind", "GITHUB_TOKEN=api.github.com"];
    let first = placeholder(spawn_keyed(&args, &[], Some([5; 32])).await).await;
    let again = placeholder(spawn_keyed(&args, &[], Some([5; 32])).await).await;
    assert_eq!(first, again);
    assert!(first.starts_with("ghp_") && first != GH_VALUE, "{first}");
    let random = placeholder(spawn(&args, &[]).await).await;
    assert_ne!(first, random);
    assert_ne!(random, placeholder(spawn(&args, &[]).await).await, "random per start");
}

#[tokio::test]
async fn the_ca_and_bundle_are_made_by_the_first_command_that_holds_a_placeholder() {
    let dir = temp_dir("lazy");
    let bundle = dir.join("bundle.pem");
    let app = spawn(&["--egress-ca-bundle", bundle.to_str().unwrap()], &[]).await;
    let own = json!({"kind": "StaticSecret", "value": GH_VALUE, "egress_hosts": ["api.github.com"]});
    assert_eq!(register(&app, json!({"PLAIN": "plain-value-1234", "OWN": own})).await.0, 200);

    // No binding at start: nothing is made until a command needs it.
    assert!(app.state.egress_ca_pem().is_none() && !bundle.exists());
    let out = run(&app, json!({"command": "true", "secrets": ["PLAIN"]})).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(app.state.egress_ca_pem().is_none() && !bundle.exists(), "a command without placeholders");

    let out = run(&app, json!({"command": "printf '%s' \"$SSL_CERT_FILE\"", "secrets": ["OWN"]})).await;
    assert_eq!(out["stdout"], bundle.to_str().unwrap(), "{out}");
    let ca = app.state.egress_ca_pem().expect("made for the command").to_owned();
    assert!(std::fs::read_to_string(&bundle).unwrap().contains(&ca));
    // The proxy answers (407 without a credential), so it was started too.
    let addr = app.state.egress_proxy_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 407");
    let _ = std::fs::remove_dir_all(&dir);
}
