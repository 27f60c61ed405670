#!/bin/bash
set -euo pipefail
## Publishes the kubeconfig Pulumi uses to SSM (SecureString), so it is readable without SSH: not the admin
## one (that stays on the server, 0600) but the lmrun-deployer ServiceAccount's, whose Role allows only the
## Services and DaemonSets of the mesh's namespace. Applies MANIFEST (namespace, ServiceAccount, its token
## Secret, Role, RoleBinding) once the API answers, waits for the token, and writes the parameter only when
## the kubeconfig differs from the published one: the parameter's version changes exactly when the
## credential does (a new token after the Secret was deleted, a new API address), which is when the
## operator-side gate reads it again. Runs at every boot. The token goes through a 0600 temp file
## (file://), never a command line.
## Header: KUBECTL (argv of kubectl as root on the server), MANIFEST (the deployer's objects, a JSON List),
## NAMESPACE, ACCOUNT and TOKEN_SECRET (the deployer's names), API_ENDPOINT (the mesh's address of the API),
## GET_PARAMETER (the options of `aws ssm get-parameter` that print the value), PUT_PARAMETER (the options
## of `aws ssm put-parameter` but --value).
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
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lmrun
  cluster:
    server: ${API_ENDPOINT:?}
    certificate-authority-data: $ca
users:
- name: ${ACCOUNT:?}
  user:
    token: $(printf '%s' "$token" | base64 -d)
contexts:
- name: lmrun
  context: {cluster: lmrun, user: $ACCOUNT, namespace: $NAMESPACE}
current-context: lmrun
EOF
published="$(aws ssm get-parameter "${GET_PARAMETER[@]}" 2>/dev/null || true)"
if [ "$published" = "$(cat "$tmp")" ]; then
    echo "lmrun: kubeconfig unchanged" >&2
    exit 0
fi
aws ssm put-parameter "${PUT_PARAMETER[@]}" --value "file://$tmp" >/dev/null
echo "lmrun: deployer kubeconfig published" >&2
