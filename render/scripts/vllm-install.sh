#!/bin/bash
set -euo pipefail
## Installs the pinned vLLM into its own virtualenv for the `vllm` user and starts the vLLM unit (whose
## ExecStartPre, vllm-hf-token.sh, reads the Hugging Face token at every start).
## Header: VENV, VLLM_VERSION, HF_HOME, VLLM_UNIT.
if ! id -u vllm >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/lmrun/vllm --create-home --shell /usr/sbin/nologin vllm
fi
mkdir -p "${HF_HOME:?}"
chown vllm: "$HF_HOME"
if [ ! -x "${VENV:?}/bin/vllm" ]; then
    if ! python3 -m venv "$VENV"; then
        # Debian/Ubuntu ship venv support separately.
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "vllm==$VLLM_VERSION"
fi

systemctl daemon-reload
systemctl enable --now "${VLLM_UNIT:?}"
