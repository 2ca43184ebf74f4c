#!/usr/bin/env bash
# Installs every S3 client the matrix (integration-tests/clients.rs) drives, into DIR:
#   DIR/venv      Python venv: boto3, AWS CLI v1, s3cmd (pinned, see setup-venv.sh)
#   DIR/js        AWS SDK for JavaScript v3 + https-proxy-agent (pinned in package.json)
#   rclone        Debian package
# Idempotent and quick when everything is already there.
#   integration-tests/clients/setup-clients.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: setup-clients.sh DIR}
mkdir -p "$dir"

bash "$here/setup-venv.sh" "$dir/venv"

if ! command -v rclone >/dev/null; then
  echo "setup-clients: installing rclone (Debian)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null
fi

mkdir -p "$dir/js"
if ! cmp -s "$here/package.json" "$dir/js/package.json" || [ ! -d "$dir/js/node_modules/@aws-sdk/client-s3" ]; then
  echo "setup-clients: installing the AWS SDK for JavaScript v3 (npm)" >&2
  cp "$here/package.json" "$dir/js/package.json"
  (cd "$dir/js" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
cp "$here/js_case.mjs" "$dir/js/js_case.mjs"
echo "setup-clients: ready in $dir" >&2
