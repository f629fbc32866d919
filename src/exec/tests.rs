//! Behaviour tests of [`Executor::run`] with real processes: environment, exit statuses,
//! lifetime (grandchildren, timeout, cancellation, dropped futures), output capture, masking
//! and back-pressure. Waits poll for the thing awaited; no fixed sleeps.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::mask::{MaskSet, Masker};

fn config() -> ExecConfig {
    let shell = resolve_shell(None, std::env::var_os("PATH").as_deref()).expect("a shell on PATH");
    ExecConfig {
        shell,
        workdir: std::env::temp_dir(),
        max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        pristine_env: false,
        strip_env: Vec::new(),
        user: None,
        max_timeout: Duration::from_secs(3600),
        max_concurrent: 16,
        refuse_unmaskable: false,
    }
}

fn executor() -> Executor {
    Executor::new(config(), std::env::vars_os().collect())
}

fn req(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.to_owned(),
        cwd: None,
        timeout: Duration::from_secs(30),
        env: Vec::new(),
        secrets: Vec::new(),
        scrub_values: Vec::new(),
        scrub_names: Vec::new(),
    }
}

fn no_mask() -> Arc<Masker> {
    Arc::new(Masker::empty())
}

async fn run(ex: &Executor, r: ExecRequest) -> ExecOutcome {
    ex.run(r, no_mask(), None, CancellationToken::new()).await.expect("run")
}

/// True when `pid` no longer runs: no such process, or a zombie waiting for its parent.
fn is_gone(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let close = stat.iter().rposition(|&b| b == b')').expect("stat format");
            matches!(stat.get(close + 2), Some(b'Z' | b'X'))
        }
    }
}

/// Polls until `pid` is gone, failing after a generous bound.
async fn wait_gone(pid: u32) {
    let until = Instant::now() + Duration::from_secs(10);
    while !is_gone(pid) {
        assert!(Instant::now() < until, "process {pid} still running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn first_pid(text: &str) -> u32 {
    text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// Receives chunks until one contains `needle`; returns all text seen.
async fn recv_until(rx: &mut mpsc::Receiver<Chunk>, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = rx.recv().await.expect("chunk before the end");
        seen.push_str(&chunk.text);
    }
    seen
}

// --- environment ----------------------------------------------------------------------------

#[tokio::test]
async fn child_sees_the_computed_environment_only() {
    let path = std::env::var_os("PATH").expect("PATH");
    let process_env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), path),
        ("SESSION_API_KEY".into(), "sk-session".into()),
        ("OH_SESSION_API_KEYS_0".into(), "sk-session-0".into()),
        ("OH_SECRET_KEY".into(), "state".into()),
        ("OPENHANDS_API_KEY".into(), "oh".into()),
        ("SECRET_SIDECAR_LISTEN".into(), "127.0.0.1:1".into()),
        ("COPY_OF_KEY".into(), "Bearer held-api-key-0001".into()),
        ("HEADER_VAR".into(), "x".into()),
        ("STRIPPED".into(), "x".into()),
        ("KEEP_ME".into(), "kept".into()),
        ("OVERRIDDEN".into(), "inherited".into()),
    ];
    let mut cfg = config();
    cfg.strip_env = vec!["STRIPPED".into()];
    let ex = Executor::new(cfg, process_env);
    let mut r = req("env");
    r.scrub_values = vec![SecretString::from("held-api-key-0001")];
    r.scrub_names = vec!["HEADER_VAR".into()];
    r.env = vec![("OVERRIDDEN".into(), "request".into()), ("BOTH".into(), "request".into())];
    r.secrets = vec![("BOTH".into(), SecretValue::from_bytes(b"from-secret".to_vec()).expect("value"))];
    let o = run(&ex, r).await;
    assert_eq!(o.exit_code, 0, "{}", o.stderr);
    let vars: Vec<&str> = o.stdout.lines().collect();
    for gone in [
        "SESSION_API_KEY=",
        "OH_SESSION_API_KEYS_0=",
        "OH_SECRET_KEY=",
        "OPENHANDS_API_KEY=",
        "SECRET_SIDECAR_",
        "COPY_OF_KEY=",
        "HEADER_VAR=",
        "STRIPPED=",
    ] {
        assert!(!vars.iter().any(|v| v.starts_with(gone)), "{gone} leaked");
    }
    for kept in ["KEEP_ME=kept", "AI_AGENT=openhands", "OVERRIDDEN=request", "BOTH=from-secret"] {
        assert!(vars.contains(&kept), "{kept} missing");
    }
}

#[tokio::test]
async fn pristine_env_passes_only_the_short_list() {
    let mut cfg = config();
    cfg.pristine_env = true;
    let process_env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").expect("PATH")),
        ("LC_ALL".into(), "C".into()),
        ("AI_AGENT".into(), "explicit".into()),
        ("RANDOM_TOOL_TOKEN".into(), "x".into()),
    ];
    let ex = Executor::new(cfg, process_env);
    let o = run(&ex, req("env")).await;
    let mut vars: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    vars.sort_unstable();
    assert_eq!(
        vars,
        ["AI_AGENT=openhands", "LC_ALL=C", &format!("PATH={}", std::env::var("PATH").expect("PATH"))]
    );
}

// --- exit statuses and capture ----------------------------------------------------------------

#[tokio::test]
async fn captures_stdout_and_stderr_and_exit_code() {
    let o = run(&executor(), req("echo out; echo err >&2; exit 42")).await;
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!((o.exit_code, o.signal, o.timed_out, o.cancelled), (42, None, false, false));
    assert_eq!((o.truncated_stdout, o.truncated_stderr, o.masking_failed), (0, 0, false));
}

#[tokio::test]
async fn death_by_signal_is_128_plus_n() {
    let o = run(&executor(), req("kill -TERM $$")).await;
    assert_eq!((o.exit_code, o.signal), (143, Some(15)));
    let o = run(&executor(), req("kill -KILL $$")).await;
    assert_eq!((o.exit_code, o.signal), (137, Some(9)));
}

#[tokio::test]
async fn runs_in_the_requested_cwd_and_fails_generically_without_one() {
    let dir = std::env::temp_dir().canonicalize().expect("tmp");
    let mut r = req("pwd");
    r.cwd = Some(dir.clone());
    assert_eq!(run(&executor(), r).await.stdout.trim_end(), dir.to_str().expect("utf-8"));

    let mut r = req("echo secret-command-text");
    r.cwd = Some(dir.join("no-such-dir-for-exec-test"));
    let e = executor().run(r, no_mask(), None, CancellationToken::new()).await.expect_err("spawn fails");
    assert!(matches!(e, ExecError::Spawn(_)));
    assert_eq!(e.to_string(), "failed to start the shell");
}

#[tokio::test]
async fn without_a_shell_every_run_is_refused() {
    let ex = Executor::new(ExecConfig { shell: None, ..config() }, Vec::new());
    assert!(matches!(ex.check_shell(), Err(ExecError::NoShell)));
    assert!(executor().check_shell().is_ok());
    let e = ex.run(req("true"), no_mask(), None, CancellationToken::new()).await.expect_err("no shell");
    assert!(matches!(e, ExecError::NoShell));
    assert_eq!(e.to_string(), "no shell: copy the binary into the sandbox image");
}

#[tokio::test]
async fn stdin_is_closed() {
    let start = Instant::now();
    let o = run(&executor(), req("cat; echo done")).await;
    assert_eq!((o.exit_code, o.stdout.as_str()), (0, "done\n"));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn large_concurrent_output_does_not_deadlock_and_is_capped() {
    const FIVE_MIB: u64 = 5 * 1024 * 1024;
    let cmd = "head -c 5242880 /dev/zero | tr '\\0' a & head -c 5242880 /dev/zero | tr '\\0' b >&2; wait";
    let o = run(&executor(), req(cmd)).await;
    assert_eq!((o.exit_code, o.timed_out), (0, false), "{}", &o.stderr[..100.min(o.stderr.len())]);
    let max = DEFAULT_MAX_OUTPUT_BYTES as u64;
    assert_eq!((o.stdout.len() as u64, o.truncated_stdout), (max, FIVE_MIB - max));
    assert_eq!((o.stderr.len() as u64, o.truncated_stderr), (max, FIVE_MIB - max));
    assert!(o.stdout.bytes().all(|b| b == b'a') && o.stderr.bytes().all(|b| b == b'b'));
}

#[tokio::test]
async fn cap_keeps_head_and_tail() {
    let mut cfg = config();
    cfg.max_output_bytes = HEAD_BYTES + 6;
    let ex = Executor::new(cfg, std::env::vars_os().collect());
    let o = run(&ex, req("head -c 100000 /dev/zero | tr '\\0' x; printf 'at-end'")).await;
    assert_eq!(o.truncated_stdout, 100_006 - (HEAD_BYTES as u64 + 6));
    assert!(o.stdout.starts_with("xxxx") && o.stdout.ends_with("at-end"));
    assert_eq!(o.stdout.len(), HEAD_BYTES + 6);
}

// --- lifetime ------------------------------------------------------------------------------------

#[tokio::test]
async fn timeout_kills_promptly() {
    let start = Instant::now();
    let mut r = req("echo started; sleep 30");
    r.timeout = Duration::from_millis(200);
    let o = run(&executor(), r).await;
    assert_eq!((o.exit_code, o.signal, o.timed_out, o.cancelled), (-1, None, true, false));
    assert_eq!(o.stdout, "started\n");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn grandchild_is_killed_when_the_shell_exits() {
    for cmd in ["sleep 1000 & echo $!", "sleep 1000 >/dev/null 2>&1 & echo $!"] {
        let o = run(&executor(), req(cmd)).await;
        assert_eq!(o.exit_code, 0);
        let pid = first_pid(&o.stdout);
        // `run` returns only once the group is gone: no waiting needed here.
        assert!(is_gone(pid), "{cmd}: grandchild {pid} survived");
        assert!(o.duration < TERM_TO_KILL, "{cmd}: SIGTERM should have sufficed ({:?})", o.duration);
    }
}

#[tokio::test]
async fn grandchild_ignoring_sigterm_gets_sigkill() {
    let o = run(&executor(), req("trap '' TERM; sleep 1000 & echo $!")).await;
    let pid = first_pid(&o.stdout);
    assert!(is_gone(pid), "grandchild {pid} survived");
    assert!(o.duration >= TERM_TO_KILL, "{:?}", o.duration);
    assert!(o.duration < TERM_TO_KILL * 4, "{:?}", o.duration);
}

#[tokio::test]
async fn grandchild_is_killed_on_timeout() {
    let mut r = req("sleep 1000 & echo $!; sleep 1000");
    r.timeout = Duration::from_millis(300);
    let o = run(&executor(), r).await;
    assert!(o.timed_out);
    let pid = first_pid(&o.stdout);
    assert!(is_gone(pid), "grandchild {pid} survived");
}

#[tokio::test]
async fn cancel_kills_promptly_with_grandchild() {
    let ex = executor();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(8);
    let task = tokio::spawn({
        let (ex, cancel) = (ex.clone(), cancel.clone());
        async move { ex.run(req("sleep 1000 & echo $!; wait"), no_mask(), Some(tx), cancel).await }
    });
    let pid = first_pid(&recv_until(&mut rx, "\n").await);
    let start = Instant::now();
    cancel.cancel();
    let o = task.await.expect("join").expect("run");
    assert_eq!((o.exit_code, o.signal, o.timed_out, o.cancelled), (-1, None, false, true));
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(is_gone(pid), "grandchild {pid} survived");
}

#[tokio::test]
async fn dropped_receiver_cancels() {
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        executor()
            .run(req("echo $$; while :; do echo spam; done"), no_mask(), Some(tx), CancellationToken::new())
            .await
    });
    let pid = first_pid(&recv_until(&mut rx, "\n").await);
    drop(rx);
    let o = task.await.expect("join").expect("run");
    assert!(o.cancelled && o.exit_code == -1);
    assert!(is_gone(pid));
}

#[tokio::test]
async fn dropped_receiver_cancels_a_quiet_command() {
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        executor().run(req("echo $$; exec sleep 1000"), no_mask(), Some(tx), CancellationToken::new()).await
    });
    let pid = first_pid(&recv_until(&mut rx, "\n").await);
    drop(rx);
    let o = task.await.expect("join").expect("run");
    assert!(o.cancelled && o.exit_code == -1 && o.duration < Duration::from_secs(3), "{o:?}");
    assert!(is_gone(pid));
}

#[tokio::test]
async fn dropped_future_kills_the_group() {
    let (tx, mut rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        executor().run(req("sleep 1000 & echo $!; wait"), no_mask(), Some(tx), CancellationToken::new()).await
    });
    let pid = first_pid(&recv_until(&mut rx, "\n").await);
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    wait_gone(pid).await;
}

#[tokio::test]
async fn streamed_output_has_no_gaps_when_a_timeout_hits_a_slow_reader() {
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let mut r = req("seq 1 100000000");
        r.timeout = Duration::from_millis(300);
        executor().run(r, no_mask(), Some(tx), CancellationToken::new()).await
    });
    let mut text = String::new();
    while let Some(chunk) = rx.recv().await {
        text.push_str(&chunk.text);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let o = task.await.expect("join").expect("run");
    assert!(o.timed_out);
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    for (i, line) in complete.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "gap or reordering at line {i}");
    }
    assert!(complete.lines().count() > 1000);
}

// --- masking ---------------------------------------------------------------------------------------

fn masker_for(values: &[&str]) -> Arc<Masker> {
    let set = MaskSet::new(4);
    for (i, v) in values.iter().enumerate() {
        set.insert(&format!("test/{i}"), v.as_bytes()).expect("insert");
    }
    set.masker()
}

#[tokio::test]
async fn exported_secret_is_masked_in_output() {
    let mut r = req("echo \"token=$MY_TOKEN\"; echo \"$MY_TOKEN\" >&2");
    r.secrets =
        vec![("MY_TOKEN".into(), SecretValue::from_bytes(b"tok-9f8e7d6c5b".to_vec()).expect("value"))];
    let o = executor()
        .run(r, masker_for(&["tok-9f8e7d6c5b"]), None, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(o.stdout, "token=<secret-hidden>\n");
    assert_eq!(o.stderr, "<secret-hidden>\n");
}

#[tokio::test]
async fn secret_written_in_pieces_is_masked_collected_and_streamed() {
    let cmd = "printf abc; sleep 0.05; printf def; sleep 0.05; printf ' tail'";
    let masker = Arc::new(Masker::from_patterns([b"abcdef"]));
    let o = executor().run(req(cmd), Arc::clone(&masker), None, CancellationToken::new()).await.expect("run");
    assert_eq!(o.stdout, "<secret-hidden> tail");

    let (tx, mut rx) = mpsc::channel(16);
    let o = executor().run(req(cmd), masker, Some(tx), CancellationToken::new()).await.expect("run");
    assert_eq!((o.stdout.as_str(), o.exit_code), ("", 0));
    let mut text = String::new();
    while let Some(chunk) = rx.recv().await {
        assert_eq!(chunk.stream, Stream::Stdout);
        assert!(!chunk.text.contains("abc") && !chunk.text.contains("def"), "{:?}", chunk.text);
        text.push_str(&chunk.text);
    }
    assert_eq!(text, "<secret-hidden> tail");
}

// A `Masker` in the failed state cannot be built through the mask module's public API, so
// fail-closed is tested in `capture` by injecting a `MaskError` into a `StreamOutput`.

// --- back-pressure ----------------------------------------------------------------------------------

#[tokio::test]
async fn slow_sink_receives_everything_in_order() {
    const LINES: usize = 200_000;
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let cmd = format!("seq 1 {LINES}; echo done >&2");
        executor().run(req(&cmd), no_mask(), Some(tx), CancellationToken::new()).await
    });
    let (mut stdout, mut stderr, mut chunks) = (String::new(), String::new(), 0usize);
    while let Some(chunk) = rx.recv().await {
        // Each chunk is at most one read: memory is bounded by the channel, not the output.
        assert!(chunk.text.len() <= 64 * 1024, "chunk of {}", chunk.text.len());
        match chunk.stream {
            Stream::Stdout => stdout.push_str(&chunk.text),
            Stream::Stderr => stderr.push_str(&chunk.text),
        }
        chunks += 1;
        if chunks % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let o = task.await.expect("join").expect("run");
    assert_eq!((o.exit_code, o.timed_out, o.cancelled), (0, false, false));
    let want: String = (1..=LINES).map(|i| format!("{i}\n")).collect();
    assert!(stdout == want, "stdout differs ({} vs {} bytes)", stdout.len(), want.len());
    assert_eq!(stderr, "done\n");
    assert!(chunks > 1);
}

// --- no copy of the environment left behind -------------------------------------------------------

/// Whether a `NAME=value` environment string for `name_tail` and `value` is anywhere in this
/// process's writable memory (heap, anonymous mappings, thread stacks). The pair is searched
/// for piece by piece, so the search itself never builds the string it looks for.
fn env_string_in_own_memory(name_tail: &[u8], value: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let mem = std::fs::File::open("/proc/self/mem").expect("mem");
    let mut buf = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else {
            continue;
        };
        let Ok(len) = usize::try_from(end - start) else { continue };
        if len > 1 << 30 {
            continue;
        }
        buf.clear();
        buf.resize(len, 0);
        let Ok(n) = mem.read_at(&mut buf, start) else { continue };
        let region = &buf[..n];
        let prefix = name_tail.len() + 1;
        let found = region.windows(value.len()).enumerate().any(|(i, w)| {
            w == value && i >= prefix && region[i - 1] == b'=' && &region[i - prefix..i - 1] == name_tail
        });
        if found {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn exported_env_strings_are_wiped_after_spawn() {
    // Long and unusual sizes: a freed allocator chunk keeps most of its bytes and is not
    // reused at once, so on a spawn that leaves its strings behind they are still there.
    let name = format!("ZEROIZE_PROBE_{}_TAIL_OF_A_LONG_NAME", std::process::id());
    let value: String = (0..12).map(|_| format!("{:032x}", rand::random::<u128>())).collect();
    let mut r = req("test \"${#ZEROIZE_PROBE_VALUE}\" -gt 0 && printf %s \"$ZEROIZE_PROBE_VALUE\" | wc -c");
    r.command = r.command.replace("ZEROIZE_PROBE_VALUE", &name);
    r.secrets = vec![(name.clone(), SecretValue::from_bytes(value.clone().into_bytes()).expect("value"))];
    let o = run(&executor(), r).await;
    assert_eq!((o.exit_code, o.stdout.trim()), (0, value.len().to_string().as_str()), "{o:?}");
    let tail = &name.as_bytes()[name.len() - 16..];
    assert!(!env_string_in_own_memory(tail, value.as_bytes()), "a NAME=value copy is left in memory");
}
