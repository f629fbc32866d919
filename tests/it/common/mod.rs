//! Test harness: the service in-process on port 0 ([`TestApp`]) or as a real child process
//! ([`BinApp`]), with helpers to talk to it over loopback HTTP.

#![allow(dead_code)]

pub mod bin;
pub mod fake_settings;
pub mod raw;

use std::time::Duration;

use reqwest::{Method, Response};
use secret_sidecar::AppState;
use secret_sidecar::auth::ApiKeys;
use secret_sidecar::cli::ServeArgs;
use secret_sidecar::config::{Config, Env};
use secret_sidecar::server::{Listener, serve};
use serde_json::Value;

/// The key every in-process test app accepts.
pub const KEY: &str = "test-key-5f1d";
/// A conversation id in dashed form and its normalised form.
pub const CONV: &str = "0A1B2C3D-4E5F-6789-ABCD-EF0123456789";
pub const CONV_HEX: &str = "0a1b2c3d4e5f6789abcdef0123456789";

/// The service running inside the test process on `127.0.0.1:0`.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
}

impl TestApp {
    /// Default configuration, accepting [`KEY`], lookups allowed to `https://app.example.dev`.
    pub async fn spawn() -> Self {
        Self::spawn_with(&["--allow-lookup-origin", "https://app.example.dev"], &[]).await
    }

    /// Extra flags and environment (on top of `SESSION_API_KEY=KEY`).
    pub async fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut argv = vec!["secret-sidecar", "--listen", "127.0.0.1:0"];
        // Tests run side by side: each egress proxy on a port of its own.
        if !args.contains(&"--egress-listen") {
            argv.extend(["--egress-listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        let args = ServeArgs::parse_from(argv).expect("test flags parse");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut vars = vec![("SESSION_API_KEY", KEY), ("PATH", path.as_str())];
        vars.extend_from_slice(env);
        let config = Config::new(&args, &Env::from_pairs(vars)).expect("test config is valid");
        let keys = ApiKeys::load(&config.auth).expect("keys load");
        let listener = Listener::bind(&config.listen).await.expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(&config, keys).expect("state builds");
        // The listener is bound: requests queue until the serving task accepts them, and it
        // marks the service ready before it accepts anything.
        tokio::spawn(serve(listener, state.clone(), std::future::pending()));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { base, state, client }
    }

    /// The state of a service built from `args` that is not serving (router tests).
    pub fn state_with(args: &[&str]) -> AppState {
        let mut argv = vec!["secret-sidecar", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let args = ServeArgs::parse_from(argv).expect("test flags parse");
        let path = std::env::var("PATH").unwrap_or_default();
        let vars = [("SESSION_API_KEY", KEY), ("PATH", path.as_str())];
        let config = Config::new(&args, &Env::from_pairs(vars)).expect("test config is valid");
        AppState::new(&config, ApiKeys::load(&config.auth).expect("keys load")).expect("state builds")
    }

    /// A request with the API key set.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("X-Session-API-Key", KEY)
    }

    /// GET with the key; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        json_of(self.req(Method::GET, path).send().await.unwrap()).await
    }

    /// POST JSON with the key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(self.req(Method::POST, path).json(body).send().await.unwrap()).await
    }

    /// DELETE with the key; returns status and JSON body.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        json_of(self.req(Method::DELETE, path).send().await.unwrap()).await
    }

    /// Everything the API shows about secrets: the sandbox scope and [`CONV`].
    pub async fn snapshot(&self) -> (Value, Value) {
        let (s1, sandbox) = self.get("/api/secrets").await;
        let (s2, conv) = self.get(&format!("/api/conversations/{CONV_HEX}/secrets")).await;
        assert_eq!((s1, s2), (200, 200));
        (sandbox, conv)
    }
}

impl Drop for TestApp {
    /// The service drains and stops with the test.
    fn drop(&mut self) {
        self.state.shutdown_token().cancel();
    }
}

/// Status and body; the body must be JSON (every answer of the service is).
pub async fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON ({ct:?}): {text}"));
    assert_eq!(ct.as_deref(), Some("application/json"), "status {status}");
    (status, body)
}
