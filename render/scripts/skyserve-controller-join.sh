#!/bin/bash
set -euo pipefail
# Usage: skyserve-controller-join.sh [--wait-and-join]   (aws.post_provision_runcmd runs it, as root, at boot)
## Every AWS VM SkyPilot launches runs this at boot; on SkyServe's controller only (the VM whose instance profile
## is CONTROLLER_PROFILE) it joins the mesh's K3s as an agent with the agent credential, so the controller's load
## balancer reaches the GPU pool's replicas at their pod IPs. Every other VM exits here: replicas join in their
## task's setup, with the labels of their service.
## SkyPilot installs the AWS CLI with its runtime after boot, so at boot this only installs a oneshot unit that
## runs the script again with --wait-and-join: it waits (up to WAIT_SECONDS) for an AWS CLI, reads the token with
## ssm-get.sh and runs the pinned K3s installer. K3s applies labels at registration: LABEL_NODE=
## NODE_PREFIX<instance id>, LABEL_REGION=<region>, LAUNCHER_LABEL.
## Header: IMDS, CONTROLLER_PROFILE, SCRIPT_DIR, UNIT_DIR, SSM_REGION, TOKEN_PARAMETER, TOKEN_FILE, K3S_VERSION,
## SERVER_URL, NODE_PREFIX, LABEL_NODE, LABEL_REGION, LAUNCHER_LABEL, WAIT_SECONDS.
unit=lmrun-skyserve-join.service

metadata() {
    local token
    token="$(curl -sf -X PUT "${IMDS:?}/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")"
    curl -sf -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/$1"
}

find_aws() {
    if command -v aws >/dev/null; then
        return 0
    fi
    local candidate
    for candidate in /usr/local/bin/aws /root/skypilot-runtime/bin/aws /home/*/skypilot-runtime/bin/aws; do
        if [ -x "$candidate" ]; then
            PATH="$PATH:$(dirname "$candidate")"
            return 0
        fi
    done
    return 1
}

if [ "${1:-}" != "--wait-and-join" ]; then
    profile="$(metadata meta-data/iam/info | python3 -c 'import json, sys; print(json.load(sys.stdin)["InstanceProfileArn"])')"
    if [ "${profile##*:instance-profile/}" != "${CONTROLLER_PROFILE:?}" ]; then
        echo "lmrun: not SkyServe's controller ($profile): nothing to join"
        exit 0
    fi
    install -d -m 0755 "${UNIT_DIR:?}"
    cat >"$UNIT_DIR/$unit" <<UNIT
[Unit]
Description=lmrun: join the mesh's K3s once SkyPilot's runtime brings the AWS CLI
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/bash ${SCRIPT_DIR:?}/skyserve-controller-join.sh --wait-and-join
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable "$unit"
    systemctl start --no-block "$unit"
    echo "lmrun: SkyServe's controller joins the mesh once the AWS CLI is installed ($unit)"
    exit 0
fi

waited=0
until find_aws; do
    if [ "$waited" -ge "${WAIT_SECONDS:?}" ]; then
        echo "lmrun: no AWS CLI after ${WAIT_SECONDS}s: SkyServe's controller did not join the mesh" >&2
        exit 1
    fi
    sleep 10
    waited=$((waited + 10))
done
instance="$(metadata meta-data/instance-id)"
region="$(metadata meta-data/placement/region)"
"$SCRIPT_DIR/ssm-get.sh" "${SSM_REGION:?}" "${TOKEN_PARAMETER:?}" "${TOKEN_FILE:?}"
flags=(--server "${SERVER_URL:?}" --token-file "$TOKEN_FILE" --with-node-id)
flags+=(--node-label "${LABEL_NODE:?}=${NODE_PREFIX:?}$instance" --node-label "${LABEL_REGION:?}=$region")
flags+=(--node-label "${LAUNCHER_LABEL:?}")
"$SCRIPT_DIR/k3s-install.sh" "${K3S_VERSION:?}" agent "${flags[@]}"
echo "lmrun: SkyServe's controller joined the mesh as $NODE_PREFIX$instance"
