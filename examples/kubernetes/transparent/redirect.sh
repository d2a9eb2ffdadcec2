#!/bin/sh
# Sends the pod's outbound TCP to airlock's transparent listener, the way a
# service mesh's init container does, so an agent that ignores HTTPS_PROXY
# is intercepted all the same. Run once, before the agent starts, in an init
# container with NET_ADMIN (and only that container). It changes only the
# pod's own network namespace.
#
# Left alone: airlock's own connections (its uid), loopback to airlock's
# review and proxy ports (status URLs, agents that use the proxy on purpose).
# Everything else over TCP goes to airlock; UDP except DNS is refused, so
# HTTP/3 cannot go around it. Fails (and the pod does not start) when a
# rule cannot be installed, for IPv4 or, where the pod has it, IPv6.
set -eu

AIRLOCK_UID="${AIRLOCK_UID:-10001}"
TRANSPARENT_PORT="${TRANSPARENT_PORT:-3130}"
PROXY_PORT="${PROXY_PORT:-3128}"
REVIEW_PORT="${REVIEW_PORT:-3129}"

redirect() {
    ipt="$1"
    loopback="$2"
    "$ipt" -t nat -N AIRLOCK_REDIRECT
    "$ipt" -t nat -A AIRLOCK_REDIRECT -m owner --uid-owner "$AIRLOCK_UID" -j RETURN
    "$ipt" -t nat -A AIRLOCK_REDIRECT -d "$loopback" -p tcp --dport "$REVIEW_PORT" -j RETURN
    "$ipt" -t nat -A AIRLOCK_REDIRECT -d "$loopback" -p tcp --dport "$PROXY_PORT" -j RETURN
    "$ipt" -t nat -A AIRLOCK_REDIRECT -p tcp -j REDIRECT --to-ports "$TRANSPARENT_PORT"
    "$ipt" -t nat -A OUTPUT -p tcp -j AIRLOCK_REDIRECT
    "$ipt" -t filter -N AIRLOCK_UDP
    "$ipt" -t filter -A AIRLOCK_UDP -m owner --uid-owner "$AIRLOCK_UID" -j RETURN
    "$ipt" -t filter -A AIRLOCK_UDP -p udp --dport 53 -j RETURN
    "$ipt" -t filter -A AIRLOCK_UDP -o lo -j RETURN
    "$ipt" -t filter -A AIRLOCK_UDP -j REJECT
    "$ipt" -t filter -A OUTPUT -p udp -j AIRLOCK_UDP
}

redirect iptables 127.0.0.1/32
if grep -q . /proc/net/if_inet6 2>/dev/null; then
    redirect ip6tables ::1/128
fi
echo "airlock: outbound TCP redirected to port $TRANSPARENT_PORT (uid $AIRLOCK_UID exempt)"
