#!/usr/bin/env bash
# airlock beside a direct connection, Squid, tinyproxy and mitmproxy in one
# interleaved run of the shared harness (../shared/bench, see its README).
# Extra knobs (QUICK=1, SCENARIOS=..., PEERS=..., CONC=...) pass through.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
harness="${BENCH_HARNESS:-$root/../shared/bench}"
[ -x "$harness/run.sh" ] || { echo "benchmark harness not found at $harness (set BENCH_HARNESS)" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
work="$(mktemp -d /tmp/airlock-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$root/target/release/airlock" ca init --dir "$work/certs" >/dev/null
export PROXY_CMD="$root/bench/serve.sh forward {PORT} {ORIGIN_CA} $work"
export PROXY_PORT="${PROXY_PORT:-19000}" PROXY_NAME="${PROXY_NAME:-airlock}"
export PROXY_MITM_CMD="$root/bench/serve.sh mitm {PORT} {ORIGIN_CA} $work"
export PROXY_MITM_PORT="${PROXY_MITM_PORT:-19001}" PROXY_MITM_NAME="${PROXY_MITM_NAME:-airlock-mitm}"
export PROXY_MITM_CA="$work/certs/ca.pem"
exec "$harness/run.sh" "$@"
