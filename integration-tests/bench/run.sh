#!/usr/bin/env bash
# vpcgate performance benchmark: direct vs vpcgate passthrough vs vpcgate inspect, on loopback only.
# Prints a markdown table (medians of interleaved rounds, ratios to direct) on stdout; progress on
# stderr. See README.md beside this file. Needs root (the upstream listens on 127.77.0.1:443).
#
# Knobs (environment): ROUNDS=3 SECS=5 BULK_BYTES=1073741824 IDLE_TUNNELS=10000 MINT_HOSTS=1000
# CELLS="bulk upload connrate keepalive idle mint" SETUPS="direct passthrough inspect"
# UPSTREAM_KEY=rsa (RSA-2048 CA and leaf, like S3's chain; needs openssl) or ecdsa (P-256),
# QUIET_WAIT=60 (seconds to wait, before each round, for other work on the machine to stop),
# FOREIGN_MAX=12 RERUNS=6 (rerun a cell's trio when other work took more than 12 % of the CPUs)
# CARGO_TARGET_DIR (default: the repository's target/), BENCH_OUT=FILE (also write the report there),
# CHARTS=DIR (also write the medians as SVG charts there, e.g. docs/src/images/bench),
# KEEP=1 (keep the work directory with every log), VG_THREADS=N (vpcgate's proxy.worker_threads; 0 = per CPU),
# PEERS="squid squid-bump hudsucker" (other proxies measured beside vpcgate in the same rounds; see README.md).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/../.." && pwd)"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
BULK_BYTES=${BULK_BYTES:-1073741824}
IDLE_TUNNELS=${IDLE_TUNNELS:-10000}
MINT_HOSTS=${MINT_HOSTS:-1000}
CELLS=${CELLS:-bulk upload connrate keepalive idle mint}
SETUPS=${SETUPS:-direct passthrough inspect}
UPSTREAM_KEY=${UPSTREAM_KEY:-rsa}
QUIET_WAIT=${QUIET_WAIT:-60}
PEERS=${PEERS:-}

# Loopback only: upstream and DNS in 127.77.0.0/16 (the bench route), vpcgate outside it.
UPSTREAM=127.77.0.1:443
DNS=127.77.0.53:53
PROXY=127.78.0.1:3128
HOST=bench.s3.us-east-1.amazonaws.com

say() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the upstream listens on port 443 like S3"
# N idle tunnels = N client sockets (loadgen), 2N in vpcgate (client + upstream side), N upstream.
# Raise the soft limit as far as the hard one allows (raising the hard limit needs
# CAP_SYS_RESOURCE, which this workplace's root lacks: hard limit 20000 here), and fit N under it.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
IDLE_CAP=$(( ($(ulimit -n) - 256) / 2 ))
IDLE_NOTE=""
if [ "$IDLE_TUNNELS" -gt "$IDLE_CAP" ]; then
  IDLE_NOTE=" (IDLE_TUNNELS=$IDLE_TUNNELS lowered to $IDLE_CAP: open-file limit $(ulimit -n) per process, 2 sockets per tunnel in vpcgate)"
  IDLE_TUNNELS=$IDLE_CAP
fi

for p in $PEERS; do
  case $p in
    squid | squid-bump) command -v squid >/dev/null || die "PEERS=$p needs Squid (apt-get install squid-openssl)" ;;
    hudsucker) ;;
    *) die "PEERS: unknown peer $p (squid, squid-bump, hudsucker)" ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
say "building vpcgate and loadgen (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --bin vpcgate) >&2
cargo build --release --locked --manifest-path "$BENCH/Cargo.toml" >&2
VPCGATE="$CARGO_TARGET_DIR/release/vpcgate"
LOADGEN="$CARGO_TARGET_DIR/release/loadgen"
if [[ " $PEERS " == *" hudsucker "* ]]; then
  say "building the hudsucker peer (release)"
  cargo build --release --locked --manifest-path "$BENCH/peers/hudsucker/Cargo.toml" >&2
fi

WORK="$(mktemp -d /tmp/vpcgate-bench.XXXXXX)"
RESULTS="$WORK/results.txt"
: >"$RESULTS"
SERVE_PID=""
VPID=""
cleanup() {
  [ -n "$VPID" ] && kill -KILL "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null || true
  [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The upstream (TLS, GET /bytes/N) and the DNS responder, one process for the whole run.
KEYS=()
case $UPSTREAM_KEY in
  rsa)
    command -v openssl >/dev/null || die "UPSTREAM_KEY=rsa needs openssl (apt-get install openssl), or set UPSTREAM_KEY=ecdsa"
    for k in ca leaf; do
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/upstream-$k-key.pem" 2>/dev/null
    done
    KEYS=(--ca-key "$WORK/upstream-ca-key.pem" --leaf-key "$WORK/upstream-leaf-key.pem") ;;
  ecdsa) ;;
  *) die "UPSTREAM_KEY=$UPSTREAM_KEY: rsa or ecdsa" ;;
esac
"$LOADGEN" serve --upstream "$UPSTREAM" --dns "$DNS" --ca-out "$WORK/upstream-ca.pem" "${KEYS[@]}" 2>"$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 100); do [ -s "$WORK/upstream-ca.pem" ] && break; kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
[ -s "$WORK/upstream-ca.pem" ] || die "loadgen serve did not start: $(cat "$WORK/serve.log")"

for mode in passthrough inspect; do
  cat >"$WORK/$mode.toml" <<EOF
[proxy]
listen = "$PROXY"
max_connections = $((IDLE_TUNNELS * 2 + 1000))
handshake_timeout = "10s"
idle_timeout = "300s"
shutdown_grace = "1s"
worker_threads = ${VG_THREADS:-0}

[dns]
servers = ["$DNS"]
timeout = "2s"

[aws]
regions = ["us-east-1"]

[tls]
mode = "$mode"
ca_cert = "$WORK/vpcgate-ca/ca.pem"
ca_key = "$WORK/vpcgate-ca/ca-key.pem"
extra_roots = ["$WORK/upstream-ca.pem"]

[log]
level = "warn"

[[routes]]
name = "bench-gateway"
kind = "gateway"
cidrs = ["127.77.0.0/16"]
EOF
done
# vpcgate reads only its config file: no RUST_LOG, VPCGATE_CONFIG or VPCGATE__* from this shell.
VG_ENV=(env -u RUST_LOG -u VPCGATE_CONFIG NO_COLOR=1)
for v in $(env | grep -o '^VPCGATE__[A-Za-z0-9_]*' || true); do VG_ENV+=(-u "$v"); done
"${VG_ENV[@]}" "$VPCGATE" --config "$WORK/passthrough.toml" check-config >&2 || die "vpcgate refused the bench configuration"
"${VG_ENV[@]}" "$VPCGATE" --config "$WORK/inspect.toml" ca init >"$WORK/ca-init.log" 2>&1 || die "vpcgate ca init failed: $(cat "$WORK/ca-init.log")"
CAS="$WORK/upstream-ca.pem,$WORK/vpcgate-ca/ca.pem"

VG_WRAP=() # profile.sh runs vpcgate under valgrind through this
start_vpcgate() { # mode
  "${VG_ENV[@]}" "${VG_WRAP[@]}" "$VPCGATE" --config "$WORK/$1.toml" run 2>>"$WORK/vpcgate-$1.log" &
  VPID=$!
  "$LOADGEN" wait --addr "$PROXY" --timeout-ms "${START_WAIT_MS:-15000}" || die "vpcgate ($1) did not listen: $(tail -5 "$WORK/vpcgate-$1.log")"
}

# Peers: other proxies on their own loopback addresses, one fresh process per cell like vpcgate.
# Squid 5 from Debian (no cache, no access log, one process: -N): plain CONNECT relay (squid) and
# ssl-bump with certificates minted by its helper (squid-bump); hudsucker with its default
# handlers (peers/hudsucker). Their CPU and memory figures are those of the main process (Squid's
# certificate helpers are separate processes: not in those figures, nor counted as other work).
declare -A PEER_ADDR=([squid]=127.79.0.1:3128 [squid-bump]=127.79.0.2:3128 [hudsucker]=127.79.0.3:3128)
declare -A PEER_CA=()
squid_conf() { # peer file
  local dir
  dir=$(dirname "$2")
  {
    if [ "$1" = squid-bump ]; then
      echo "http_port ${PEER_ADDR[$1]} ssl-bump tls-cert=$dir/ca.pem tls-key=$dir/ca-key.pem generate-host-certificates=on dynamic_cert_mem_cache_size=16MB"
      echo "sslcrtd_program /usr/lib/squid/security_file_certgen -s $dir/ssl_db -M 16MB"
      echo "sslcrtd_children 4 startup=4"
      echo "ssl_bump bump all"
      echo "tls_outgoing_options cafile=$WORK/upstream-ca.pem"
    else
      echo "http_port ${PEER_ADDR[$1]}"
    fi
    cat <<EOC
http_access allow all
cache deny all
cache_mem 0 MB
dns_nameservers ${DNS%:*}
pid_filename $dir/squid.pid
cache_log $dir/cache.log
access_log none
coredump_dir $dir
pinger_enable off
shutdown_lifetime 0 seconds
max_filedescriptors $(ulimit -n)
EOC
  } >"$2"
}
for p in $PEERS; do
  case $p in
    squid | squid-bump)
      mkdir -p "$WORK/$p"
      if [ $p = squid-bump ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=squid-bump benchmark peer CA" \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
          -keyout "$WORK/$p/ca-key.pem" -out "$WORK/$p/ca.pem" 2>/dev/null || die "openssl could not make the squid-bump CA"
        PEER_CA[$p]="$WORK/$p/ca.pem"
      fi
      squid_conf "$p" "$WORK/$p/squid.conf"
      squid -k parse -f "$WORK/$p/squid.conf" >"$WORK/$p/parse.log" 2>&1 || die "Squid refused its configuration: $(grep -i error "$WORK/$p/parse.log" | head -3)"
      chmod 755 "$WORK" ;;
  esac
done
start_peer() { # peer
  case $1 in
    squid | squid-bump)
      if [ "$1" = squid-bump ]; then # a fresh certificate store per cell, like vpcgate's fresh leaf cache
        rm -rf "$WORK/$1/ssl_db"
        /usr/lib/squid/security_file_certgen -c -s "$WORK/$1/ssl_db" -M 16MB >/dev/null
      fi
      chown -R proxy:proxy "$WORK/$1" 2>/dev/null || true
      "${VG_WRAP[@]}" squid -N -f "$WORK/$1/squid.conf" 2>>"$WORK/$1/stderr.log" &
      VPID=$! ;;
    hudsucker)
      "${VG_WRAP[@]}" "$CARGO_TARGET_DIR/release/hudsucker-peer" "${PEER_ADDR[$1]}" "$WORK/hudsucker-ca.pem" "$WORK/upstream-ca.pem" "${UPSTREAM%:*}" 2>>"$WORK/hudsucker.log" &
      VPID=$!
      PEER_CA[$1]="$WORK/hudsucker-ca.pem" ;;
  esac
  "$LOADGEN" wait --addr "${PEER_ADDR[$1]}" --timeout-ms "${START_WAIT_MS:-15000}" || die "peer $1 did not listen"
}
stop_vpcgate() {
  kill -TERM "$VPID" 2>/dev/null || true
  wait "$VPID" 2>/dev/null || true
  VPID=""
}

# The loadgen arguments of a cell (into CELL_ARGS), from the knobs above; ab.sh uses it too.
cell_args() { # cell
  case $1 in
    bulk | upload) CELL_ARGS=(--bytes "$BULK_BYTES") ;;
    connrate) CELL_ARGS=(--workers 32 --secs "$SECS") ;;
    keepalive) CELL_ARGS=(--conns 32 --secs "$SECS") ;;
    idle) CELL_ARGS=(--tunnels "$IDLE_TUNNELS") ;;
    mint) CELL_ARGS=(--hosts "$MINT_HOSTS" --workers 32) ;;
    *) die "unknown cell $1 (bulk, upload, connrate, keepalive, idle or mint)" ;;
  esac
}

# profile.sh sources this file for the set-up above and stops here.
if [ "${BENCH_SETUP_ONLY:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi

FAILED=()
# Busy CPU ticks (USER_HZ) of the whole machine: user nice system irq softirq steal.
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
# utime+stime ticks of one process (0 once it is gone).
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The same for a process and its children (Squid's certificate helpers), so that their work is not
# taken for other work on the machine.
tree_ticks() {
  local t c
  t=$(proc_ticks "$1")
  for c in $(pgrep -P "$1" 2>/dev/null); do t=$((t + $(proc_ticks "$c"))); done
  echo "$t"
}

run_cell() { # round cell setup outfile
  local round=$1 cell=$2 setup=$3 out=$4
  local via=(--via direct) args=() vticks=0
  cell_args "$cell"
  args=("${CELL_ARGS[@]}")
  local m0 s0 t0
  m0=$(machine_ticks); s0=$(proc_ticks "$SERVE_PID"); t0=$(date +%s.%N)
  local cas=$CAS
  case $setup in
    direct) ;;
    passthrough | inspect)
      start_vpcgate "$setup"
      via=(--via proxy --proxy "$PROXY" --pid "$VPID") ;;
    *)
      start_peer "$setup"
      via=(--via proxy --proxy "${PEER_ADDR[$setup]}" --pid "$VPID")
      cas="$CAS${PEER_CA[$setup]:+,${PEER_CA[$setup]}}" ;;
  esac
  local ok=1
  "$LOADGEN" "$cell" "${via[@]}" --upstream "$UPSTREAM" --host "$HOST" --ca "$cas" "${args[@]}" \
    >"$WORK/cell.out" 2>"$WORK/cell.err" || ok=0
  if [ "$setup" != direct ]; then
    vticks=$(tree_ticks "$VPID")
    stop_vpcgate
  fi
  local m1 s1 t1 lg foreign
  m1=$(machine_ticks); s1=$(proc_ticks "$SERVE_PID"); t1=$(date +%s.%N)
  lg=$(awk '$1=="loadgen_cpu_s"{print $2}' "$WORK/cell.out"); lg=${lg:-0}
  # Other work on the machine: busy CPU time not spent by loadgen, the upstream or vpcgate.
  foreign=$(awk -v m="$((m1 - m0))" -v s="$((s1 - s0))" -v v="$vticks" -v l="$lg" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v n="$(nproc)" \
    'BEGIN{f=(m-s-v)/100-l; if (f<0) f=0; printf "%.1f", 100*f/(n*w)}')
  if [ $ok = 1 ]; then
    { grep -v '^loadgen_cpu_s' "$WORK/cell.out"; echo "${cell}_foreign_pct $foreign"; } | sed "s/^/$round $setup /" >>"$out"
    say "round $round $cell $setup: $(grep -v '^loadgen_cpu_s' "$WORK/cell.out" | tr '\n' ' ')(other work ${foreign}%)"
  else
    FAILED+=("round $round $cell $setup")
    say "round $round $cell $setup FAILED: $(tail -5 "$WORK/cell.err")"
  fi
  [ -s "$WORK/cell.err" ] && sed 's/^/    /' "$WORK/cell.err" >&2
  LAST_FOREIGN=$foreign
  sleep 0.5
  return 0
}

# Percent of the machine's CPU busy over one second.
busy_pct() {
  local a b
  a=$(machine_ticks); local ta; ta=$(awk '/^cpu /{s=0; for (i=2;i<=9;i++) s+=$i; print s}' /proc/stat)
  sleep 1
  b=$(machine_ticks); local tb; tb=$(awk '/^cpu /{s=0; for (i=2;i<=9;i++) s+=$i; print s}' /proc/stat)
  [ $((tb - ta)) -gt 0 ] && echo $(( 100 * (b - a) / (tb - ta) )) || echo 0
}
wait_quiet() {
  local waited=0 b
  b=$(busy_pct)
  while [ "$b" -gt 15 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    say "machine ${b}% busy with other work; waiting (QUIET_WAIT=$QUIET_WAIT s)"
    sleep 4; waited=$((waited + 5)); b=$(busy_pct)
  done
}

# One cell in every setup back to back. When other work took more than FOREIGN_MAX % of the CPUs
# during any of them, the trio is run again after waiting for quiet (at most RERUNS times in all).
FOREIGN_MAX=${FOREIGN_MAX:-12}
RERUNS=${RERUNS:-6}
RERUN_LOG=()
run_trio() { # round cell
  local round=$1 cell=$2 attempt=1 worst setup
  while :; do
    : >"$WORK/trio.txt"
    worst=0
    for setup in $SETUPS $PEERS; do
      run_cell "$round" "$cell" "$setup" "$WORK/trio.txt"
      worst=$(awk -v a="$worst" -v b="$LAST_FOREIGN" 'BEGIN{print (b>a)?b:a}')
    done
    if awk -v w="$worst" -v m="$FOREIGN_MAX" 'BEGIN{exit !(w>m)}' && [ "$RERUNS" -gt 0 ]; then
      RERUNS=$((RERUNS - 1))
      RERUN_LOG+=("round $round $cell (other work ${worst}%)")
      say "round $round $cell: other work took ${worst}% of the CPUs; running it again"
      wait_quiet
      attempt=$((attempt + 1))
      continue
    fi
    cat "$WORK/trio.txt" >>"$RESULTS"
    return 0
  done
}

say "work directory $WORK; rounds=$ROUNDS cells=($CELLS) setups=($SETUPS) peers=($PEERS) upstream key $UPSTREAM_KEY"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for round in $(seq "$ROUNDS"); do
  wait_quiet
  for cell in $CELLS; do
    run_trio "$round" "$cell"
  done
done
ELAPSED=$(( $(date +%s) - T0 ))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
  local commit dirty cpu
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo " (+ uncommitted changes in src/ or Cargo.*)" || true)
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  echo "## vpcgate benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $commit$dirty"
  echo "- machine: $(nproc) CPUs ($cpu), $(uname -sr), $(rustc --version 2>/dev/null | cut -d' ' -f1-2); client, vpcgate and upstream share the CPUs"
  echo "- loopback only: loadgen client (tokio + rustls/ring, TCP_NODELAY, no TLS resumption) → [vpcgate $PROXY] → loadgen upstream $UPSTREAM (rustls/ring, TLS 1.3, $( [ "$UPSTREAM_KEY" = rsa ] && echo "RSA-2048 CA and leaf like S3: direct and passthrough handshakes pay the upstream's RSA signature on these same CPUs" || echo "ECDSA P-256 CA and leaf")); DNS $DNS; bulk and upload clients on rustls's unbuffered API"
  echo "- vpcgate: release build, log.level = \"warn\" (the per-connection info lines are off), fresh process per cell; CPU = utime+stime of /proc/PID/stat, memory = VmRSS"
  [ -n "$PEERS" ] && echo "- peers beside vpcgate, fresh process per cell, same client and upstream:$(for p in $PEERS; do case $p in squid) echo -n " squid = $(squid -v | head -1 | sed 's/Squid Cache: //'), plain CONNECT relay, no cache, one process;" ;; squid-bump) echo -n " squid-bump = the same Squid with ssl-bump (leaves from its certificate helper, P-256 CA; the proxy CPU figures count the main process only, not the helper);" ;; hudsucker) echo -n " hudsucker = hudsucker $(grep -A1 'name = \"hudsucker\"' "$BENCH/peers/hudsucker/Cargo.lock" | sed -n 's/version = \"\(.*\)\"/\1/p') with its default handlers (peers/hudsucker);" ;; esac; done)"
  echo "- $ROUNDS rounds, each cell run $(echo $SETUPS $PEERS | sed 's/ / → /g') back to back; figures are medians over rounds (error counts are sums); ratio = proxy ÷ direct of the same run; bulk and upload = $BULK_BYTES B, connrate/keepalive = 32 clients for ${SECS} s after 0.5 s warm-up, idle = $IDLE_TUNNELS tunnels$IDLE_NOTE, mint = $MINT_HOSTS distinct hosts; run took ${ELAPSED} s"
  echo "- other work on the machine (the figures assume an idle one): load average before $LOAD0, after $LOAD1; cells rerun because other work took over FOREIGN_MAX=$FOREIGN_MAX % of the CPUs: ${RERUN_LOG[*]:-none}"
  echo
  if [ -n "${CHARTS:-}" ]; then
    "$LOADGEN" report --results "$RESULTS" --charts "$CHARTS" \
      --caption "$(date -u +%Y-%m-%d), commit $commit$dirty, $(nproc) CPUs ($cpu), $ROUNDS rounds, medians; integration-tests/bench/run.sh"
  else
    "$LOADGEN" report --results "$RESULTS"
  fi
  local warns
  warns=$(cat "$WORK"/vpcgate-*.log 2>/dev/null | grep -c . || true)
  echo
  echo "vpcgate log lines at warn level or above: $warns"
  [ "$warns" -gt 0 ] && cat "$WORK"/vpcgate-*.log | cut -d' ' -f2- | cut -c1-300 | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo
    echo "**Failed cells:** ${FAILED[*]}"
  fi
  return 0
}
if [ -n "${BENCH_OUT:-}" ]; then report | tee "$BENCH_OUT"; else report; fi
[ ${#FAILED[@]} -eq 0 ]
