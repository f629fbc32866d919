#!/usr/bin/env bash
# Start-up and footprint of the release binary: size, time from exec to a 200 on /ready,
# and idle RSS after start. Prints the median of N runs (default 7).
#   bench/startup.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-7}
cargo build --release -q
bin=target/release/secret-sidecar
port=$(( 20000 + RANDOM % 20000 ))
echo "binary size: $(stat -c %s "$bin") bytes"
ready=(); rss=()
for _ in $(seq "$n"); do
  start=$(date +%s%N)
  SESSION_API_KEY=bench-key "$bin" --listen "127.0.0.1:$port" --log warn & pid=$!
  until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do :; done
  end=$(date +%s%N)
  ready+=($(( (end - start) / 1000 )))
  curl -sf "http://127.0.0.1:$port/health" >/dev/null
  rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  kill -TERM "$pid"; wait "$pid" || true
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "start to /ready: median $(median "${ready[@]}") us over $n runs (${ready[*]})"
echo "idle RSS: median $(median "${rss[@]}") KiB (${rss[*]})"
