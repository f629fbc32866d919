#!/usr/bin/env bash
# Fleet simulation: N sidecars (release build) started at the same instant against one fake
# settings server; each discovers 2 secrets for its sandbox and runs one command a second using
# both (as LookupSecrets) for SECONDS. Prints the settings server's requests per second over
# time, the start-up burst, the steady state and the peak.
#
#   bench/fleet.sh [N] [SECONDS] [CACHE_TTL] [DISCOVERY_INTERVAL]     (default 50 60 300 300)
#
# With the defaults the steady state is 0: nothing expires within a minute. Run it with a
# short TTL and interval (e.g. `bench/fleet.sh 50 60 15 20`) to see refreshes spread by the
# ±10 % jitter instead of arriving in step.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
n=${1:-50}
seconds=${2:-60}
ttl=${3:-300}
interval=${4:-300}
build_release
start_settings --secrets 2

urls=(); pids=()
t0=$(date +%s)
for i in $(seq "$n"); do
    port=$(free_port)
    SESSION_API_KEY=$KEY "$BIN" --listen "127.0.0.1:$port" --log warn \
        --settings-url "$SETTINGS_URL" --sandbox-id "sandbox$i" \
        --cache-ttl "$ttl" --discovery-interval "$interval" >"$WORK/sidecar-$i.log" 2>&1 &
    PIDS+=("$!"); pids+=("$!")
    urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do wait_ok "$u/ready"; done
echo "$n sidecars ready $(( $(date +%s) - t0 )) s after the first start" >&2
# Discovery runs at start and does not block /ready: wait until every sidecar lists both.
for u in "${urls[@]}"; do
    for _ in $(seq 3000); do
        count=$(curl -sf -H "X-Session-API-Key: $KEY" "$u/api/secrets" | json '["secrets"].__len__()')
        [ "$count" -ge 2 ] && break
        sleep 0.01
    done
done
# shellcheck disable=SC2016 # the variables are expanded by the command's shell
result=$(drive fleet "$KEY" "$seconds" '{"command": "true \"$S0000\" \"$S0001\""}' "${urls[@]}")
rss_total=0
for pid in "${pids[@]}"; do rss_total=$(( rss_total + $(drive rss "$pid" | json '["VmRSS"]') )); done

echo
echo "Fleet: $n sidecars, $seconds s, 1 command/s each with 2 LookupSecrets, TTL $ttl s, discovery every $interval s"
echo "$(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "driver: $result; sidecars' RSS together: $(mib "$rss_total")"
settings_stats | python3 -c '
import json, sys
t0, n = int(sys.argv[1]), int(sys.argv[2])
d = json.load(sys.stdin)
series = {s - t0: c for s, c in d["per_second"]}
last = max(series) if series else 0
print("upstream requests per second (second since the first start: count):")
print(" ".join(f"{t}:{series.get(t, 0)}" for t in range(0, last + 1)))
burst = sum(c for t, c in series.items() if t < 10)
steady = [series.get(t, 0) for t in range(10, last + 1)]
mean = sum(steady) / len(steady) if steady else 0
print(f"total {d[\"total\"]}; start-up burst (first 10 s) {burst}; "
      f"steady state (after 10 s) mean {mean:.2f}/s, max {max(steady, default=0)}/s; "
      f"peak {max(series.values(), default=0)}/s")
print(f"per sidecar: {d[\"total\"] / n:.1f} requests in {last + 1} s")
' "$t0" "$n"
