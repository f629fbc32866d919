//! The real binary: key generation, refusal to expose itself, unix sockets, signals, and
//! process hardening.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::bin::BinApp;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ss-it-{tag}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test]
async fn generates_a_private_key_file_and_reuses_it() {
    let dir = tmpdir("gen");
    let xdg = dir.to_str().unwrap();
    let mut app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("XDG_RUNTIME_DIR", xdg)]).unwrap();
    let path = dir.join("secret-sidecar").join("api-key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let key = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64);
    let client = reqwest::Client::new();
    let ok = client
        .get(format!("{}/api/secrets", app.base))
        .header("X-Session-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let logs = app.logs();
    assert!(logs.contains(path.to_str().unwrap()), "the path is logged");
    assert!(!logs.contains(&key), "the key is not logged");
    assert!(app.terminate().success());

    let mut again = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("XDG_RUNTIME_DIR", xdg)]).unwrap();
    assert!(again.logs().contains("reusing"));
    let ok = client
        .get(format!("{}/api/secrets", again.base))
        .header("X-Session-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(again.terminate().success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn refuses_non_loopback_without_a_configured_key() {
    let dir = tmpdir("expose");
    let err = BinApp::spawn(&["--listen", "0.0.0.0:0"], &[("XDG_RUNTIME_DIR", dir.to_str().unwrap())])
        .err()
        .unwrap();
    assert!(err.contains("refusing to listen"), "{err}");
    // With a configured key it starts (and we stop it at once).
    let mut app = BinApp::spawn(&["--listen", "0.0.0.0:0"], &[("SESSION_API_KEY", "k-configured")]).unwrap();
    assert!(app.terminate().success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn malformed_key_list_is_a_start_up_error_without_echo() {
    let err = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("OH_SESSION_API_KEYS", "[\"canary-9f2\"")])
        .err()
        .unwrap();
    assert!(err.contains("OH_SESSION_API_KEYS"), "{err}");
    assert!(!err.contains("canary-9f2"), "{err}");
}

#[test]
fn sigint_and_sigterm_stop_gracefully_and_core_dumps_are_off() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", "k")]).unwrap();
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", app.child.id())).unwrap();
        let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
        let fields: Vec<_> = core.split_whitespace().collect();
        assert_eq!(&fields[4..6], ["0", "0"], "{core}");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(app.child.id() as i32, signal) };
        let status = app.wait(Duration::from_secs(15)).expect("exits");
        assert!(status.success(), "{status:?}");
        assert!(app.logs().contains("draining"));
    }
}

async fn raw_unix_request(path: &std::path::Path, request: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn unix_socket_is_private_replaces_a_stale_one_and_still_needs_the_key() {
    let dir = tmpdir("unix");
    let sock = dir.join("s.sock");
    // A stale socket file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let listen = format!("unix:{}", sock.display());
    let mut app = BinApp::spawn(&["--listen", &listen], &[("SESSION_API_KEY", "unix-key")]).unwrap();
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    let denied =
        raw_unix_request(&sock, "GET /api/secrets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let ok = raw_unix_request(
        &sock,
        "GET /api/secrets HTTP/1.1\r\nHost: x\r\nX-Session-API-Key: unix-key\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // A second instance must not steal a live socket.
    let err = BinApp::spawn(&["--listen", &listen], &[("SESSION_API_KEY", "unix-key")]).err().unwrap();
    assert!(err.contains("another process"), "{err}");
    assert!(app.terminate().success());
    assert!(!sock.exists(), "socket removed on exit");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn sigterm_kills_running_commands_and_exits() {
    let mut app = BinApp::spawn(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", "k")]).unwrap();
    let client = reqwest::Client::new();
    let mut r = client
        .post(format!("{}/api/commands/stream", app.base))
        .header("X-Session-API-Key", "k")
        .json(&serde_json::json!({"command": "echo started; sleep 1000"}))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("started") {
        seen.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
    }
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = app.terminate();
        (s, app)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "the running command did not hold up shutdown");
}

/// Children of `pid`, from the host's /proc.
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let rest: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((child, rest[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

#[tokio::test]
async fn as_pid_1_it_reaps_orphans() {
    // A new PID namespace (root only, as in CI); skip quietly where unshare is unavailable.
    let probe = std::process::Command::new("unshare").args(["-p", "-f", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot create a PID namespace here");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    /// Kills the namespace if the test fails half-way.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let unshare = std::process::Command::new("unshare")
        .args([
            "-p",
            "-f",
            "--kill-child",
            env!("CARGO_BIN_EXE_secret-sidecar"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
        ])
        .env("SESSION_API_KEY", "pid1-key")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut unshare = Guard(unshare);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/ready")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the sidecar did not start as PID 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // PID 1 in the namespace is the reaper; the service is its child.
    let init = children_of(unshare.0.id()).first().map(|c| c.0).expect("namespace init");
    let service = children_of(init);
    assert_eq!(service.len(), 1, "{service:?}");
    // Both processes scrubbed the key from the block /proc/<pid>/environ shows, the PID 1
    // parent included (it forks after scrubbing and hardening).
    for pid in [init, service[0].0] {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains("pid1-key"), "/proc/{pid}/environ: {environ:?}");
        assert!(environ.contains("SESSION_API_KEY=\0"), "/proc/{pid}/environ: {environ:?}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    }
    // A daemon that leaves the command's process group outlives it and is orphaned to PID 1.
    let r = client
        .post(format!("{base}/api/commands"))
        .header("X-Session-API-Key", "pid1-key")
        .json(&serde_json::json!({"command": "f=$(mktemp); setsid sh -c \"echo up > $f; exec sleep 2\" </dev/null >/dev/null 2>&1 & \
            while [ ! -s $f ]; do sleep 0.01; done; rm -f $f; echo ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let orphans = || children_of(init).into_iter().filter(|c| c.0 != service[0].0).collect::<Vec<_>>();
    assert_eq!(orphans().len(), 1, "the daemon was re-parented to PID 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let others = orphans();
        if others.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "orphans not reaped: {others:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM to PID 1 is forwarded; the service drains and the namespace ends.
    // SAFETY: signalling a process we started.
    unsafe { libc::kill(init as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || unshare.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn inherited_variables_that_are_not_utf8_reach_commands() {
    use std::os::unix::ffi::OsStringExt;
    let raw = [(OsString::from("RAW"), OsString::from_vec(b"caf\xe9".to_vec()))];
    let app =
        BinApp::spawn_raw(&["--listen", "127.0.0.1:0"], &[("SESSION_API_KEY", "raw-env-key")], &raw).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/commands", app.base))
        .header("X-Session-API-Key", "raw-env-key")
        .json(&serde_json::json!({"command": "printf %s \"$RAW\" | od -An -tx1 | tr -d ' \\n'"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["stdout"], "636166e9", "{body}");
}

#[tokio::test]
async fn mlock_locks_memory_or_refuses_to_start_clearly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root (CAP_IPC_LOCK)");
        return;
    }
    let mut app =
        BinApp::spawn(&["--listen", "127.0.0.1:0", "--mlock"], &[("SESSION_API_KEY", "mlock-key")]).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.child.id())).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(locked_kb > 1000, "memory not locked: {status}");
    // The sidecar keeps CAP_IPC_LOCK for its own future allocations; its commands never get it.
    let r = reqwest::Client::new()
        .post(format!("{}/api/commands", app.base))
        .header("X-Session-API-Key", "mlock-key")
        .json(&serde_json::json!({"command": "grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    for line in body["stdout"].as_str().unwrap().lines() {
        let bits = u64::from_str_radix(line.split_whitespace().last().unwrap(), 16).unwrap();
        assert_eq!(bits & (1 << 14), 0, "CAP_IPC_LOCK (14) in {line}");
    }
    app.terminate();
    // Without CAP_IPC_LOCK and with a tiny RLIMIT_MEMLOCK, start-up fails and says what to do.
    let have_tools = ["setpriv", "prlimit"]
        .iter()
        .all(|t| std::process::Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()));
    if !have_tools {
        eprintln!("skipping the refusal half: setpriv or prlimit missing");
        return;
    }
    let out = std::process::Command::new("prlimit")
        .args(["--memlock=65536:65536", "setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock"])
        .arg(env!("CARGO_BIN_EXE_secret-sidecar"))
        .args(["--listen", "127.0.0.1:0", "--mlock"])
        .env_clear()
        .env("SESSION_API_KEY", "mlock-key")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--mlock: mlockall failed") && stderr.contains("RLIMIT_MEMLOCK"), "{stderr}");
}
