#!/usr/bin/env bash
# Builds the book (docs/) with mdbook and checks every link inside it and every relative link of
# README.md (docs/tools/check-links.py).
# Installs mdbook 0.5.4 into ~/.cargo/bin when it is missing (about 3 minutes of compiling on 2
# cores). Prints "1 passed, 0 failed" (or "0 passed, 1 failed") for the suite's closing line.
set -uo pipefail
cd "$(dirname "$0")/.."
MDBOOK_VERSION=0.5.4
export PATH="$HOME/.cargo/bin:$PATH"
if ! mdbook --version 2>/dev/null | grep -q "v$MDBOOK_VERSION"; then
  echo "installing mdbook $MDBOOK_VERSION (cargo install, no server or search features)"
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --quiet || { echo "docs: cannot install mdbook"; echo "0 passed, 1 failed"; exit 1; }
fi
rm -rf docs/book
if ! (cd docs && mdbook build 2>/tmp/vpcgate-mdbook.$$); then
  cat /tmp/vpcgate-mdbook.$$; rm -f /tmp/vpcgate-mdbook.$$
  echo "docs: mdbook build failed (above); fix docs/src"
  echo "0 passed, 1 failed"
  exit 1
fi
grep -v '^ INFO' /tmp/vpcgate-mdbook.$$
# mdbook reports a missing {{#include}} file as an ERROR line and still writes the book.
if grep -qE '^ *(ERROR|WARN)' /tmp/vpcgate-mdbook.$$; then
  rm -f /tmp/vpcgate-mdbook.$$
  echo "docs: mdbook reported errors or warnings (above); fix docs/src"
  echo "0 passed, 1 failed"
  exit 1
fi
rm -f /tmp/vpcgate-mdbook.$$
if python3 docs/tools/check-links.py docs/book README.md; then
  echo "1 passed, 0 failed"
else
  echo "docs: broken links in the book (above); fix them in docs/src"
  echo "0 passed, 1 failed"
  exit 1
fi
