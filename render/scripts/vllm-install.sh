#!/bin/bash
set -euo pipefail
## Installs the pinned vLLM into its own virtualenv on the mesh's pinned CPython (UV_VENV: uv-venv.sh, not the
## image's python3) for the `vllm` user and starts the vLLM unit (whose ExecStartPre, vllm-hf-token.sh, reads
## the Hugging Face token at every start).
## Header: UV_VENV, VENV, VLLM_VERSION, HF_HOME, VLLM_UNIT.
if ! id -u vllm >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/lmrun/vllm --create-home --shell /usr/sbin/nologin vllm
fi
mkdir -p "${HF_HOME:?}"
chown vllm: "$HF_HOME"
"${UV_VENV:?}" "${VENV:?}" "vllm==${VLLM_VERSION:?}"

systemctl daemon-reload
systemctl enable --now "${VLLM_UNIT:?}"
