//! Root commands against the sidecar's keys (contract §1, "Root commands"): what a command
//! running as uid 0 can reach of the sidecar's process, and that ordinary root work still runs.
//!
//! The probes write what they obtain to files, read here directly: command output is masked,
//! so checking it alone could not tell a leak from a hidden one. CI runs as root; where the
//! tests do not, a root-only part says so and is skipped.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use crate::common::bin::BinApp;

const SESSION_KEY: &str = "root-probe-session-key-7c1e90";
const LIST_KEY: &str = "root-probe-list-key-2b8f44";
const SECRET_KEY: &str = "root-probe-oh-secret-key-d03a";
const OTHER_VALUE: &str = "root-probe-other-conversation-9e5d";
const MARKERS: &[&str] = &[SESSION_KEY, LIST_KEY, SECRET_KEY, OTHER_VALUE];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecar-root-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_with_keys(extra: &[&str]) -> BinApp {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    BinApp::spawn(
        &args,
        &[
            ("SESSION_API_KEY", SESSION_KEY),
            ("OH_SESSION_API_KEYS_0", LIST_KEY),
            ("OH_SECRET_KEY", SECRET_KEY),
            ("HOME", &home),
        ],
    )
    .unwrap()
}

async fn run(app: &BinApp, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("X-Session-API-Key", SESSION_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.json().await.unwrap()
}

fn read_all(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        all.push_str(&format!(
            "== {}\n{}\n",
            entry.file_name().to_string_lossy(),
            String::from_utf8_lossy(&bytes)
        ));
    }
    all
}

fn assert_no_marker(what: &str, text: &str) {
    for m in MARKERS {
        assert!(!text.contains(m), "{what} holds {m}:\n{text}");
    }
}

/// The bytes `/proc/<pid>/environ` shows, as the host's root (full capabilities) reads them.
fn environ_of(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned()
}

#[tokio::test]
async fn the_initial_environment_block_no_longer_holds_keys() {
    let app = spawn_with_keys(&[]);
    if !is_root() {
        eprintln!("skipping the host-side read: /proc/<pid>/environ of a non-dumpable process needs root");
        return;
    }
    let environ = environ_of(app.child.id());
    assert_no_marker("/proc/<sidecar>/environ", &environ);
    // Scrubbed in place, not merely unset: the names are still there, their values zeroed.
    assert!(environ.contains("SESSION_API_KEY=\0"), "{environ:?}");
    assert!(environ.contains("PATH=/"), "other variables are kept: {environ:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", app.child.id())).unwrap();
    assert_no_marker("/proc/<sidecar>/cmdline", &String::from_utf8_lossy(&cmdline));
}

/// Everything a root command tries against its parent, the sidecar; results go to files.
const PROBE: &str = r#"
out="$PROBE_DIR"
p=$PPID
cat /proc/$p/environ > "$out/environ" 2> "$out/environ.err"
cat /proc/$p/task/*/environ > "$out/task-environ" 2> "$out/task-environ.err"
cat /proc/$p/cmdline > "$out/cmdline" 2> "$out/cmdline.err"
cat /proc/$p/maps > "$out/maps" 2> "$out/maps.err"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status > "$out/status"
ls /proc/self/fd > "$out/fds"; ls -l /proc/self/fd > "$out/fds-long"
cat "$KEY_FILE" > "$out/keyfile" 2> /dev/null
python3 - "$p" "$out/mem" <<'PY' 2> "$out/mem.err"
import re, sys
pid, dest = sys.argv[1], sys.argv[2]
found = []
try:
    regions = [l.split()[0] for l in open(f"/proc/{pid}/maps") if " rw" in l]
except OSError as e:
    regions = []
    found.append(f"maps: {e.strerror}")
try:
    mem = open(f"/proc/{pid}/mem", "rb", 0)
    for r in regions:
        start, end = (int(x, 16) for x in r.split("-"))
        try:
            mem.seek(start)
            found.append(mem.read(min(end - start, 1 << 24)).decode("latin-1"))
        except OSError:
            pass
    if not regions:
        mem.seek(0x400000)
        mem.read(4096)
except OSError as e:
    found.append(f"mem: {e.strerror}")
open(dest, "w", encoding="latin-1").write("\n".join(found))
PY
echo probed
"#;

#[tokio::test]
async fn a_root_command_obtains_no_key_and_no_other_value() {
    let dir = scratch("probe");
    let key_file = dir.join("api-key-file");
    std::fs::write(&key_file, LIST_KEY).unwrap();
    let probe_dir = dir.join("out");
    std::fs::create_dir_all(&probe_dir).unwrap();
    let app = spawn_with_keys(&["--api-key-file", key_file.to_str().unwrap()]);
    // Another conversation's secret, resolved and held in the sidecar's memory.
    let other = "/api/conversations/0123456789abcdef0123456789abcdef";
    let r = run(&app, &format!("{other}/secrets"), json!({"secrets": {"OTHER": OTHER_VALUE}})).await;
    assert_eq!(r["success"], true);
    let r = run(&app, &format!("{other}/commands"), json!({"command": "echo ${#OTHER}"})).await;
    assert_eq!(r["stdout"], format!("{}\n", OTHER_VALUE.len()));

    let r = run(
        &app,
        "/api/commands",
        json!({"command": PROBE, "env": {"PROBE_DIR": probe_dir.to_str().unwrap(), "KEY_FILE": key_file.to_str().unwrap()}}),
    )
    .await;
    assert_eq!(r["stdout"], "probed\n", "{r}");
    let found = read_all(&probe_dir);
    // The key file is readable by root (the README says so): that copy is the only one, and
    // what the command prints of it is masked.
    let keyfile = std::fs::read_to_string(probe_dir.join("keyfile")).unwrap_or_default();
    std::fs::remove_file(probe_dir.join("keyfile")).unwrap();
    let found_without_keyfile = read_all(&probe_dir);
    assert_no_marker("what the probe obtained", &found_without_keyfile);
    if is_root() {
        assert_eq!(keyfile, LIST_KEY, "root reads any file: {found}");
    }
    let status = std::fs::read_to_string(probe_dir.join("status")).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let allowed = hardening_mask();
    for line in status.lines().filter(|l| l.starts_with("Cap")) {
        let (name, hex) = line.split_once(":\t").unwrap();
        let bits = u64::from_str_radix(hex.trim(), 16).unwrap();
        assert_eq!(bits & !allowed, 0, "{name} holds capabilities outside the allow-list: {status}");
    }
    let fds = std::fs::read_to_string(probe_dir.join("fds")).unwrap();
    let fds: Vec<&str> = fds.split_whitespace().collect();
    // 0, 1, 2 and the directory `ls` itself opened: nothing inherited from the sidecar.
    assert!(
        fds.len() <= 4,
        "descriptors leaked into the command: {fds:?} {}",
        std::fs::read_to_string(probe_dir.join("fds-long")).unwrap()
    );

    // Printing the key file is masked, like every value the sidecar holds.
    let r = run(&app, "/api/commands", json!({"command": format!("cat {}", key_file.display())})).await;
    assert_eq!(r["stdout"], "<secret-hidden>", "{r}");
    let r = run(&app, "/api/commands", json!({"command": format!("echo {SESSION_KEY}")})).await;
    assert_eq!(r["stdout"], "<secret-hidden>\n", "{r}");

    // Without a key, the API is closed to the command.
    let r = run(
        &app,
        "/api/commands",
        json!({"command": format!("curl -s -o /dev/null -w '%{{http_code}}' {}/api/conversations/0123456789abcdef0123456789abcdef/secrets", app.base)}),
    )
    .await;
    assert_eq!(r["stdout"], "401", "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The allow-list as a capability bit mask (Docker's default set minus NET_RAW, MKNOD, SETFCAP).
fn hardening_mask() -> u64 {
    secret_sidecar::hardening::ALLOWED.iter().fold(0, |m, c| m | c.bitmask())
}

#[tokio::test]
async fn ordinary_root_work_still_runs() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let dir = scratch("work");
    let app = spawn_with_keys(&[]);
    // chown, and a setuid-less privilege drop like apt's sandbox user.
    let r = run(
        &app,
        "/api/commands",
        json!({"command": "f=$(mktemp); chown 65534:65534 $f && stat -c %u:%g $f; rm -f $f", "cwd": dir.to_str().unwrap()}),
    )
    .await;
    assert_eq!(r["stdout"], "65534:65534\n", "{r}");
    // pip installs a local wheel (no index: offline).
    let wheel = r#"
set -e
mkdir -p w && cd w
python3 - <<'PY'
import zipfile
files = {
    "probe_pkg/__init__.py": "VALUE = 42\n",
    "probe_pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: probe-pkg\nVersion: 1.0\n",
    "probe_pkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["probe_pkg-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "probe_pkg-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile("probe_pkg-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
PY
python3 -m pip install -q --no-index --no-deps --root-user-action=ignore --target ../site probe_pkg-1.0-py3-none-any.whl
cd .. && PYTHONPATH=site python3 -c 'import probe_pkg; print(probe_pkg.VALUE)'
"#;
    let r =
        run(&app, "/api/commands", json!({"command": wheel, "cwd": dir.to_str().unwrap(), "timeout": 120}))
            .await;
    assert_eq!(r["stdout"], "42\n", "{r}");
    // apt-get installs and removes a local package (dpkg needs CHOWN, FOWNER, DAC_OVERRIDE;
    // apt switches to its _apt user with SETUID/SETGID).
    let apt = r#"
set -e
mkdir -p pkg/DEBIAN pkg/usr/share/secret-sidecar-probe
printf 'Package: secret-sidecar-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: probe <probe@example.invalid>\nDescription: probe\n' > pkg/DEBIAN/control
echo hello > pkg/usr/share/secret-sidecar-probe/hello
dpkg-deb --root-owner-group -b pkg probe.deb >/dev/null
chmod 0644 probe.deb
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 "$PWD/probe.deb" >/dev/null 2>apt.err || { cat apt.err >&2; exit 1; }
cat /usr/share/secret-sidecar-probe/hello
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q secret-sidecar-probe >/dev/null 2>&1
"#;
    let has_apt = Path::new("/usr/bin/apt-get").exists() && Path::new("/usr/bin/dpkg-deb").exists();
    if has_apt {
        let r =
            run(&app, "/api/commands", json!({"command": apt, "cwd": dir.to_str().unwrap(), "timeout": 300}))
                .await;
        assert_eq!(r["stdout"], "hello\n", "{r}");
        assert!(!Path::new("/usr/share/secret-sidecar-probe/hello").exists(), "removed again");
    } else {
        eprintln!("apt-get part skipped: not a Debian system");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn command_user_runs_commands_as_another_uid() {
    if !is_root() {
        eprintln!("skipping: switching users needs root");
        return;
    }
    let dir = scratch("user");
    let key_file = dir.join("api-key-file");
    std::fs::write(&key_file, LIST_KEY).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let app =
        spawn_with_keys(&["--command-user", "65534:65534", "--api-key-file", key_file.to_str().unwrap()]);
    let probe = format!(
        "id -u; id -g; id -G; cat /proc/$PPID/environ >/dev/null 2>&1 || echo no-environ; \
         cat {} >/dev/null 2>&1 || echo no-keyfile; kill -0 $PPID 2>/dev/null || echo no-signal",
        key_file.display()
    );
    let r = run(&app, "/api/commands", json!({"command": probe, "cwd": "/"})).await;
    assert_eq!(r["stdout"], "65534\n65534\n65534\nno-environ\nno-keyfile\nno-signal\n", "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn command_user_is_checked_at_start() {
    let err = BinApp::spawn(
        &["--listen", "127.0.0.1:0", "--command-user", "no-such-user-x"],
        &[("SESSION_API_KEY", SESSION_KEY)],
    )
    .err()
    .expect("an unknown user is a start-up error");
    assert!(err.contains("--command-user: user \\\"no-such-user-x\\\" is not in /etc/passwd"), "{err}");
}
