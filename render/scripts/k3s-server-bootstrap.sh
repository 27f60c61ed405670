#!/bin/bash
set -euo pipefail
## Bootstraps the K3s server: mounts the state volume, keeps the node password on it, fetches the server
## and agent tokens, installs K3s and starts its units (the deployer kubeconfig's publisher, the node reaper's
## timer).
## Header: STATE_MOUNT, MOUNT_STATE (mount-volume.sh argv), FETCH_SERVER_TOKEN and FETCH_AGENT_TOKEN (ssm-get.sh
## argv), INSTALL_K3S (k3s-install.sh argv), UNITS (systemd units to enable and start).
"${MOUNT_STATE[@]}"
# The node password K3s checks on re-join lives in /etc/rancher/node: keep it on the state volume so a
# replacement instance (same IP, same hostname) is accepted as the same node.
mkdir -p "${STATE_MOUNT:?}/rancher-node" /etc/rancher
if [ ! -L /etc/rancher/node ]; then
    rm -rf /etc/rancher/node
    ln -s "$STATE_MOUNT/rancher-node" /etc/rancher/node
fi
"${FETCH_SERVER_TOKEN[@]}"
"${FETCH_AGENT_TOKEN[@]}"
"${INSTALL_K3S[@]}"
systemctl daemon-reload
systemctl enable --now "${UNITS[@]}"
