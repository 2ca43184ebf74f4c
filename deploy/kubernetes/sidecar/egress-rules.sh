#!/bin/sh
# vpcgate's per-pod egress lock. Run once, as root with CAP_NET_ADMIN (and CAP_NET_RAW for the
# legacy backend), in the pod's network namespace before any other container starts: the first
# init container of deploy/kubernetes/sidecar/deployment.yaml runs it from the ConfigMap that
# kustomize generates from this file, and integration-tests/kubernetes.rs runs this same file in a
# network namespace of its own.
#
# Afterwards, in this network namespace, for IPv4 and IPv6 alike:
#   - loopback is open to everyone (the application reaches vpcgate at 127.0.0.1:3128);
#   - packets of connections that are already established pass (answers to inbound connections:
#     the application can still serve, kubelet's probes get their replies);
#   - only processes running as UID $VPCGATE_UID (vpcgate, 10001) may open connections that leave
#     the pod;
#   - DNS (UDP and TCP port 53) is open to every UID, to any address (the pod's resolv.conf names
#     the cluster DNS);
#   - each ADDR:PORT of $VPCGATE_DIRECT_TCP (space-separated; "[ADDR]:PORT" for IPv6) is open to
#     every UID over TCP, e.g. the EKS Pod Identity agent "169.254.170.23:80 [fd00:ec2::23]:80";
#   - anything else is rejected at once: TCP with a reset (connect() fails with "connection
#     refused"), other protocols with an ICMP port unreachable.
#
# Environment:
#   VPCGATE_UID         numeric UID vpcgate runs as (default 10001, the image's user)
#   VPCGATE_DIRECT_TCP  destinations every UID may reach directly (default: none)
#
# Idempotent: running it again replaces the chain's rules and keeps one jump from OUTPUT. It exits
# non-zero, so the pod does not start, when a rule cannot be installed, and also when the kernel
# has IPv6 but no ip6tables works (an unfiltered IPv6 path would be a way around vpcgate).
set -eu

uid=${VPCGATE_UID:-10001}
direct=${VPCGATE_DIRECT_TCP:-}
chain=VPCGATE_EGRESS

say() { echo "egress-rules: $*" >&2; }
die() { say "$*"; exit 1; }

case $uid in
  '' | *[!0-9]*) die "VPCGATE_UID must be a numeric UID, got '$uid'" ;;
esac
[ "$uid" -ne 0 ] || die "VPCGATE_UID must not be 0: root's traffic would pass unfiltered"

# The first of FAMILY, FAMILY-nft, FAMILY-legacy that can read the filter table in this namespace
# (Debian's iptables is the nft backend; a node kernel without nf_tables needs the legacy one).
backend() {
  for b in "$1" "$1-nft" "$1-legacy"; do
    if command -v "$b" >/dev/null 2>&1 && "$b" -w 5 -t filter -S OUTPUT >/dev/null 2>&1; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

install_rules() {
  ipt=$1
  family=$2
  if [ "$family" = 4 ]; then unreachable=icmp-port-unreachable; else unreachable=icmp6-port-unreachable; fi
  if ! "$ipt" -w 5 -N "$chain" 2>/dev/null; then
    "$ipt" -w 5 -F "$chain"
  fi
  "$ipt" -w 5 -A "$chain" -o lo -j ACCEPT
  "$ipt" -w 5 -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  "$ipt" -w 5 -A "$chain" -m owner --uid-owner "$uid" -j ACCEPT
  "$ipt" -w 5 -A "$chain" -p udp --dport 53 -j ACCEPT
  "$ipt" -w 5 -A "$chain" -p tcp --dport 53 -j ACCEPT
  for d in $direct; do
    case $d in
      \[*\]:*) addr=${d%%]*}; addr=${addr#\[}; port=${d##*]:}; fam=6 ;;
      *:*:*) die "write an IPv6 destination as [ADDR]:PORT, got '$d'" ;;
      *:*) addr=${d%:*}; port=${d##*:}; fam=4 ;;
      *) die "VPCGATE_DIRECT_TCP entries are ADDR:PORT, got '$d'" ;;
    esac
    case $port in
      '' | *[!0-9]*) die "no numeric port in VPCGATE_DIRECT_TCP entry '$d'" ;;
    esac
    if [ "$fam" = "$family" ]; then
      "$ipt" -w 5 -A "$chain" -p tcp -d "$addr" --dport "$port" -j ACCEPT
    fi
  done
  "$ipt" -w 5 -A "$chain" -p tcp -j REJECT --reject-with tcp-reset
  "$ipt" -w 5 -A "$chain" -j REJECT --reject-with "$unreachable"
  if ! "$ipt" -w 5 -C OUTPUT -j "$chain" 2>/dev/null; then
    "$ipt" -w 5 -I OUTPUT 1 -j "$chain"
  fi
  say "$ipt: only UID $uid may leave this network namespace (loopback, DNS${direct:+, $direct} open to all)"
}

v4=$(backend iptables) || die "no working iptables (install Debian's iptables; the container needs CAP_NET_ADMIN)"
install_rules "$v4" 4

if [ -e /proc/net/if_inet6 ]; then
  v6=$(backend ip6tables) || die "the kernel has IPv6 but no working ip6tables: IPv6 would bypass vpcgate"
  install_rules "$v6" 6
else
  say "no IPv6 in this network namespace: nothing to filter for IPv6"
fi
