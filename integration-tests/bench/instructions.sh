#!/usr/bin/env bash
# Deterministic cost per keep-alive request: each setup runs under valgrind's callgrind twice, with
# 8 connections doing sequential 1 KiB GETs, once for a moment (start-up, 8 handshakes, a few
# requests) and once for SECS seconds; the marginal cost of a request is
#   (instructions of the long run - of the short run) / (requests of the long run - of the short run)
# in the proxy's user space, and likewise its malloc calls. Instruction counts do not depend on what
# else the machine is doing, so two builds (or two proxies) compare exactly.
#   SETUPS="passthrough inspect" (vpcgate), PEERS="hudsucker" (as in run.sh; Squid under valgrind
#   wrote no profile here, so it is not offered), SECS=4
# Same loopback set-up as run.sh (sourced for it); needs valgrind and python3.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ISETUPS=${SETUPS:-passthrough inspect}
SECS=${SECS:-4}
BENCH_SETUP_ONLY=1
# shellcheck source=run.sh
source "$BENCH/run.sh"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
for p in $PEERS; do [ "$p" = hudsucker ] || die "instructions.sh measures vpcgate and the hudsucker peer only (PEERS=$PEERS)"; done

# Calls to malloc recorded in a callgrind profile.
mallocs() {
  python3 - "$1" <<'PY'
import re, sys
names, target, total = {}, None, 0
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("cfn="):
        m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if m.group(2):
            names[m.group(1)] = m.group(2)
        target = names.get(m.group(1))
    elif line.startswith("fn="):
        m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if m and m.group(2):
            names[m.group(1)] = m.group(2)
    elif line.startswith("calls=") and target == "malloc":
        total += int(line.split("=")[1].split()[0])
print(total)
PY
}

# One run: sets RESULT="instructions mallocs requests".
measure() { # setup secs warmup-ms
  local setup=$1 out="$WORK/cg-$1-$2.out" addr=$PROXY cas=$CAS
  VG_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$out" --separate-threads=no)
  case $setup in
    passthrough | inspect) START_WAIT_MS=120000 start_vpcgate "$setup" ;;
    *) START_WAIT_MS=120000 start_peer "$setup"; addr=${PEER_ADDR[$setup]}; cas="$CAS${PEER_CA[$setup]:+,${PEER_CA[$setup]}}" ;;
  esac
  VG_WRAP=()
  "$LOADGEN" keepalive --via proxy --proxy "$addr" --upstream "$UPSTREAM" --host "$HOST" --ca "$cas" \
    --conns 8 --secs "$2" --warmup-ms "$3" >"$WORK/cg.txt" || die "$setup: $(cat "$WORK/cg.txt")"
  sleep 0.5
  kill -INT "$VPID" 2>/dev/null || true # hudsucker stops on SIGINT; vpcgate and Squid too
  wait "$VPID" 2>/dev/null || true
  VPID=""
  [ -s "$out" ] || die "$setup: callgrind wrote no profile"
  RESULT="$(awk '/^summary:/{print $2}' "$out") $(mallocs "$out") $(awk '$1=="ka_requests_total"{print $2}' "$WORK/cg.txt")"
}

echo "| setup | instructions per request | malloc calls per request | requests measured |"
echo "|---|---:|---:|---:|"
for setup in $ISETUPS $PEERS; do
  say "callgrind: $setup (short run, then ${SECS} s)"
  measure "$setup" 0.05 0
  read -r i0 m0 r0 <<<"$RESULT"
  measure "$setup" "$SECS" 500
  read -r i1 m1 r1 <<<"$RESULT"
  awk -v s="$setup" -v i0="$i0" -v i1="$i1" -v m0="$m0" -v m1="$m1" -v r0="$r0" -v r1="$r1" \
    'BEGIN{n=r1-r0; if (n<=0) {print "| " s " | n/a | n/a | 0 |"; exit} printf "| %s | %.0f | %.1f | %d |\n", s, (i1-i0)/n, (m1-m0)/n, n}'
done
