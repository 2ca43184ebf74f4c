#!/usr/bin/env bash
# Creates (or reuses) a Python venv with pinned boto3, AWS CLI v1 and s3cmd, for the S3 client tests.
#
#   integration-tests/clients/setup-venv.sh VENV_DIR
#
# Idempotent: when VENV_DIR/.vpcgate-pins already lists exactly the pins below and the tools
# import, it returns at once without touching the network. Otherwise it (re)creates the venv
# and pip-installs the pins from PyPI. Needs python3 (3.8+) with the venv module.
# After it: VENV_DIR/bin/python (import boto3) and VENV_DIR/bin/aws.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1

# Every package is pinned (the top-level ones and what they pull in), so an install today and
# one next month give the same clients. awscli 1.46.x vendors its own botocore and s3transfer,
# so boto3's botocore can move independently of it.
PINS=(
    boto3==1.44.8
    botocore==1.44.8
    s3transfer==0.19.3
    awscli==1.46.3
    jmespath==1.1.0
    python-dateutil==2.9.0.post0
    six==1.17.0
    urllib3==2.8.0
    colorama==0.4.6
    docutils==0.19
    PyYAML==6.0.4
    rsa==4.7.2
    pyasn1==0.6.5
    s3cmd==2.4.0
    python-magic==0.4.27
)

python=${PYTHON:-python3}
marker=$venv/.vpcgate-pins
want=$(printf '%s\n' "${PINS[@]}")

ready() {
    [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] \
        && [ -x "$venv/bin/python" ] && [ -x "$venv/bin/aws" ] && [ -x "$venv/bin/s3cmd" ] \
        && "$venv/bin/python" -c 'import boto3, botocore' >/dev/null 2>&1
}

if ready; then
    exit 0
fi

# Serialise concurrent callers (e.g. two test binaries) on a lock file beside the venv.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ready; then
    exit 0
fi

if [ -e "$venv" ]; then
    # Only ever delete something that is a venv (or an empty directory).
    if [ -f "$venv/pyvenv.cfg" ] || [ -z "$(ls -A "$venv" 2>/dev/null)" ]; then
        rm -rf "$venv"
    else
        echo "setup-venv: $venv exists and is not a venv; refusing to replace it" >&2
        exit 1
    fi
fi
echo "setup-venv: installing ${PINS[*]} into $venv" >&2
"$python" -m venv "$venv"
# --no-deps with a full pin list: pip installs exactly these, nothing floats.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps "${PINS[@]}"
"$venv/bin/python" -m pip check --disable-pip-version-check >&2
"$venv/bin/python" -c 'import boto3, botocore, awscli' >/dev/null
"$venv/bin/aws" --version >&2
printf '%s\n' "$want" >"$marker"
