#!/usr/bin/env bash
# Hot-path benchmarks: direct Check RPCs against a do-nothing floor server, the same through
# Envoy (no auth, api_key_auth, floor, agents-authz) with wrk, memory with many keys, and in
# full mode the criterion scale bench. Prints a table of medians, min-max and ratios.
#
#   scripts/bench.sh --quick   smoke check (scripts/test.sh runs it; no thresholds)
#   scripts/bench.sh --full    the run recorded in BENCHMARKS.md (about 20 minutes at most)
#
# Needs wrk (Debian: apt-get install wrk) and Envoy (ENVOY_BIN, or .venv/bin/envoy as made
# by scripts/test.sh). Builds the release binary and the bench examples first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
--quick | --full) ;;
*)
    echo "usage: scripts/bench.sh --quick|--full [--json FILE]" >&2
    exit 2
    ;;
esac

echo "==> cargo build --release (agents-authz, loadgen, floor_server, bench_upstream)" >&2
cargo build --quiet --release --bin agents-authz \
    --example loadgen --example floor_server --example bench_upstream
exec python3 scripts/bench.py "$@"
