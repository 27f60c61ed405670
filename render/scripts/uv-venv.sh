#!/bin/bash
set -euo pipefail
# Usage: uv-venv.sh VENV REQUIREMENT...
## Builds VENV on the pinned CPython with the pinned uv and installs the pinned REQUIREMENTs into it, so a
## runtime installs whatever python3 the image ships (lmrun.domain.versions records each pin's
## Requires-Python; lmrun.domain.pins checks it against PYTHON_VERSION).
## uv is its PyPI wheel (UV_URL), checked against UV_SHA256, unpacked with the image's python3 (cloud-init is
## a python3 program: every image that runs this has one) into UV_DIR/UV_VERSION. uv downloads the CPython
## build into UV_DIR/python (readable by the service users) and checks it against the sha256 compiled into
## that uv release.
## Idempotent: VENV/.lmrun-pins records what was installed; when it matches, nothing is fetched.
## Header: UV_VERSION, UV_URL, UV_SHA256, UV_DIR, PYTHON_VERSION.
venv="$1"
shift
pins="python==${PYTHON_VERSION:?} $*"
if [ "$(cat "$venv/.lmrun-pins" 2>/dev/null)" = "$pins" ]; then
    exit 0
fi
umask 022
export UV_CACHE_DIR="${UV_DIR:?}/cache" UV_PYTHON_INSTALL_DIR="$UV_DIR/python"
uv="$UV_DIR/${UV_VERSION:?}/uv"
if [ ! -x "$uv" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    curl -fsSL --retry 5 --retry-connrefused -o "$work/uv.whl" "${UV_URL:?}"
    echo "${UV_SHA256:?}  $work/uv.whl" | sha256sum -c --quiet -
    python3 -m zipfile -e "$work/uv.whl" "$work/uv"
    install -D -m 0755 "$work/uv/uv-$UV_VERSION.data/scripts/uv" "$uv"
fi
"$uv" venv --quiet --clear --managed-python --python "$PYTHON_VERSION" "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" "$@"
echo "$pins" >"$venv/.lmrun-pins"
