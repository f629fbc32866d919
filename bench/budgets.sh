#!/usr/bin/env bash
# The footprint budgets of issue "Ship it", measured on the release binary, as a table:
#   stripped binary size, image size, idle RSS, RSS with 1,000 secrets registered and
#   resolved plus 100 concurrent commands, and start to /ready (median, polled in process).
#
#   bench/budgets.sh [N]      N start-up runs (default 21)
#
# BUDGETS_IMAGE=1 also builds and measures the image (deploy/test-image: root, buildah,
# podman). SECRET_SIDECAR_BIN=PATH measures that binary instead of building one. Needs curl
# and python3.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
n=${1:-21}
build_release

# Stripped size: the profile strips symbols; strip a copy anyway in case it is changed.
cp "$BIN" "$WORK/stripped"
strip "$WORK/stripped" 2>/dev/null || true
size_kib=$(( $(stat -c %s "$WORK/stripped") / 1024 ))

# The image lives in deploy/test-image's private, throw-away store: it is built and measured
# there (a static build, the bulk of the time) only when asked.
image="not built (BUDGETS_IMAGE=1 builds it with deploy/test-image)"
image_ok="-"
if [ "${BUDGETS_IMAGE:-0}" = 1 ]; then
    image_bytes=$("$ROOT/deploy/test-image" 2>&1 | sed -n 's/.*image size: \([0-9]*\) bytes.*/\1/p' || true)
    if [ -n "$image_bytes" ]; then
        image=$(mib $((image_bytes / 1024)))
        image_ok=$([ "$image_bytes" -le $((14 * 1024 * 1024)) ] && echo yes || echo NO)
    else
        image="not measured (deploy/test-image failed)"
    fi
fi

startup=$(drive startup "$BIN" "$n")
ready_ms=$(json '["ready_ms_median"]' <<<"$startup")
idle_kib=$(json '["idle_rss_kib_median"]' <<<"$startup")

# Loaded: 1,000 LookupSecrets registered and resolved, then 100 commands running at once.
start_settings --secrets 2
start_sidecar --settings-url "$SETTINGS_URL" --max-concurrent-commands 128 \
    --max-concurrent-requests 512 --max-upstream 16
names=()
for i in $(seq 0 999); do names+=("$(printf 'S%04d' "$i")"); done
api POST /api/secrets "$(lookup_body "${names[@]}")" >/dev/null
resolved=$(api POST /api/secrets/resolve '{}' | json '["resolved"].__len__()')
# shellcheck disable=SC2016 # the variable is expanded by the command's shell
burst=$(drive burst "$SIDECAR_URL" "$KEY" 100 /api/commands '{"command": "sleep 1; echo \"$S0001\""}')
loaded=$(drive rss "$SIDECAR_PID")
loaded_kib=$(json '["VmHWM"]' <<<"$loaded")

le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "yes" : "NO" }'; }
echo
echo "Budgets, $(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-62s | %-8s | %-28s | %-3s |\n' Budget Target Measured Met
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..64})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..30})" "-----"
printf '| %-62s | %-8s | %-28s | %-3s |\n' "Stripped binary" "12 MiB" "$(mib "$size_kib")" "$(le "$size_kib" $((12 * 1024)))"
printf '| %-62s | %-8s | %-28s | %-3s |\n' "Image" "14 MiB" "$image" "$image_ok"
printf '| %-62s | %-8s | %-28s | %-3s |\n' "Idle RSS (median of $n)" "10 MiB" "$(mib "$idle_kib")" "$(le "$idle_kib" $((10 * 1024)))"
printf '| %-62s | %-8s | %-28s | %-3s |\n' "Peak RSS, $resolved secrets resolved + 100 concurrent commands" "48 MiB" "$(mib "$loaded_kib")" "$(le "$loaded_kib" $((48 * 1024)))"
printf '| %-62s | %-8s | %-28s | %-3s |\n' "Start to /ready, median of $n" "20 ms" "$ready_ms ms" "$(le "$ready_ms" 20)"
echo
echo "start-up runs (ms): $(json '["ready_ms"]' <<<"$startup")"
echo "100 concurrent commands: $burst"
