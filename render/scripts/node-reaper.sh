#!/bin/bash
set -euo pipefail
## Removes the Node objects of mesh VMs that are gone, from the K3s server (lmrun-node-reaper.timer): K3s
## keeps a Node after its VM disappears, and a replaced spot VM rejoins under a new hostname with the same
## lmrun.io/node label. node_reaper.py picks, from `kubectl get nodes -o json`, every NotReady node carrying
## LABEL when a newer Ready node carries the same value (its replacement), and every NotReady node carrying
## LABEL that has been NotReady for more than MAX_NOT_READY seconds; never the server's own node. Deleting
## a Node also deletes its pods (the readiness proxies of the VM that is gone).
## Header: KUBECTL (argv of kubectl as root on the server), LABEL (lmrun.io/node), MAX_NOT_READY (seconds).
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
nodes="$(mktemp)"
trap 'rm -f "$nodes" "$nodes.doomed"' EXIT
"${KUBECTL[@]}" get nodes -o json >"$nodes"
"$python" "$helpers/node_reaper.py" "${LABEL:?}" "${MAX_NOT_READY:?}" <"$nodes" >"$nodes.doomed"
while IFS=$'\t' read -r node reason; do
    echo "lmrun: deleting node $node: $reason" >&2
    "${KUBECTL[@]}" delete node "$node" --wait=false
done <"$nodes.doomed"
