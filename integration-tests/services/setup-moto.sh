#!/usr/bin/env bash
# Creates (or reuses) a Python venv with moto in server mode (the AWS APIs other than S3 that the
# services tests call: STS, DynamoDB) and boto3, every package pinned.
#
#   integration-tests/services/setup-moto.sh VENV_DIR
#
# Idempotent: when VENV_DIR/.vpcgate-pins lists exactly the pins below and moto imports, it
# returns at once without touching the network.
set -euo pipefail
venv=${1:?usage: setup-moto.sh VENV_DIR}

# moto without extras (its server needs Flask; STS and DynamoDB need nothing more), and what
# pip resolved for it on 2026-12-03, pinned.
PINS=(
    moto==5.2.1
    Flask==3.1.3
    flask-cors==6.0.5
    Werkzeug==3.1.9
    Jinja2==3.1.6
    MarkupSafe==3.0.4
    itsdangerous==2.2.0
    blinker==1.9.0
    click==8.5.1
    boto3==1.44.8
    botocore==1.44.8
    s3transfer==0.19.3
    jmespath==1.1.0
    python-dateutil==2.9.0.post0
    six==1.17.0
    urllib3==2.8.0
    requests==2.34.2
    certifi==2026.10.19.post1
    charset-normalizer==3.5.3
    idna==3.20
    responses==0.26.3
    PyYAML==6.0.4
    xmltodict==1.0.4
    cryptography==50.0.2
    cffi==2.1.1
    pycparser==3.12
)
marker=$venv/.vpcgate-pins
want=$(printf '%s\n' "${PINS[@]}")
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$venv/bin/python" -c 'import moto.server, boto3' >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$venv/bin/python" -c 'import moto.server, boto3' >/dev/null 2>&1; then
    exit 0
fi
echo "setup-moto: installing moto and boto3 into $venv (PyPI)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${PINS[@]}"
"$venv/bin/python" -c 'import moto.server, boto3'
printf '%s\n' "${PINS[@]}" > "$marker"
