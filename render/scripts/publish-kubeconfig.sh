#!/bin/bash
set -euo pipefail
## Publishes what Pulumi needs to reach the K3s API to SSM (SecureString), readable without SSH, and never
## the admin kubeconfig (it stays on the server, 0600). Applies MANIFEST (namespace, its default-deny
## NetworkPolicy, the lmrun-deployer ServiceAccount, its token Secret, a Role allowing only the Services and
## DaemonSets of the mesh's namespace, the RoleBinding) once the API answers, waits for the token, then writes two parameters, each only when its
## value changed (so their versions move only with the credential):
## - CREDENTIAL_PARAMETER: the token as an ExecCredential (what a kubectl exec plugin prints);
## - KUBECONFIG_PARAMETER: the API's address and CA and an exec plugin running EXEC_COMMAND EXEC_ARGS (the AWS
##   CLI reading CREDENTIAL_PARAMETER). It holds no token: whoever uses it reads the current one, so a
##   rotated token needs no new kubeconfig anywhere.
## Runs at every boot. Values go through 0600 temp files (file://), never a command line.
## Header: KUBECTL (argv of kubectl as root on the server), MANIFEST (the deployer's objects, a JSON List),
## NAMESPACE, ACCOUNT and TOKEN_SECRET (the deployer's names), API_ENDPOINT (the mesh's address of the API),
## REGION, KUBECONFIG_PARAMETER, CREDENTIAL_PARAMETER, EXEC_COMMAND and EXEC_ARGS (a JSON list), PUT_OPTIONS
## (the options of `aws ssm put-parameter` but --region, --name and --value).
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
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' \
    "$(printf '%s' "$token" | base64 -d)" >"$work/credential"
cat >"$work/kubeconfig" <<EOF
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
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ${EXEC_COMMAND:?}
      args: ${EXEC_ARGS:?}
      interactiveMode: Never
contexts:
- name: lmrun
  context: {cluster: lmrun, user: $ACCOUNT, namespace: $NAMESPACE}
current-context: lmrun
EOF
publish() {
    local where=(--region "${REGION:?}" --name "$2") published
    published="$(aws ssm get-parameter "${where[@]}" --with-decryption --query Parameter.Value --output text \
        2>/dev/null || true)"
    if [ "$published" = "$(cat "$1")" ]; then
        echo "lmrun: $2 unchanged" >&2
    else
        aws ssm put-parameter "${where[@]}" "${PUT_OPTIONS[@]}" --value "file://$1" >/dev/null
        echo "lmrun: $2 published" >&2
    fi
}
# The credential first: once the kubeconfig appears (what the operator's gate waits for), it works.
publish "$work/credential" "${CREDENTIAL_PARAMETER:?}"
publish "$work/kubeconfig" "${KUBECONFIG_PARAMETER:?}"
