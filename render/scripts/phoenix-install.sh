#!/bin/bash
set -euo pipefail
## Installs Phoenix: its system user and data dir, the pinned arize-phoenix in a virtualenv (with a Python
## >= 3.11), its secrets from SSM into a root-only EnvironmentFile, then its units and timers.
## Header: VENV, PHOENIX_VERSION, DATA_DIR, SERVICE_USER, WRITE_ENV_FILE (phoenix-env.sh argv), PHOENIX_UNIT,
## TIMERS (units to enable), INGEST_KEY_UNIT (started once now).
if ! id -u "${SERVICE_USER:?}" >/dev/null 2>&1; then
    useradd --system --home-dir "${DATA_DIR:?}" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
mkdir -p "$DATA_DIR"
chown "$SERVICE_USER": "$DATA_DIR"
chmod 0750 "$DATA_DIR"

# Phoenix needs Python >= 3.11: the newest interpreter present, else the distribution's package.
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
installed="$("${VENV:?}/bin/pip" show arize-phoenix 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "${PHOENIX_VERSION:?}" ]; then
    if ! python="$(find_python)"; then
        if command -v dnf >/dev/null 2>&1; then
            dnf install -y -q python3.11
        else
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
        fi
        python="$(find_python)"
    fi
    if ! "$python" -m venv --clear "$VENV"; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
        "$python" -m venv --clear "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "arize-phoenix==$PHOENIX_VERSION"
fi

# Secrets: fetched by parameter name into a root-only EnvironmentFile.
"${WRITE_ENV_FILE[@]}"

systemctl daemon-reload
systemctl enable --now "${PHOENIX_UNIT:?}"
systemctl enable --now "${TIMERS[@]}"
systemctl start --no-block "${INGEST_KEY_UNIT:?}"
