#!/usr/bin/env bash
# Every cargo-fuzz target, coverage-guided, for a short bounded time on its committed corpus
# (fuzz/corpus/TARGET): the step of the test command that runs the parsers under libFuzzer and
# AddressSanitizer. New inputs go to a scratch directory, not into the repository; a crash fails
# the run and its input is printed (keep it: copy it into fuzz/corpus/TARGET/ with its fix).
#
#   bash integration-tests/fuzz-smoke.sh [SECONDS_PER_TARGET]     # default 20
#
# Needs the nightly toolchain (installed on these machines) and cargo-fuzz (installed here when
# missing). Ends with one line, "N passed, N failed", which the suite's closing line counts.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing; install it with: rustup toolchain install nightly --profile minimal"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet || { echo "fuzz: cannot install cargo-fuzz"; echo "0 passed, 1 failed"; exit 1; }
fi
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^vpcgate-fuzz$')
if ! cargo +nightly fuzz build -O; then
  echo "fuzz: the targets do not build (above)"
  echo "0 passed, 1 failed"
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
for t in $targets; do
  mkdir -p "$scratch/$t/new" "$scratch/$t/artifacts"
  out="$scratch/$t/log"
  # The scratch directory first: libFuzzer writes what it finds to the first corpus directory.
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
  cargo +nightly fuzz run -O "$t" "$scratch/$t/new" "${seeds[@]}" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$scratch/$t/artifacts/" >"$out" 2>&1
  rc=$?
  runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -oE '[0-9]+$' || true)
  cov=$(grep -aE '^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov: [0-9]+' "$out" | tail -1 | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || true)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${runs:-?} runs in ${secs} s, ${cov:-?} coverage edges, $(ls "fuzz/corpus/$t" 2>/dev/null | wc -l) corpus inputs"
  else
    failed=$((failed + 1))
    echo "fuzz $t: FAILED (exit $rc)"
    grep -aE "panicked|ERROR: libFuzzer|SUMMARY" -A4 "$out" | head -30
    for a in "$scratch/$t/artifacts/"*; do
      [ -e "$a" ] || continue
      echo "fuzz $t: the input, base64 ($(basename "$a")):"
      base64 -w0 "$a"; echo
    done
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
