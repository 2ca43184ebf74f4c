#!/usr/bin/env bash
# Creates (or reuses) a Python venv with a pinned kubernetes-validate, the schema validator that
# integration-tests/kubernetes.rs checks deploy/kubernetes/ with (the Kubernetes OpenAPI schemas of
# every release from 1.25 to 1.37, strict variants included, ship inside the package; nothing is
# fetched at validation time).
#
#   integration-tests/kubernetes/setup-validator.sh VENV_DIR     # the test uses target/k8s-validate
#
# Idempotent: when VENV_DIR/.vpcgate-pins lists exactly the pins below and the tool runs, it
# returns at once without touching the network. Otherwise it (re)creates the venv and
# pip-installs the pins from PyPI. Needs python3 (3.9+) with the venv module.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1

# Every package is pinned, the tool and what it pulls in, so an install today and one next month
# validate against the same schemas with the same code.
PINS=(
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    attrs==26.1.0
    importlib_resources==7.1.0
    packaging==26.4
    PyYAML==6.0.4
    typing_extensions==4.16.0
)

python=${PYTHON:-python3}
marker=$venv/.vpcgate-pins
want=$(printf '%s\n' "${PINS[@]}")

ready() {
    [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] \
        && [ -x "$venv/bin/kubernetes-validate" ] \
        && "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1
}

if ready; then
    exit 0
fi

# Serialise concurrent callers (tests of one binary run in parallel) on a lock file beside the venv.
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
        echo "setup-validator: $venv exists and is not a venv; refusing to replace it" >&2
        exit 1
    fi
fi
echo "setup-validator: installing ${PINS[*]} into $venv" >&2
"$python" -m venv "$venv"
# --no-deps with a full pin list: pip installs exactly these, nothing floats.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps "${PINS[@]}"
"$venv/bin/python" -m pip check --disable-pip-version-check >&2
"$venv/bin/kubernetes-validate" --version >&2
printf '%s\n' "$want" >"$marker"
