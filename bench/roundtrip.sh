#!/usr/bin/env bash
# Round trip of `true` with 3 secrets through secret-sidecar, next to the bare spawn of the
# same shell and the reference agent-server's execute_bash_command, all in one run.
# Needs root (the reference runs in a chroot) and ../shared/tools/reference-agent-server.
#   bench/roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ref=../shared/tools/reference-agent-server
port=$(( 30000 + RANDOM % 20000 ))
key="ref-bench-key"
if [ -x "$ref" ]; then
  "$ref" setup >/dev/null
  "$ref" start "$port" "$key" >/dev/null
  trap '"$ref" stop "$port" >/dev/null 2>&1 || true' EXIT
  export REF_URL="http://127.0.0.1:$port" REF_KEY="$key"
fi
cargo bench --bench roundtrip
