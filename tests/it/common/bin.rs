//! The real `secret-sidecar` binary as a child process, with its stderr (JSON log lines)
//! captured for assertions.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running `secret-sidecar` child.
pub struct BinApp {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (TCP listeners only).
    pub base: String,
    logs: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl BinApp {
    /// Starts the binary with `args` and exactly `env` (plus PATH), logging JSON at
    /// `trace`, and waits for its "listening" line (or its exit).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Self, String> {
        Self::spawn_raw(args, env, &[])
    }

    /// [`BinApp::spawn`] with further variables whose names or values need not be UTF-8.
    pub fn spawn_raw(
        args: &[&str],
        env: &[(&str, &str)],
        raw: &[(OsString, OsString)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-sidecar"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SECRET_SIDECAR_LOG", "trace")
            .env("SECRET_SIDECAR_LOG_FORMAT", "json")
            // Tests run side by side: each egress proxy on a port of its own.
            .env("SECRET_SIDECAR_EGRESS_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .envs(raw.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().unwrap();
        let logs: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().push("<eof>".into());
            sink.1.notify_all();
        });
        let mut app = Self { child, base: String::new(), logs };
        let line = app.wait_for_log(|l| l.contains("\"listening\"") || l == "<eof>", Duration::from_secs(20));
        match line {
            Some(l) if l != "<eof>" => {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                app.base = format!("http://{}", v["addr"].as_str().unwrap_or_default());
                Ok(app)
            }
            _ => Err(app.logs()),
        }
    }

    /// Waits until a log line satisfies `pred`; returns it.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.logs;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// All captured log output so far.
    pub fn logs(&self) -> String {
        self.logs.0.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(15)).expect("exits after SIGTERM")
    }

    /// Waits for exit, polling, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.wait_for_log(|l| l == "<eof>", Duration::from_secs(5));
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BinApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
