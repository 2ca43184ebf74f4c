#!/usr/bin/env bash
# Installs what the per-pod enforcement test (integration-tests/kubernetes.rs) runs
# deploy/kubernetes/sidecar/egress-rules.sh with: Debian's iptables (iptables and ip6tables, nft and
# legacy backends; the same package the egress-init image installs), and setpriv (util-linux) to
# start processes under vpcgate's and the application's numeric UIDs. Idempotent: returns at once
# when both are there. Needs root (apt-get).
#
#   integration-tests/kubernetes/setup-netfilter.sh
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
{ have iptables && have ip6tables; } || need+=(iptables)
have setpriv || need+=(util-linux)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
# Serialise concurrent callers: apt-get takes its own lock and fails rather than waiting.
exec 9>/tmp/vpcgate-setup-netfilter.lock
flock 9
need=()
{ have iptables && have ip6tables; } || need+=(iptables)
have setpriv || need+=(util-linux)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "setup-netfilter: installing ${need[*]} (Debian)" >&2
if [ "$(id -u)" != 0 ]; then
    echo "setup-netfilter: not root; run: apt-get install -y ${need[*]}" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
