#!/usr/bin/env bash
# Profile vpcgate in three benchmark cells: bulk-passthrough, bulk-inspect, connrate-inspect.
# Same loopback set-up as run.sh (it is sourced for that). Two profilers:
#   perf     sampling of the running vpcgate (-e cpu-clock: works where hardware counters do not,
#            as in VMs; user and kernel time, DWARF call graphs), full-speed cells;
#   callgrind instruction counts of user-space code (valgrind), shorter cells.
# PROFILERS="perf callgrind" (default both), OUT=DIR (default a new /tmp/vpcgate-profile.*).
# Prints the top functions of each profile; the raw profiles stay in OUT.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
PROFILERS=${PROFILERS:-perf callgrind}
OUT=${OUT:-$(mktemp -d /tmp/vpcgate-profile.XXXXXX)}
mkdir -p "$OUT"

BENCH_SETUP_ONLY=1
# shellcheck source=run.sh
source "$BENCH/run.sh"

cell() { # mode loadgen-args...
  local mode=$1
  shift
  "$LOADGEN" "$@" --via proxy --proxy "$PROXY" --upstream "$UPSTREAM" --host "$HOST" --ca "$CAS" >"$OUT/cell.out" 2>&1 || {
    cat "$OUT/cell.out" >&2
    die "cell failed"
  }
  tr '\n' ' ' <"$OUT/cell.out" >&2
  echo >&2
}

run_perf() { # name mode loadgen-args...
  local name=$1 mode=$2
  shift 2
  command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
  start_vpcgate "$mode"
  perf record -q -e cpu-clock -F 1999 --call-graph dwarf,32768 -p "$VPID" -o "$OUT/$name.perf.data" 2>/dev/null &
  local ppid=$!
  sleep 0.5
  cell "$mode" "$@"
  kill -INT "$ppid"
  wait "$ppid" 2>/dev/null || true
  stop_vpcgate
  perf report -i "$OUT/$name.perf.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.7 2>/dev/null |
    grep -v '^#' | grep . >"$OUT/$name.perf.self.txt" || true
  perf report -i "$OUT/$name.perf.data" --children --sort sym --stdio -g none --percent-limit 3 2>/dev/null |
    grep -v '^#' | grep . >"$OUT/$name.perf.inclusive.txt" || true
  echo "### perf $name: self time (top)"
  head -25 "$OUT/$name.perf.self.txt"
  echo
}

run_callgrind() { # name mode loadgen-args...
  local name=$1 mode=$2
  shift 2
  command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
  VG_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind.out" --separate-threads=no)
  START_WAIT_MS=120000 start_vpcgate "$mode"
  VG_WRAP=()
  cell "$mode" "$@"
  stop_vpcgate
  callgrind_annotate --inclusive=no "$OUT/$name.callgrind.out" 2>/dev/null | head -60 >"$OUT/$name.callgrind.self.txt" || true
  callgrind_annotate --inclusive=yes "$OUT/$name.callgrind.out" 2>/dev/null | head -80 >"$OUT/$name.callgrind.inclusive.txt" || true
  echo "### callgrind $name: self instructions (top)"
  sed -n '1,45p' "$OUT/$name.callgrind.self.txt" | grep -E '^ *[0-9,]+ \(' | head -25
  echo
}

for p in $PROFILERS; do
  case $p in
    perf)
      run_perf bulk-passthrough passthrough bulk --bytes 1073741824
      run_perf bulk-inspect inspect bulk --bytes 1073741824
      run_perf connrate-inspect inspect connrate --workers 32 --secs 5
      ;;
    callgrind)
      run_callgrind bulk-passthrough passthrough bulk --bytes 134217728
      run_callgrind bulk-inspect inspect bulk --bytes 67108864
      run_callgrind connrate-inspect inspect connrate --workers 8 --secs 5 --warmup-ms 2000
      ;;
    *) die "unknown profiler $p" ;;
  esac
done
echo "profiles in $OUT"
