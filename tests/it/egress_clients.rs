//! Egress mode with the clients agents really run (contract §8): curl, git, Python's urllib
//! and requests, npm. Each is configured only by the environment the sidecar gives the
//! command. The sidecar is the real binary; the upstream is a recording HTTPS server on
//! loopback with its own test CA (trusted through `--egress-extra-ca-file`), reached by name
//! through `--egress-resolve`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::common::bin::BinApp;
use crate::egress_proxy::upstream::FakeUpstream;

const KEY: &str = "clients-key-59c1e0f4";
/// A GitHub-classic-shaped value, bound to `HOST`.
const TOKEN: &str = "ghp_R3alV4lueOfTheT0kenXyZ0123456789ab";
/// Bound to `HOST` with a named header and query parameter.
const API_KEY: &str = "real-api-key-7c1e5f0a9b3d";
/// Bound to the npm registry's host.
const NPM_TOKEN: &str = "npm_R3alNpmT0kenValue0123456789abcdefgh";
/// Bound nowhere: exported and masked as before.
const PLAIN: &str = "plain-unbound-value-4417";
const HOST: &str = "api.test.example";
const UNBOUND: &str = "other.test.example";
const NPM_HOST: &str = "registry.test.example";
const BAD: &str = "bad.test.example";
const VALUES: [&str; 4] = [TOKEN, API_KEY, NPM_TOKEN, PLAIN];

struct Setup {
    app: BinApp,
    client: reqwest::Client,
    /// Serves HOST, UNBOUND and NPM_HOST with a CA the sidecar trusts.
    upstream: FakeUpstream,
    /// Serves BAD with a CA nobody trusts.
    untrusted: FakeUpstream,
    /// Plain http.
    plain: FakeUpstream,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(tag: &str) -> Setup {
    let upstream = FakeUpstream::https(&[HOST, UNBOUND, NPM_HOST]).await;
    let untrusted = FakeUpstream::https(&[BAD]).await;
    let plain = FakeUpstream::plain().await;
    let dir = std::env::temp_dir().join(format!("egress-clients-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("upstream-ca.pem");
    std::fs::write(&ca, &upstream.ca_pem).unwrap();
    std::fs::write(dir.join("untrusted-ca.pem"), &untrusted.ca_pem).unwrap();
    let bundle = dir.join("bundle.pem");
    let args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--egress-bind".into(),
        format!("GITHUB_TOKEN={HOST},{BAD}"),
        "--egress-bind".into(),
        format!("API_KEY={HOST};header=X-Api-Key;query=key"),
        "--egress-bind".into(),
        format!("NPM_TOKEN={NPM_HOST}"),
        "--egress-resolve".into(),
        format!("{HOST}=127.0.0.1,{UNBOUND}=127.0.0.1,{NPM_HOST}=127.0.0.1,{BAD}=127.0.0.1"),
        "--egress-extra-ca-file".into(),
        ca.display().to_string(),
        "--egress-ca-bundle".into(),
        bundle.display().to_string(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let home = dir.display().to_string();
    let app = BinApp::spawn(&argv, &[("SESSION_API_KEY", KEY), ("HOME", &home)]).expect("the sidecar starts");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let setup = Setup { app, client, upstream, untrusted, plain, dir };
    let secrets = json!({"GITHUB_TOKEN": TOKEN, "API_KEY": API_KEY, "NPM_TOKEN": NPM_TOKEN, "PLAIN": PLAIN});
    let (status, body) = setup.post("/api/secrets", json!({ "secrets": secrets })).await;
    assert_eq!(status, 200, "{body}");
    setup
}

impl Setup {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.app.base))
            .header("X-Session-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Runs `command` with `secrets`; no real value may come back, in any form.
    async fn run(&self, command: &str, secrets: &[&str]) -> Value {
        let (status, out) =
            self.post("/api/commands", json!({"command": command, "secrets": secrets, "timeout": 90})).await;
        assert_eq!(status, 200, "{out}");
        for value in VALUES {
            assert!(!out.to_string().contains(value), "a real value reached the response: {out}");
        }
        out
    }

    async fn get_text(&self, path: &str) -> String {
        let r = self.client.get(format!("{}{path}", self.app.base)).header("X-Session-API-Key", KEY);
        r.send().await.unwrap().text().await.unwrap()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.upstream.port)
    }
}

fn stdout(out: &Value) -> &str {
    out["stdout"].as_str().unwrap_or_default()
}

fn header<'a>(seen: &'a crate::egress_proxy::upstream::Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when `needle` is anywhere in what `upstream` received.
fn received(upstream: &FakeUpstream, needle: &str) -> bool {
    upstream.seen().iter().any(|s| {
        s.uri.contains(needle)
            || s.headers.values().any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
            || String::from_utf8_lossy(&s.body).contains(needle)
    })
}

#[tokio::test]
async fn curl_gets_the_value_in_bound_places_only_and_sees_placeholders_back() {
    let s = setup("curl").await;
    let url = s.url(HOST, "/echo?key=$API_KEY&other=$API_KEY");
    let cmd = format!(
        r#"curl -sS --fail "{url}" -H "Authorization: Bearer $GITHUB_TOKEN" -H "X-Api-Key: $API_KEY" -H "X-Other: $API_KEY"; printf 'env:%s\n' "$GITHUB_TOKEN""#
    );
    let out = s.run(&cmd, &["GITHUB_TOKEN", "API_KEY"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let seen = s.upstream.seen();
    let last = seen.last().expect("the upstream got the request");
    assert_eq!(header(last, "authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(header(last, "x-api-key"), Some(API_KEY));
    // An unnamed header keeps the placeholder; the named parameter got the value, the other
    // one kept the placeholder.
    let other = header(last, "x-other").unwrap();
    assert!(other != API_KEY && other.len() == API_KEY.len(), "{other}");
    assert!(last.uri.contains(&format!("key={API_KEY}&")), "{}", last.uri);
    assert!(last.uri.contains(&format!("other={other}")), "{}", last.uri);
    // The echo reflected every value, in clear and base64: the command saw placeholders.
    let printed = stdout(&out);
    let placeholder = printed.lines().find_map(|l| l.strip_prefix("env:")).unwrap();
    assert!(placeholder.starts_with("ghp_") && placeholder.len() == TOKEN.len(), "{printed}");
    assert!(printed.contains(&format!("authorization: Bearer {placeholder}")), "{printed}");
    assert!(printed.contains(&STANDARD.encode(placeholder)), "{printed}");
    assert!(!printed.contains("<secret-hidden>"), "placeholders are not masked: {printed}");
    // The unnamed places were audited: name and host, never a value.
    let logs = s.app.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("API_KEY") && l.contains(HOST) && l.to_lowercase().contains("placeholder")),
        "no audit line"
    );
    for value in VALUES {
        assert!(!logs.contains(value), "a value reached the logs");
    }
    // Metrics: unlabelled counters, no values.
    let metrics = s.get_text("/metrics").await;
    assert!(metrics.contains("egress"), "{metrics}");
    for value in VALUES {
        assert!(!metrics.contains(value));
    }
    assert!(!metrics.contains(placeholder));
    // The list shows the binding, never the placeholder.
    let list = s.get_text("/api/secrets").await;
    assert!(list.contains(HOST) && !list.contains(placeholder), "{list}");
}

#[tokio::test]
async fn the_environment_holds_placeholders_and_proxy_settings_only_when_needed() {
    let s = setup("env").await;
    let out = s.run("cat /proc/self/environ | tr '\\0' '\\n'", &["GITHUB_TOKEN", "PLAIN"]).await;
    let env = stdout(&out);
    assert!(env.contains("HTTPS_PROXY=http://cmd:") && env.contains("https_proxy=http://cmd:"), "{env}");
    assert!(env.contains("NODE_USE_ENV_PROXY=1"), "{env}");
    assert!(
        env.lines().any(|l| l.starts_with("NO_PROXY=") && l.ends_with("localhost,127.0.0.1,::1")),
        "{env}"
    );
    let ca_vars = [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "NODE_EXTRA_CA_CERTS",
        "npm_config_cafile",
    ];
    for var in ca_vars {
        assert!(env.lines().any(|l| l.starts_with(&format!("{var}="))), "{var} missing: {env}");
    }
    // The unbound secret is exported as before, and masked in output.
    assert!(env.contains("PLAIN=<secret-hidden>"), "{env}");

    let out = s.run("env | grep -ci -e proxy -e _CA_ || true", &["PLAIN"]).await;
    assert_eq!(stdout(&out).trim(), "0", "no placeholder, no proxy settings: {out}");
    let out = s.run("printf %s \"$PLAIN\"", &["PLAIN"]).await;
    assert_eq!(stdout(&out), "<secret-hidden>", "{out}");
}

#[tokio::test]
async fn git_ls_remote_spends_the_placeholder_in_basic_auth() {
    let s = setup("git").await;
    let url = s.url(HOST, "/org/repo.git").replace("https://", "https://x-access-token:$GITHUB_TOKEN@");
    let out = s.run(&format!(r#"GIT_TERMINAL_PROMPT=0 git ls-remote "{url}""#), &["GITHUB_TOKEN"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(stdout(&out).contains("refs/heads/main"), "{out}");
    let basic = format!("Basic {}", STANDARD.encode(format!("x-access-token:{TOKEN}")));
    assert!(s.upstream.seen().iter().any(|r| header(r, "authorization") == Some(basic.as_str())));
}

#[tokio::test]
async fn python_urllib_and_requests_go_through_the_proxy() {
    let s = setup("python").await;
    let url = s.url(HOST, "/py");
    let script = format!(
        r#"import os, urllib.request
r = urllib.request.Request("{url}/urllib", headers={{"Authorization": "token " + os.environ["GITHUB_TOKEN"]}})
print(urllib.request.urlopen(r, timeout=60).status)
import requests
print(requests.get("{url}/requests", headers={{"X-Api-Key": os.environ["API_KEY"]}}, timeout=60).status_code)
"#
    );
    let path = s.dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let has_requests = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_requests {
        eprintln!("python3 has no `requests`: only urllib is checked");
    }
    let out = s.run(&format!("python3 {}", path.display()), &["GITHUB_TOKEN", "API_KEY"]).await;
    let seen = s.upstream.seen();
    let token = format!("token {TOKEN}");
    assert!(seen.iter().any(|r| r.uri == "/py/urllib" && header(r, "authorization") == Some(token.as_str())));
    if has_requests {
        assert_eq!(stdout(&out), "200\n200\n", "{out}");
        assert!(seen.iter().any(|r| r.uri == "/py/requests" && header(r, "x-api-key") == Some(API_KEY)));
    }
}

#[tokio::test]
async fn npm_view_spends_the_auth_token_from_npmrc() {
    let s = setup("npm").await;
    let registry = s.url(NPM_HOST, "/npm/");
    let authority = registry.trim_start_matches("https:");
    std::fs::write(
        s.dir.join(".npmrc"),
        format!("registry={registry}\n{authority}:_authToken=${{NPM_TOKEN}}\n"),
    )
    .unwrap();
    let cmd = format!(
        "cd {} && npm view left-pad version --userconfig ./.npmrc --cache ./npm-cache --no-update-notifier",
        s.dir.display()
    );
    let out = s.run(&cmd, &["NPM_TOKEN"]).await;
    assert_eq!(stdout(&out).trim(), "1.0.0", "{out}");
    let bearer = format!("Bearer {NPM_TOKEN}");
    assert!(s.upstream.seen().iter().any(|r| header(r, "authorization") == Some(bearer.as_str())));
}

#[tokio::test]
async fn unverified_upstreams_unbound_hosts_and_plain_http_never_get_the_value() {
    let s = setup("refusals").await;
    // A bound host whose certificate does not verify: 502, and nothing arrives.
    let bad = format!("https://{BAD}:{}/x", s.untrusted.port);
    let out = s
        .run(
            &format!(r#"curl -sS -o /dev/null -w '%{{http_code}}' "{bad}" -H "Authorization: Bearer $GITHUB_TOKEN""#),
            &["GITHUB_TOKEN"],
        )
        .await;
    assert!(stdout(&out).contains("502") || out["exit_code"] != 0, "{out}");
    assert!(s.untrusted.seen().is_empty(), "the unverified upstream received a request");

    // An unbound host: a blind tunnel, the placeholder arrives as it is.
    let unbound = s.url(UNBOUND, "/blind");
    let ca = s.dir.join("upstream-ca.pem");
    let cmd = format!(
        r#"curl -sS --fail --cacert {} "{unbound}" -H "Authorization: Bearer $GITHUB_TOKEN" -o /dev/null"#,
        ca.display()
    );
    let out = s.run(&cmd, &["GITHUB_TOKEN"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let seen = s.upstream.seen();
    let blind = seen.iter().find(|r| r.uri == "/blind").expect("the blind tunnel reached the host");
    let auth = header(blind, "authorization").unwrap();
    assert!(auth.starts_with("Bearer ghp_") && auth != format!("Bearer {TOKEN}"), "{auth}");

    // Plain http to a bound host: forwarded without substitution, and audited.
    let plain = format!("http://{HOST}:{}/plain", s.plain.port);
    let cmd = format!(r#"curl -sS --fail "{plain}" -H "Authorization: Bearer $GITHUB_TOKEN" -o /dev/null"#);
    let out = s.run(&cmd, &["GITHUB_TOKEN"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(!s.plain.seen().is_empty(), "the plain request arrived");
    assert!(!received(&s.plain, TOKEN), "plain http carried the value");
    let logs = s.app.logs();
    assert!(
        logs.lines().any(|l| l.contains("GITHUB_TOKEN") && l.contains(HOST) && l.contains("not substituted"))
    );
    assert!(!received(&s.upstream, &format!("Bearer {TOKEN}")) || seen.iter().all(|r| r.uri != "/blind"));
}

#[tokio::test]
async fn a_daemon_that_outlives_its_command_cannot_spend_the_placeholder() {
    let s = setup("daemon").await;
    let url = s.url(HOST, "/daemon");
    let gate = s.dir.join("go");
    let marker = s.dir.join("daemon.out");
    let detached = s.dir.join("detached");
    // The daemon leaves the command's process group, says so, then waits until its command
    // has ended (the test creates `go` after the answer) and tries to spend the placeholder.
    let cmd = format!(
        r#"setsid sh -c 'touch {d}; while [ ! -e {g} ]; do sleep 0.1; done; curl -sS -o /dev/null -w "%{{http_code}}" "{url}" -H "Authorization: Bearer $GITHUB_TOKEN" > {m}.tmp 2>&1; mv {m}.tmp {m}' >/dev/null 2>&1 < /dev/null &
while [ ! -e {d} ]; do sleep 0.05; done"#,
        d = detached.display(),
        g = gate.display(),
        m = marker.display()
    );
    let out = s.run(&cmd, &["GITHUB_TOKEN"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    std::fs::write(&gate, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the daemon never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!received(&s.upstream, TOKEN), "a leftover daemon spent the value");
    let code = std::fs::read_to_string(&marker).unwrap();
    assert!(!code.starts_with('2'), "{code}");
}
