#!/bin/bash
set -euo pipefail
## Applies the GPU pool's cluster objects (MANIFEST: the NVIDIA device plugin's namespace, policy and DaemonSet,
## the `nvidia` RuntimeClass, the `skypilot` namespace with its policies, the lmrun-skypilot ServiceAccount, its
## token Secret and its RBAC) once the API answers, waits for the account's token, and publishes a kubeconfig
## with that token (context CONTEXT, namespace NAMESPACE, the API at API_ENDPOINT) to KUBECONFIG_PARAMETER, only
## when its value changed. The operator hands it to SkyPilot's API server (SkyPilot reads a plain token best:
## its pods copy the kubeconfig). Runs at every boot; values go through 0600 temp files, never a command line.
## Header: KUBECTL (argv of kubectl as root on the server), MANIFEST, NAMESPACE, ACCOUNT and TOKEN_SECRET (the
## account's names), CONTEXT, API_ENDPOINT, REGION, KUBECONFIG_PARAMETER, PUT_OPTIONS (the options of
## `aws ssm put-parameter` but --region, --name and --value).
secret=("${KUBECTL[@]}" --namespace "${NAMESPACE:?}" get secret "${TOKEN_SECRET:?}" -o)
token=""
for _ in $(seq 1 150); do
    if "${KUBECTL[@]}" apply -f "${MANIFEST:?}" >/dev/null; then
        token="$("${secret[@]}" 'jsonpath={.data.token}' || true)"
        [ -n "$token" ] && break
    fi
    sleep 2
done
if [ -z "$token" ]; then
    echo "lmrun: no token in $NAMESPACE/$TOKEN_SECRET" >&2
    exit 1
fi
ca="$("${secret[@]}" 'jsonpath={.data.ca\.crt}')"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ${CONTEXT:?}
  cluster:
    server: ${API_ENDPOINT:?}
    certificate-authority-data: $ca
users:
- name: ${ACCOUNT:?}
  user:
    token: $(printf '%s' "$token" | base64 -d)
contexts:
- name: $CONTEXT
  context: {cluster: $CONTEXT, user: $ACCOUNT, namespace: $NAMESPACE}
current-context: $CONTEXT
EOF
where=(--region "${REGION:?}" --name "${KUBECONFIG_PARAMETER:?}")
published="$(aws ssm get-parameter "${where[@]}" --with-decryption --query Parameter.Value --output text \
    2>/dev/null || true)"
if [ "$published" = "$(cat "$work/kubeconfig")" ]; then
    echo "lmrun: $KUBECONFIG_PARAMETER unchanged" >&2
else
    aws ssm put-parameter "${where[@]}" "${PUT_OPTIONS[@]}" --value "file://$work/kubeconfig" >/dev/null
    echo "lmrun: $KUBECONFIG_PARAMETER published" >&2
fi
