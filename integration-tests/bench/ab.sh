#!/usr/bin/env bash
# A/B two vpcgate builds on one cell, interleaved (A B direct, B A direct, ...), so that drift of
# a shared machine hits both alike. Same loopback set-up as run.sh (sourced for it).
#
#   VG_A=/path/to/old/vpcgate VG_B=/path/to/new/vpcgate MODE=inspect CELL=bulk N=5 \
#     bash integration-tests/bench/ab.sh
#
# CELL: bulk or upload (BULK_BYTES, default 512 MiB), keepalive / connrate (SECS, default 3), idle (TUN,
# default 4000), mint (HOSTS, default 2000). Prints one line per run: the loadgen figures plus vpcgate's total CPU ticks.
# Build the old binary from a worktree, e.g.
#   git worktree add /tmp/old HEAD~3 && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --bin vpcgate)
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
: "${VG_A:?set VG_A to the first vpcgate binary}" "${VG_B:?set VG_B to the second vpcgate binary}"
# Shorter cells than run.sh's defaults (run.sh's cell_args reads these knobs).
BULK_BYTES=${BULK_BYTES:-536870912}
SECS=${SECS:-3}
IDLE_TUNNELS=${TUN:-4000}
MINT_HOSTS=${HOSTS:-2000}
BENCH_SETUP_ONLY=1
# shellcheck source=run.sh
source "$BENCH/run.sh"
N=${N:-5}
MODE=${MODE:-inspect}
CELL=${CELL:-bulk}
cell_args "$CELL"
args=("${CELL_ARGS[@]}")
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
for i in $(seq 1 "$N"); do
  # The order flips every round: the first of a pair measured faster often enough to bias a fixed order.
  order="A B"
  [ $((i % 2)) = 0 ] && order="B A"
  for v in $order; do
    if [ "$v" = A ]; then VPCGATE=$VG_A; else VPCGATE=$VG_B; fi
    start_vpcgate "$MODE"
    "$LOADGEN" "$CELL" --via proxy --proxy "$PROXY" --pid "$VPID" --upstream "$UPSTREAM" --host "$HOST" --ca "$CAS" "${args[@]}" >"$WORK/ab.out" 2>&1 || cat "$WORK/ab.out" >&2
    t=$(ticks "$VPID")
    stop_vpcgate
    echo "$i $v $MODE $(grep -v '^loadgen_cpu' "$WORK/ab.out" | tr '\n' ' ')vpcgate_ticks $t"
  done
  [ "$CELL" = idle ] && continue
  "$LOADGEN" "$CELL" --via direct --upstream "$UPSTREAM" --host "$HOST" --ca "$CAS" "${args[@]}" >"$WORK/ab.out" 2>&1 || cat "$WORK/ab.out" >&2
  echo "$i direct $(grep -v '^loadgen_cpu' "$WORK/ab.out" | tr '\n' ' ')"
done
