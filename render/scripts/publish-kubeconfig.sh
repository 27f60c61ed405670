#!/bin/bash
set -euo pipefail
## Copies the admin kubeconfig to SSM (SecureString) with the API address the mesh uses instead of
## 127.0.0.1, so it is readable without SSH. Runs at every boot: K3s renews client certificates on restart.
## The value goes through a 0600 temp file (file://), never the command line.
## Header: KUBECONFIG_PATH (written by K3s), API_PORT (K3s's, in that file), API_ENDPOINT (the mesh's address
## of the API), PUT_PARAMETER (the options of `aws ssm put-parameter` but --value).
for _ in $(seq 1 150); do
    if [ -s "${KUBECONFIG_PATH:?}" ]; then
        break
    fi
    sleep 2
done
if [ ! -s "$KUBECONFIG_PATH" ]; then
    echo "lmrun: $KUBECONFIG_PATH never appeared" >&2
    exit 1
fi
umask 077
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
sed "s#https://127.0.0.1:${API_PORT:?}#${API_ENDPOINT:?}#" "$KUBECONFIG_PATH" >"$tmp"
aws ssm put-parameter "${PUT_PARAMETER[@]}" --value "file://$tmp" >/dev/null
echo "lmrun: kubeconfig published" >&2
