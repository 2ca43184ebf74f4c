#!/usr/bin/env bash
# The whole vpcgate test suite: unit tests and loopback integration tests through real sockets.
# Installs what it needs (curl, openssl, dnsmasq, iproute2; the S3 clients of the matrix via
# integration-tests/clients/setup-clients.sh) when missing; everything it starts runs on 127.0.0.0/8 and
# is stopped by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)   # DNS server of the network-namespace tests
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}"; fi
fi
# The integration tests bind 127.x.y.z:443 like a real S3 endpoint, which needs root or CAP_NET_BIND_SERVICE.
if [ "$(id -u)" != 0 ]; then
  echo "note: not root; the integration tests need to bind port 443 on loopback (run as root, or lower net.ipv4.ip_unprivileged_port_start)" >&2
fi

log=$(mktemp)
set +e
# Lints first: a tree that is not rustfmt-formatted (rustfmt.toml) or has a clippy warning is a
# failure (both ship with the toolchain).
cargo fmt --check
fmt=$?
cargo clippy --locked --all-targets -- -D warnings
lint=$?
if [ "$fmt" -ne 0 ]; then echo "cargo fmt --check found unformatted code (above); run cargo fmt"; [ "$lint" -ne 0 ] || lint=$fmt; fi
cargo test --locked --no-fail-fast --all-targets -- --test-threads=4 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The book (docs/): built with mdbook (installed when missing, without its server and search
# features), then every link inside it checked. Its reference pages are checked against the code
# by the unit tests above (`reference`).
bash integration-tests/docs.sh 2>&1 | tee -a "$log"
docs=${PIPESTATUS[0]}
if [ "$docs" -ne 0 ] && [ "$rc" -eq 0 ]; then rc=$docs; fi
# Every cargo-fuzz target under libFuzzer and AddressSanitizer for 20 s on its committed corpus
# (nightly toolchain; cargo-fuzz installed when missing). Its "N passed, N failed" line counts below.
bash integration-tests/fuzz-smoke.sh 20 2>&1 | tee -a "$log"
fuzz=${PIPESTATUS[0]}
if [ "$fuzz" -ne 0 ] && [ "$rc" -eq 0 ]; then rc=$fuzz; fi
set -e
if [ "$lint" -ne 0 ]; then echo "the lints failed (cargo fmt --check or clippy, above); fix them"; [ "$rc" -ne 0 ] || rc=$lint; fi
# One closing line for the whole suite: cargo's per-binary results plus the client matrix's own line.
passed=$(grep -aE '^test result: |^[0-9]+ passed, [0-9]+ failed$' "$log" | grep -aoE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -aE '^test result: |^[0-9]+ passed, [0-9]+ failed$' "$log" | grep -aoE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi   # a build failure, a crash or a lint counts as a failure
echo
echo "suite: $passed passed, $failed failed"
exit "$rc"
