#!/bin/bash
set -euo pipefail
# Usage: vllm-hf-token.sh
## vLLM's ExecStartPre (as root): reads the Hugging Face token by name from the node's secret store into the
## root-only EnvironmentFile ENV_FILE, at every start of vLLM. The stack always creates the secret, holding UNSET
## until a token is configured: ENV_FILE then carries no HF_TOKEN (public models need none). So a token set
## after the node booted reaches vLLM at its next start (a gated download that failed restarts in seconds),
## with no new VM and no change to the node's user data.
## Header: ENV_FILE, HF_TOKEN_FILE, UNSET, HF_FETCH (the argv of the secret store's fetch script that writes
## the token to HF_TOKEN_FILE).
umask 077
mkdir -p "$(dirname "${ENV_FILE:?}")" "$(dirname "${HF_TOKEN_FILE:?}")"
"${HF_FETCH[@]}"
token="$(tr -d '\n' <"$HF_TOKEN_FILE")"
rm -f "$HF_TOKEN_FILE"
tmp="$(mktemp "${ENV_FILE}.XXXXXX")"
if [ -n "$token" ] && [ "$token" != "${UNSET:?}" ]; then
    printf '%s=%s\n' HF_TOKEN "$token" >"$tmp"
fi
mv -f "$tmp" "$ENV_FILE"
