#!/usr/bin/env bash
# Starts airlock for ../shared/bench: `serve.sh MODE PORT ORIGIN_CA WORKDIR`.
# MODE forward: 127.0.0.1 is decided at CONNECT (host-only rule) and tunnelled
# blind; plain HTTP is forwarded. MODE mitm: the rule also names methods, so
# 127.0.0.1 is intercepted with the CA in WORKDIR/certs.
set -euo pipefail
mode=$1 port=$2 origin_ca=$3 work=$4
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$work/$mode"
mkdir -p "$dir/rules"
case "$mode" in
  forward) cond='' ;;
  mitm) cond='method = ["GET", "HEAD"]' ;;
  *) echo "mode must be forward or mitm" >&2; exit 2 ;;
esac
cat > "$dir/rules/00-bench.toml" <<TOML
[[rule]]
name = "bench-origin"
action = "automatic"
host = ["127.0.0.1", "localhost"]
$cond
TOML
cat > "$dir/airlock.toml" <<TOML
[proxy]
listen = "127.0.0.1:$port"
upstream_ca = ["$origin_ca"]
[review]
listen = "127.0.0.1:0"
[store]
path = "$dir/data"
[tls]
ca_dir = "$work/certs"
[rules]
dir = "$dir/rules"
[defaults]
unmatched = "deny"
TOML
export RUST_LOG="${RUST_LOG:-warn}"
exec "${AIRLOCK_BIN:-$here/../target/release/airlock}" run --config "$dir/airlock.toml"
