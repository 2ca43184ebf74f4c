#!/usr/bin/env bash
# Soak: SOAK_MINUTES (default 30) of mixed traffic through two vpcgate processes at once, one per
# mode, on loopback only, with a reload of both every minute. Not part of the test command.
#
#   sudo bash integration-tests/soak.sh                  # 30 minutes, table on stdout
#   SOAK_MINUTES=3 SOAK_OUT=/tmp/soak.md bash integration-tests/soak.sh
#
# Traffic, per mode, each in its own loop until the end (curl through the proxy):
#   connect   a new connection (CONNECT, TLS, one 1 KiB GET) each time
#   keepalive 50 GETs of 1 KiB on one connection
#   bulk      GET 64 MiB, then PUT 32 MiB
#   refusal   a dual-stack name and a plain http:// URL, each must be refused with its reason
# The upstream and DNS server are the benchmark's (`loadgen serve`, 127.79.0.1:443 and
# 127.79.0.53:53). Every 30 s a row: vpcgate's VmRSS, open descriptors, threads, open tunnels and
# pooled upstream connections (from /metrics), and the traffic's ok/error counts so far.
# At the end, after the traffic stops: whether RSS grew past 10 % of the first row taken under load
# (2 minutes in), whether descriptors came back to within 10 % of the idle baseline, and the errors.
# Exit 0 only when nothing grew and nothing failed.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${SOAK_MINUTES:-30}
WORK=$(mktemp -d)
UPSTREAM=127.79.0.1:443
DNS=127.79.0.53:53
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
say() { echo "soak: $*" >&2; }

say "building vpcgate and loadgen (release)"
cargo build --release --locked --quiet
(cd integration-tests/bench && cargo build --release --locked --quiet)
VPCGATE=target/release/vpcgate
LOADGEN=integration-tests/bench/target/release/loadgen

"$LOADGEN" serve --upstream "$UPSTREAM" --dns "$DNS" --ca-out "$WORK/upstream-ca.pem" 2>"$WORK/serve.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/upstream-ca.pem" ] && break; sleep 0.1; done
[ -s "$WORK/upstream-ca.pem" ] || { say "loadgen serve did not start: $(cat "$WORK/serve.log")"; exit 2; }

declare -A PORT ADMIN PID
PORT[passthrough]=13128; ADMIN[passthrough]=13129
PORT[inspect]=13138; ADMIN[inspect]=13139
for mode in passthrough inspect; do
  cat >"$WORK/$mode.toml" <<EOF
[proxy]
listen = "127.0.0.1:${PORT[$mode]}"
shutdown_grace = "1s"
[admin]
listen = "127.0.0.1:${ADMIN[$mode]}"
[dns]
servers = ["$DNS"]
timeout = "2s"
[aws]
regions = ["us-east-1"]
[tls]
mode = "$mode"
ca_cert = "$WORK/ca-$mode/ca.pem"
ca_key = "$WORK/ca-$mode/ca-key.pem"
extra_roots = ["$WORK/upstream-ca.pem"]
[log]
level = "warn"
format = "json"
[[routes]]
name = "soak-gateway"
kind = "gateway"
cidrs = ["127.79.0.0/16"]
EOF
  env -u RUST_LOG -u VPCGATE_CONFIG "$VPCGATE" --config "$WORK/$mode.toml" run 2>"$WORK/$mode.log" &
  PID[$mode]=$!
  pids+=("${PID[$mode]}")
done
for mode in passthrough inspect; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${ADMIN[$mode]}/readyz" && break; sleep 0.1; done
done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2; exit}'; }
for mode in passthrough inspect; do
  echo "$(fds "${PID[$mode]}")" >"$WORK/$mode.fds0"
done

HOST=soak.s3.us-east-1.amazonaws.com
cacert() { if [ "$1" = inspect ]; then echo "$WORK/ca-$1/ca.pem"; else echo "$WORK/upstream-ca.pem"; fi; }
through() { local mode=$1; shift; curl -sS --max-time 60 --proxy "http://127.0.0.1:${PORT[$mode]}" --cacert "$(cacert "$mode")" "$@"; }
count() { echo "$2" >>"$WORK/$1.counts"; }
head -c $((32 << 20)) /dev/urandom >"$WORK/upload"
seq 50 | sed "s|.*|url = \"https://$HOST/bytes/1024\"\noutput = \"/dev/null\"|" >"$WORK/keepalive.curl"
END=$(( $(date +%s) + MINUTES * 60 ))

worker() {
  local mode=$1 kind=$2
  while [ "$(date +%s)" -lt "$END" ]; do
    case $kind in
      connect)
        if through "$mode" -o /dev/null "https://$HOST/bytes/1024" 2>>"$WORK/$mode.errors"; then count "$mode" ok; else count "$mode" "err connect"; fi ;;
      keepalive)
        if through "$mode" -K "$WORK/keepalive.curl" 2>>"$WORK/$mode.errors"; then count "$mode" ok; else count "$mode" "err keepalive"; fi ;;
      bulk)
        got=$(through "$mode" -o /dev/null -w '%{size_download}' "https://$HOST/bytes/$((64 << 20))" 2>>"$WORK/$mode.errors" || true)
        if [ "$got" = $((64 << 20)) ]; then count "$mode" ok; else count "$mode" "err bulk-get"; fi
        code=$(through "$mode" -o /dev/null -w '%{http_code}' -T "$WORK/upload" "https://$HOST/sink" 2>>"$WORK/$mode.errors" || true)
        if [ "$code" = 200 ]; then count "$mode" ok; else count "$mode" "err bulk-put"; fi ;;
      refusal)
        out=$(through "$mode" -o /dev/null -D - "https://soak.s3.dualstack.us-east-1.amazonaws.com/bytes/1" 2>/dev/null || true)
        if grep -qi '^X-Vpcgate-Reason: dualstack' <<<"$out"; then count "$mode" ok; else count "$mode" "err refusal-dualstack"; fi
        out=$(through "$mode" -o /dev/null -D - "http://$HOST/bytes/1" 2>/dev/null || true)
        if grep -qi '^X-Vpcgate-Reason: plaintext' <<<"$out"; then count "$mode" ok; else count "$mode" "err refusal-plaintext"; fi
        sleep 0.2 ;;
    esac
  done
}
for mode in passthrough inspect; do
  for kind in connect keepalive bulk refusal; do
    worker "$mode" "$kind" &
    pids+=($!)
  done
done

row() {
  local t=$1
  local line="| $t"
  for mode in passthrough inspect; do
    local p=${PID[$mode]} ok err
    ok=$(grep -c '^ok$' "$WORK/$mode.counts" 2>/dev/null || true)
    err=$(grep -c '^err' "$WORK/$mode.counts" 2>/dev/null || true)
    line+=" | $(rss "$p") | $(fds "$p") | $(threads "$p") | $(metric "${ADMIN[$mode]}" vpcgate_tunnels_active) | $(metric "${ADMIN[$mode]}" vpcgate_upstream_idle) | ${ok:-0} | ${err:-0}"
    [ "$t" = "2:00" ] && rss "$p" >"$WORK/$mode.rss0"
  done
  echo "$line |"
}
{
  echo "soak: $MINUTES min, both modes at once, reload of both every minute, commit $(git rev-parse --short HEAD)"
  echo
  echo "| time | pass RSS KiB | fds | threads | tunnels | idle pool | ok | errors | insp RSS KiB | fds | threads | tunnels | idle pool | ok | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} | tee "$WORK/report"
start=$(date +%s)
reloads=0
next_row=$start
next_reload=$((start + 60))
while [ "$(date +%s)" -lt "$END" ]; do
  now=$(date +%s)
  if [ "$now" -ge "$next_reload" ]; then
    for mode in passthrough inspect; do kill -HUP "${PID[$mode]}"; done
    reloads=$((reloads + 1)); next_reload=$((next_reload + 60))
  fi
  if [ "$now" -ge "$next_row" ]; then
    e=$((now - start)); row "$((e / 60)):$(printf %02d $((e % 60)))" | tee -a "$WORK/report"; next_row=$((next_row + 30))
  fi
  sleep 1
done
wait_workers() { for p in "${pids[@]:3}"; do wait "$p" 2>/dev/null || true; done; }
say "traffic stopped; waiting for the workers and for idle tunnels to close"
wait_workers
sleep 20
row "end+20s" | tee -a "$WORK/report"
verdict=0
{
  echo
  for mode in passthrough inspect; do
    p=${PID[$mode]}
    r0=$(cat "$WORK/$mode.rss0" 2>/dev/null || rss "$p"); r1=$(rss "$p"); f0=$(cat "$WORK/$mode.fds0"); f1=$(fds "$p")
    err=$(grep -c '^err' "$WORK/$mode.counts" || true)
    ok=$(grep -c '^ok$' "$WORK/$mode.counts" || true)
    reloaded=$(curl -s "http://127.0.0.1:${ADMIN[$mode]}/metrics" | awk '/^vpcgate_reloads_total.*kind="ok"/ {print $2; exit}')
    grow=$(( (r1 - r0) * 100 / r0 ))
    echo "- $mode: RSS $r0 KiB at 2:00 under load, $r1 KiB 20 s after the traffic stopped (${grow} %); descriptors $f0 idle at start, $f1 at the end; $ok transfers ok, $err errors; ${reloaded:-0} reloads applied for $reloads SIGHUPs"
    if [ "$grow" -gt 10 ] || [ "$f1" -gt $(( f0 + f0 / 10 + 1 )) ] || [ "${err:-0}" -ne 0 ] || ! kill -0 "$p" 2>/dev/null; then verdict=1; fi
    if [ "${err:-0}" -ne 0 ]; then echo "  errors by kind: $(grep '^err' "$WORK/$mode.counts" | sort | uniq -c | tr '\n' ';')"; echo "  first curl errors: $(sort "$WORK/$mode.errors" | uniq -c | sort -rn | head -3 | tr '\n' ';')"; fi
  done
  [ "$verdict" = 0 ] && echo "- verdict: no growth, no errors" || echo "- verdict: FAILED (above)"
} | tee -a "$WORK/report"
[ -n "${SOAK_OUT:-}" ] && cp "$WORK/report" "$SOAK_OUT"
exit "$verdict"
