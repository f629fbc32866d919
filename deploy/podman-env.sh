# Sourced by deploy/test-image and deploy/test-sandbox: a private, throw-away container
# engine setup under "$work" (which the caller creates and removes), and small test helpers.
#
# Why each setting (all checked on Debian 12 CI machines with podman 4.3):
# - runc with the cgroupfs manager: crun fails there (cgroups in hybrid mode, setrlimit).
# - default_ulimits = []: no rlimits set on the container, which the host may refuse.
# - vfs storage under "$work": works everywhere, leaves nothing in the system store, and is
#   removed with "$work"; nothing is cached between runs.
# - host network: no network backend to set up; the sidecar listens on a free loopback port.
# shellcheck shell=bash disable=SC2154 # $work and $key are the caller's

cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/libpod-tmp"
CONF
cat > "$work/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$work/storage"
runroot = "$work/run"
CONF
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"

pod() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }

# A TCP port nobody listens on at the moment of asking.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls `$@` once a tenth of a second until it succeeds or $1 seconds pass.
wait_for() {
    local secs=$1
    shift
    local i
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

passed=0
failed=0
# check NAME COMMAND…: runs the command, counts and prints the result.
check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok     $name"
    else
        failed=$((failed + 1))
        echo "FAILED $name"
    fi
}

summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# api METHOD URL [JSON]: prints "STATUS BODY" (the key in $key).
api() {
    local out
    out=$(curl -sS -o "$work/body" -w '%{http_code}' -X "$1" -H "X-Session-API-Key: $key" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "$2") || out=000
    echo "$out $(cat "$work/body" 2>/dev/null)"
}

# json_is 'STATUS BODY' STATUS PYTHON-EXPR: the status matches and EXPR (over `b`, the
# parsed body) is true.
json_is() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
answer, want, expr = sys.argv[1:]
status, _, body = answer.partition(" ")
try:
    b = json.loads(body)
except ValueError:
    b = None
ok = status == want and bool(eval(expr, {"b": b}))
if not ok:
    print(f"  got {status} {body[:400]}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}
