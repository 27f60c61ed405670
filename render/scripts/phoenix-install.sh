#!/bin/bash
set -euo pipefail
## Installs Phoenix: its system user and data dir, the pinned arize-phoenix in a virtualenv on the mesh's
## pinned CPython (UV_VENV: uv-venv.sh, not the image's python3), its secrets from SSM into a root-only
## EnvironmentFile, then its units and timers.
## Header: UV_VENV, VENV, PHOENIX_VERSION, DATA_DIR, SERVICE_USER, WRITE_ENV_FILE (phoenix-env.sh argv),
## PHOENIX_UNIT, TIMERS (units to enable), INGEST_KEY_UNIT (started once now).
if ! id -u "${SERVICE_USER:?}" >/dev/null 2>&1; then
    useradd --system --home-dir "${DATA_DIR:?}" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
mkdir -p "$DATA_DIR"
chown "$SERVICE_USER": "$DATA_DIR"
chmod 0750 "$DATA_DIR"

"${UV_VENV:?}" "${VENV:?}" "arize-phoenix==${PHOENIX_VERSION:?}"

# Secrets: fetched by parameter name into a root-only EnvironmentFile.
"${WRITE_ENV_FILE[@]}"

systemctl daemon-reload
systemctl enable --now "${PHOENIX_UNIT:?}"
systemctl enable --now "${TIMERS[@]}"
systemctl start --no-block "${INGEST_KEY_UNIT:?}"
