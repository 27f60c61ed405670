#!/bin/bash
set -euo pipefail
## Installs the pinned vLLM into its own virtualenv on the mesh's pinned CPython (UV_VENV: uv-venv.sh, not the
## image's python3) for the `vllm` user, writes the Hugging Face token (when the node has one) into a
## root-only EnvironmentFile, and starts the vLLM unit.
## Header: UV_VENV, VENV, VLLM_VERSION, HF_HOME, VLLM_UNIT; with a token also ENV_FILE, HF_TOKEN_FILE and
## HF_FETCH (the argv of the secret store's fetch script that writes the token to HF_TOKEN_FILE).
if ! id -u vllm >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/lmrun/vllm --create-home --shell /usr/sbin/nologin vllm
fi
mkdir -p "${HF_HOME:?}"
chown vllm: "$HF_HOME"
"${UV_VENV:?}" "${VENV:?}" "vllm==${VLLM_VERSION:?}"

if [ -n "${HF_TOKEN_FILE:-}" ]; then
    # Hugging Face token: fetched by parameter name into a root-only EnvironmentFile.
    "${HF_FETCH[@]}"
    umask 077
    mkdir -p "$(dirname "${ENV_FILE:?}")"
    { printf 'HF_TOKEN='; tr -d '\n' <"$HF_TOKEN_FILE"; printf '\n'; } >"$ENV_FILE"
    rm -f "$HF_TOKEN_FILE"
    umask 022
fi

systemctl daemon-reload
systemctl enable --now "${VLLM_UNIT:?}"
