# Shared by the bench scripts (sourced, not run): the release binary, a fake settings server,
# sidecars on free ports, polling for readiness, and cleanup of everything started here.
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# SECRET_SIDECAR_BIN measures another build as it is (nothing is built then).
BIN=${SECRET_SIDECAR_BIN:-$ROOT/target/release/secret-sidecar}
KEY=bench-key
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

build_release() {
    [ -n "${SECRET_SIDECAR_BIN:-}" ] || (cd "$ROOT" && cargo build --release --locked -q --bin secret-sidecar)
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls URL until it answers 200 (at most 60 s).
wait_ok() {
    local url=$1 i
    for i in $(seq 6000); do
        curl -sf -o /dev/null "$url" && return 0
        [ "$i" -eq 6000 ] || sleep 0.01
    done
    echo "no 200 from $url" >&2
    return 1
}

# start_settings [ARGS...]: starts the fake settings server; sets SETTINGS_URL and SETTINGS_PID.
start_settings() {
    local portfile="$WORK/settings.port"
    rm -f "$portfile"
    python3 "$BENCH_DIR/fake_settings.py" --port-file "$portfile" "$@" >/dev/null &
    SETTINGS_PID=$!
    PIDS+=("$SETTINGS_PID")
    local i
    for i in $(seq 3000); do
        [ -s "$portfile" ] && break
        [ "$i" -eq 3000 ] && { echo "fake settings server did not start" >&2; return 1; }
        sleep 0.01
    done
    SETTINGS_URL="http://127.0.0.1:$(cat "$portfile")"
}

settings_stats() {
    curl -sf "$SETTINGS_URL/__stats"
}

settings_total() {
    settings_stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'
}

settings_reset() {
    curl -sf -X POST -o /dev/null "$SETTINGS_URL/__reset"
}

# start_sidecar [ARGS...]: starts the release binary on a free port, waits for /ready; sets
# SIDECAR_URL and SIDECAR_PID.
start_sidecar() {
    local port
    port=$(free_port)
    SESSION_API_KEY=$KEY "$BIN" --listen "127.0.0.1:$port" --log warn "$@" >"$WORK/sidecar-$port.log" 2>&1 &
    SIDECAR_PID=$!
    PIDS+=("$SIDECAR_PID")
    SIDECAR_URL="http://127.0.0.1:$port"
    wait_ok "$SIDECAR_URL/ready"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# api METHOD PATH [BODY]: one request to the current sidecar with the key.
api() {
    curl -sf -X "$1" -H "X-Session-API-Key: $KEY" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} "$SIDECAR_URL$2"
}

export PYTHONDONTWRITEBYTECODE=1

drive() {
    python3 "$BENCH_DIR/drive.py" "$@"
}

# json FIELD: reads one JSON object on stdin and prints FIELD (a Python subscript path).
json() {
    python3 -c "import json, sys; d = json.load(sys.stdin); print(d$1)"
}

# lookup_body NAME...: a secrets update registering each NAME as a LookupSecret.
lookup_body() {
    python3 - "$SETTINGS_URL" "$@" <<'EOF'
import json, sys
base, names = sys.argv[1], sys.argv[2:]
url = base + "/api/v1/sandboxes/bench/settings/secrets/"
print(json.dumps({"secrets": {n: {"kind": "LookupSecret", "url": url + n} for n in names}}))
EOF
}

mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'
}
