#!/usr/bin/env bash
# Where the floor of a relay is on this machine: keep-alive and bulk through direct, vpcgate
# passthrough, vpcgate inspect and (where BPF sk_skb programs load) a kernel-only relay
# (experiments/sockmap_relay.py: the kernel moves every byte, user space never wakes for data).
# Measured per setup, interleaved, medians of ROUNDS:
#   keep-alive (32 connections, 1 KiB GETs): requests/s, busy CPU of the whole machine per request
#     (every process and kernel thread: the kernel relay works in kworkers, which no PID owns),
#     and TCP segments sent per request (nstat TcpOutSegs, loopback counts each segment once);
#   bulk (1 GiB GET): MB/s and busy CPU of the whole machine per GiB.
# Knobs: ROUNDS=3 SECS=5 BULK_BYTES=1073741824 FSETUPS="direct passthrough inspect sockmap".
# Same loopback set-up as run.sh (sourced for it); needs root, nstat (iproute2) and python3.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
FSETUPS=${FSETUPS:-direct passthrough inspect sockmap}
BENCH_SETUP_ONLY=1
# shellcheck source=run.sh
source "$BENCH/run.sh"
command -v nstat >/dev/null || die "nstat is missing (apt-get install iproute2)"
# Busy CPU ticks (USER_HZ) of the whole machine: user nice system irq softirq steal.
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
RELAY=127.79.0.9:3128
RPID=""
stop_relay() { if [ -n "$RPID" ]; then kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; fi; RPID=""; }
trap 'stop_relay; cleanup' EXIT
start_relay() {
  python3 "$BENCH/experiments/sockmap_relay.py" "$RELAY" "$UPSTREAM" >"$WORK/relay.log" 2>&1 &
  RPID=$!
  "$LOADGEN" wait --addr "$RELAY" --timeout-ms 5000 2>/dev/null || { stop_relay; return 1; }
}
if [[ " $FSETUPS " == *" sockmap "* ]] && ! { start_relay && stop_relay; }; then
  say "the kernel relay did not start ($(tail -1 "$WORK/relay.log")); measuring without it"
  FSETUPS=${FSETUPS/sockmap/}
fi

OUT="$WORK/floor.txt"
: >"$OUT"
for round in $(seq "$ROUNDS"); do
  for cell in keepalive bulk; do
    for setup in $FSETUPS; do
      cell_args "$cell"
      case $setup in
        direct) via=(--via direct) ;;
        passthrough | inspect) start_vpcgate "$setup"; via=(--via proxy --proxy "$PROXY" --pid "$VPID") ;;
        sockmap) start_relay; via=(--via proxy --proxy "$RELAY" --pid "$RPID") ;;
      esac
      nstat -n >/dev/null
      m0=$(machine_ticks)
      "$LOADGEN" "$cell" "${via[@]}" --upstream "$UPSTREAM" --host "$HOST" --ca "$CAS" "${CELL_ARGS[@]}" \
        >"$WORK/cell.out" 2>"$WORK/cell.err" || die "$cell via $setup failed: $(tail -3 "$WORK/cell.err")"
      m1=$(machine_ticks)
      segs=$(nstat | awk '$1=="TcpOutSegs"{print $2}')
      case $setup in passthrough | inspect) stop_vpcgate ;; sockmap) stop_relay ;; esac
      hz=$(getconf CLK_TCK)
      if [ "$cell" = keepalive ]; then
        n=$(awk '$1=="ka_requests_total"{print $2}' "$WORK/cell.out")
        rps=$(awk '$1=="ka_req_per_s"{print $2}' "$WORK/cell.out")
        awk -v r="$round" -v s="$setup" -v rps="$rps" -v t=$((m1 - m0)) -v hz="$hz" -v n="$n" -v g="$segs" \
          'BEGIN{printf "%s %s ka_rps %.0f\n%s %s ka_cpu_us %.1f\n%s %s ka_segs %.2f\n", r,s,rps, r,s,t/hz*1e6/n, r,s,g/n}' >>"$OUT"
      else
        mbps=$(awk '$1=="bulk_mbps"{print $2}' "$WORK/cell.out")
        awk -v r="$round" -v s="$setup" -v m="$mbps" -v t=$((m1 - m0)) -v hz="$hz" -v b="$BULK_BYTES" \
          'BEGIN{printf "%s %s bulk_mbps %.0f\n%s %s bulk_cpu_s_per_gib %.2f\n", r,s,m, r,s,t/hz/(b/1073741824)}' >>"$OUT"
      fi
      say "round $round $cell $setup: $(grep "^$round $setup " "$OUT" | grep "$([ "$cell" = bulk ] && echo bulk || echo ka_)" | cut -d' ' -f3- | tr '\n' ' ')"
    done
  done
done

# Median per setup and metric, with the ratio to direct where it is a rate.
echo "## Relay floor, $(date -u +%Y-%m-%d) ($ROUNDS rounds, medians; whole-machine CPU, $(nproc) CPUs)"
echo
printf '| metric |'; for s in $FSETUPS; do printf ' %s |' "$s"; done; echo
printf '|---|'; for _ in $FSETUPS; do printf -- '---:|'; done; echo
for metric in ka_rps ka_cpu_us ka_segs bulk_mbps bulk_cpu_s_per_gib; do
  case $metric in
    ka_rps) label="keep-alive req/s" ;;
    ka_cpu_us) label="keep-alive machine CPU µs/request" ;;
    ka_segs) label="keep-alive TCP segments sent/request" ;;
    bulk_mbps) label="bulk GET of $((BULK_BYTES >> 20)) MiB, MB/s" ;;
    bulk_cpu_s_per_gib) label="bulk machine CPU s/GiB" ;;
  esac
  printf '| %s |' "$label"
  d=$(awk -v m=$metric '$2=="direct" && $3==m{print $4}' "$OUT" | sort -n | awk '{a[NR]=$1}END{if(NR)print a[int((NR+1)/2)]}')
  for s in $FSETUPS; do
    v=$(awk -v s="$s" -v m=$metric '$2==s && $3==m{print $4}' "$OUT" | sort -n | awk '{a[NR]=$1}END{if(NR)print a[int((NR+1)/2)]}')
    if [ -n "$d" ] && [ "$s" != direct ] && { [ $metric = ka_rps ] || [ $metric = bulk_mbps ]; }; then
      printf ' %s (%s×) |' "$v" "$(awk -v a="$v" -v b="$d" 'BEGIN{printf "%.2f", a/b}')"
    else
      printf ' %s |' "$v"
    fi
  done
  echo
done
