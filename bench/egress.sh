#!/usr/bin/env bash
# The egress proxy on loopback: added latency (p50/p99) of the substituting path over direct
# TLS, throughput of the substituting path and of blind tunnels as ratios to direct (one load
# generator, keep-alive), and RSS with 1,000 cached leaf certificates.
#   bench/egress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench egress
