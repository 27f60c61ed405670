#!/bin/bash
set -euo pipefail
# Usage: sudo -E bash join.sh [SERVICE...]   (in a SkyPilot task's setup)
## Joins this VM to the mesh's K3s as an agent with the agent credential only: no Kubernetes API credential is
## read or written. It installs the scripts beside it into SCRIPT_DIR, reads the join token from SSM with the
## VM's instance profile into TOKEN_FILE (0600), and runs the pinned K3s installer. The node registers
## LABEL_NODE=NODE_PREFIX<cluster>[-<rank>] (SkyPilot's cluster name, and the node's rank on a multi-node
## cluster), LABEL_REGION=<region>, LAUNCHER_LABEL and SERVES_PREFIX<SERVICE>=true for each SERVICE: the
## declared service's readiness proxy then runs there and admits the VM once its app port answers. A SERVICE
## that SERVICES does not list is refused before anything is installed (the cluster would publish nothing
## for it anyway). With Phoenix, PHOENIX_ENV writes the OTLP exporter settings with the ingest key.
## K3s applies labels when a node registers: re-running with other services changes nothing on a joined node.
## Header: SCRIPT_DIR, SSM_REGION, TOKEN_PARAMETER, TOKEN_FILE, K3S_VERSION, SERVER_URL, SERVICES, NODE_PREFIX,
## LABEL_NODE, LABEL_REGION, LAUNCHER_LABEL, SERVES_PREFIX, PHOENIX_ENV (argv, or empty without Phoenix).
for service in "$@"; do
    declared=""
    for name in "${SERVICES[@]}"; do
        if [ "$service" = "$name" ]; then declared=1; fi
    done
    if [ -z "$declared" ]; then
        echo "lmrun: '$service' is not a service the stack declares for SkyPilot replicas (${SERVICES[*]:-none})" >&2
        exit 2
    fi
done

info="${SKYPILOT_CLUSTER_INFO:?run this from a SkyPilot task (SKYPILOT_CLUSTER_INFO is not set)}"
# The node's name, a label value: NODE_PREFIX, the cluster (and the rank on a multi-node cluster), lowercase
# [a-z0-9-], at most 63 characters, ending with a letter or digit.
read -r node region < <(python3 -c '
import json, re, sys
info = json.loads(sys.argv[1])
name = info["cluster_name"] if sys.argv[3] == "1" else info["cluster_name"] + "-" + sys.argv[4]
node = re.sub("[^a-z0-9-]+", "-", (sys.argv[2] + name).lower())[:63].rstrip("-")
print(node, info["region"])' "$info" "${NODE_PREFIX:?}" "${SKYPILOT_NUM_NODES:-1}" "${SKYPILOT_SETUP_NODE_RANK:-0}")

# SkyPilot's images may lack the AWS CLI on PATH; its runtime environment has one.
if ! command -v aws >/dev/null; then
    home="$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)"
    if [ -x "$home/skypilot-runtime/bin/aws" ]; then
        PATH="$PATH:$home/skypilot-runtime/bin"
    else
        echo "lmrun: no AWS CLI found (install it, or run from a SkyPilot task)" >&2
        exit 1
    fi
fi

here="$(cd "$(dirname "$0")" && pwd)"
install -d -m 0755 "${SCRIPT_DIR:?}"
for file in "$here"/*.sh "$here"/*.py; do
    [ "$(basename "$file")" = "join.sh" ] || install -m 0755 "$file" "$SCRIPT_DIR/"
done

"$SCRIPT_DIR/ssm-get.sh" "${SSM_REGION:?}" "${TOKEN_PARAMETER:?}" "${TOKEN_FILE:?}"
flags=(--server "${SERVER_URL:?}" --token-file "$TOKEN_FILE" --with-node-id)
flags+=(--node-label "${LABEL_NODE:?}=$node" --node-label "${LABEL_REGION:?}=$region")
flags+=(--node-label "${LAUNCHER_LABEL:?}")
for service in "$@"; do
    flags+=(--node-label "${SERVES_PREFIX:?}$service=true")
done
"$SCRIPT_DIR/k3s-install.sh" "${K3S_VERSION:?}" agent "${flags[@]}"
if [ "${#PHOENIX_ENV[@]}" -gt 0 ]; then
    "${PHOENIX_ENV[@]}"
fi
echo "lmrun: joined the mesh as $node${*:+ serving $*}"
