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
mapfile -t ports < <(drive ports "$n")
t0=$(date +%s)
for i in $(seq "$n"); do
    port=${ports[$((i - 1))]}
    SESSION_API_KEY=$KEY "$BIN" --listen "127.0.0.1:$port" --log warn \
        --settings-url "$SETTINGS_URL" --sandbox-id "sandbox$i" \
        --cache-ttl "$ttl" --discovery-interval "$interval" >"$WORK/sidecar-$i.log" 2>&1 &
    PIDS+=("$!"); pids+=("$!")
    urls+=("http://127.0.0.1:$port")
done
echo "$n sidecars started in $(( $(date +%s) - t0 )) s" >&2
for u in "${urls[@]}"; do wait_ok "$u/ready"; done
echo "$n sidecars ready $(( $(date +%s) - t0 )) s after the first start" >&2
# Discovery runs at start and does not block /ready: wait until every sidecar lists both.
drive listed "$KEY" 2 "${urls[@]}" >/dev/null
t1=$(date +%s)
# shellcheck disable=SC2016 # the variables are expanded by the command's shell
result=$(drive fleet "$KEY" "$seconds" '{"command": "true \"$S0000\" \"$S0001\""}' "${urls[@]}")
stats=$(settings_stats)
rss_total=$(drive rss-sum "${pids[@]}" | json '["VmRSS"]')
echo
echo "Fleet: $n sidecars, $seconds s, 1 command/s each with 2 LookupSecrets, TTL $ttl s, discovery every $interval s"
echo "$(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "driver: $result; sidecars' RSS together: $(mib "$rss_total")"
echo "commands from second $(( t1 - t0 )) to $(( t1 - t0 + seconds )) after the first start"
echo "upstream requests per second (second since the first start: count), burst, steady state, peak:"
# The burst: discovery at start and the first command's two lookups (within 5 s of it).
drive series "$t0" "$n" "$(( t1 - t0 + 5 ))" <<<"$stats"
