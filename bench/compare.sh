#!/usr/bin/env bash
# Side by side with the reference agent-server, in one run on this machine, then the measures
# only the sidecar has; prints one table with targets and ratios.
#
#   bench/compare.sh [SOAK_SECONDS] [SOAK_RATE]     (default 60 s at 50 commands/s)
#
# Needs root for the reference (it runs in a chroot, ../shared/tools/reference-agent-server;
# without it the reference columns say "not measured"), curl, python3 and wrk (apt).
# Reuses bench/roundtrip.sh (the round-trip bench), the masking bench (benches/mask.rs) and the
# egress bench (benches/egress.rs); COMPARE_SKIP_CARGO=1 leaves those three out (they compile
# the benches, which takes long).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
soak_seconds=${1:-60}
soak_rate=${2:-50}
ref=$ROOT/../shared/tools/reference-agent-server
build_release
rows=()
row() { rows+=("$(printf '| %-58s | %-22s | %-34s |' "$1" "$2" "$3")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3gx", a / b; else print "-" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }

# --- against the reference ----------------------------------------------------------------
line=
if [ "${COMPARE_SKIP_CARGO:-0}" != 1 ]; then
    echo "round trip (bench/roundtrip.sh) ..." >&2
    roundtrip=$("$BENCH_DIR/roundtrip.sh" 2>"$WORK/roundtrip.err") || { cat "$WORK/roundtrip.err" >&2; exit 1; }
    echo "$roundtrip" >&2
    line=$(grep '^result bash ' <<<"$roundtrip" || true)
fi
if [ -n "$line" ]; then
    read -r _ _ _ o50 o99 _ b50 b99 _ r50 r99 _ f50 _ <<<"$line"
    if [ "$r50" -gt 0 ]; then
        row "Round trip \`true\` p50, ours (3 secrets) / reference" "<= 0.35x ref, 1.3x bare" "$(ms "$o50") / $(ms "$r50") = $(ratio "$o50" "$r50")"
        row "Round trip \`true\` p99, ours / reference" "" "$(ms "$o99") / $(ms "$r99") = $(ratio "$o99" "$r99")"
    else
        row "Round trip vs reference" "<= 0.35x" "not measured (no reference)"
    fi
    row "Round trip p50 / bare spawn of bash (p50)" "<= 1.3x" "$(ms "$o50") / $(ms "$b50") = $(ratio "$o50" "$b50")"
    row "Round trip p99 / bare spawn of bash (p99)" "" "$(ms "$o99") / $(ms "$b99") = $(ratio "$o99" "$b99")"
    row "Bare spawn of bash forced to fork / posix_spawn (p50)" "-" "$(ms "$f50") / $(ms "$b50") = $(ratio "$f50" "$b50")"
else
    row "Round trip vs reference" "<= 0.35x" "not measured (skipped, or no reference)"
fi

echo "start-up and idle RSS ..." >&2
startup=$(drive startup "$BIN" 11)
ready_ms=$(json '["ready_ms_median"]' <<<"$startup")
idle_kib=$(json '["idle_rss_kib_median"]' <<<"$startup")
ref_ready="not measured"; ref_rss="not measured"; ref_rss_kib=0; ref_ready_ms=0
if [ -x "$ref" ] && [ "$(id -u)" = 0 ]; then
    ref_port=$(free_port)
    "$ref" setup >/dev/null
    start=$(date +%s%N)
    "$ref" start "$ref_port" ref-key >/dev/null
    # The start verb waits for /health; /ready is what is compared.
    for _ in $(seq 12000); do
        curl -sf -o /dev/null "http://127.0.0.1:$ref_port/ready" && break
        sleep 0.01
    done
    ref_ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    ref_ready="$ref_ready_ms ms"
    sleep 2
    ref_pidfile="${REF_ROOT:-$HOME/.cache/reference-agent-server}.run/server-$ref_port.pid"
    ref_rss_kib=$(drive tree-rss "$(cat "$ref_pidfile")" | json '["VmRSS"]')
    ref_rss=$(mib "$ref_rss_kib")
    "$ref" stop "$ref_port" >/dev/null 2>&1 || true
fi
row "Idle RSS, ours / reference" "<= 10 MiB" "$(mib "$idle_kib") / $ref_rss = $(ratio "$idle_kib" "$ref_rss_kib")"
row "Start to /ready (median of 11), ours / reference" "<= 20 ms" "$ready_ms ms / $ref_ready = $(ratio "$ready_ms" "$ref_ready_ms")"

# --- ours alone -------------------------------------------------------------------------------
echo "upstream requests ..." >&2
start_settings --delay-ms 100
start_sidecar --settings-url "$SETTINGS_URL" --max-concurrent-requests 1024 --max-concurrent-commands 128
api POST /api/secrets "$(lookup_body WARM COLD_RESOLVE COLD_COMMAND)" >/dev/null
settings_reset
# shellcheck disable=SC2016 # the variables are expanded by the command's shell
seq_out=$(drive sequential "$SIDECAR_URL" "$KEY" 1000 /api/commands '{"command": "true \"$WARM\""}')
row "Upstream requests, 1,000 commands, 1 LookupSecret" "1" "$(settings_total) ($(json '["statuses"]' <<<"$seq_out"))"
settings_reset
burst=$(drive burst "$SIDECAR_URL" "$KEY" 500 /api/secrets/resolve '{"names": ["COLD_RESOLVE"]}')
row "Upstream requests, 500 concurrent cold resolves" "1" "$(settings_total) ($(json '["statuses"]' <<<"$burst"))"
settings_reset
# shellcheck disable=SC2016
burst=$(drive burst "$SIDECAR_URL" "$KEY" 100 /api/commands '{"command": "true \"$COLD_COMMAND\""}')
row "Upstream requests, 100 concurrent cold commands" "1" "$(settings_total) ($(json '["statuses"]' <<<"$burst"))"
stop_pid "$SIDECAR_PID"

echo "secrets list under wrk ..." >&2
start_sidecar --max-concurrent-requests 1024
api POST /api/secrets '{"secrets": {"SECRET_A": "value-aaaa-1111", "SECRET_B": "value-bbbb-2222", "SECRET_C": "value-cccc-3333"}}' >/dev/null
if command -v wrk >/dev/null; then
    rps=$(wrk -t2 -c100 -d10s -H "X-Session-API-Key: $KEY" "$SIDECAR_URL/api/secrets" | awk '/Requests\/sec/ {printf "%d", $2}')
    row "Secrets list, 100 keep-alive clients (wrk, same 2 cores)" ">= 40,000 req/s" "$rps req/s"
else
    row "Secrets list, 100 keep-alive clients" ">= 40,000 req/s" "not measured (apt-get install wrk)"
fi

echo "soak ..." >&2
# shellcheck disable=SC2016
soak=$(drive soak "$SIDECAR_URL" "$KEY" "$soak_rate" "$soak_seconds" /api/commands '{"command": "echo \"$SECRET_A\""}' "$SIDECAR_PID")
row "Soak ${soak_seconds} s at ${soak_rate} commands/s: errors" "0" "$(json '["errors"]' <<<"$soak") of $(json '["requests"]' <<<"$soak") $(json '["error_kinds"]' <<<"$soak")"
row "Soak: RSS start -> end" "growth < 10 %" "$(mib "$(json '["rss_start_kib"]' <<<"$soak")") -> $(mib "$(json '["rss_end_kib"]' <<<"$soak")") ($(json '["rss_growth_pct"]' <<<"$soak") %)"
stop_pid "$SIDECAR_PID"

thrpt=
if [ "${COMPARE_SKIP_CARGO:-0}" != 1 ]; then
    echo "masking (benches/mask.rs, one shot over 64 MiB, 1,000 secrets) ..." >&2
    mask=$(cd "$ROOT" && cargo bench -q --bench mask -- --warm-up-time 1 --measurement-time 5 'mask/one_shot_64MiB' 2>/dev/null)
    thrpt=$(awk '/thrpt:/ {print $(NF-3), $(NF-2); exit}' <<<"$mask")
fi
row "Masking throughput (1,000 secrets, one shot)" ">= 1 GB/s" "${thrpt:-not measured}"

egress_added="not measured"; egress_thrpt="not measured"
if [ "${COMPARE_SKIP_CARGO:-0}" != 1 ]; then
    echo "egress proxy (benches/egress.rs) ..." >&2
    egress=$(cd "$ROOT" && cargo bench -q --bench egress 2>/dev/null) || egress=
    echo "$egress" >&2
    # "added by substitution: p50 X ms (target <= 1 ms), p99 Y ms"
    egress_added=$(awk '/added by substitution:/ {print "p50 " $5 " ms, p99 " $12 " ms"; exit}' <<<"$egress")
    # "1 KiB answers: direct D req/s, substituting S req/s (Rx), blind B req/s (Rx)"
    egress_thrpt=$(awk '/1 KiB answers:/ {gsub(/[(),]/, ""); print "substituting " $10 ", blind " $14 " (direct " $5 " req/s)"; exit}' <<<"$egress")
fi
row "Egress proxy: latency added over direct TLS (keep-alive)" "p50 <= 1 ms" "${egress_added:-not measured}"
row "Egress proxy: throughput / direct HTTPS, 1 KiB answers" ">= 0.5x" "${egress_thrpt:-not measured}"

echo
echo "secret-sidecar vs reference, $(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-58s | %-22s | %-34s |\n' Measure Target Measured
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..36})"
printf '%s\n' "${rows[@]}"
