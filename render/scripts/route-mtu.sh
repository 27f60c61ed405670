#!/bin/bash
set -euo pipefail
# Usage: route-mtu.sh CIDR MTU [CIDR MTU ...]
## Routes each CIDR through the default gateway with the given MTU ("to use jumbo frames inside a VPC and not
## slow traffic that's bound for outside the VPC, you can configure the MTU size by route", EC2 User Guide,
## Network MTU). TCP then advertises MSS = MTU - 40 on those routes and the node sends no larger packet
## itself, so a path narrower than the interface (inter-Region VPC peering: 8,500 bytes under the instance's
## 9,001) needs no ICMP "fragmentation needed" to work, in either direction of a connection. Idempotent
## (ip route replace): the timer beside it re-applies the routes if the network manager flushed them.
if [ "$#" -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
    echo "usage: route-mtu.sh CIDR MTU [CIDR MTU ...]" >&2
    exit 2
fi
read -r -a default <<<"$(ip -4 route show default | head -n1)"
gateway=""
device=""
for ((i = 0; i + 1 < ${#default[@]}; i++)); do
    case "${default[$i]}" in
    via) gateway="${default[$((i + 1))]}" ;;
    dev) device="${default[$((i + 1))]}" ;;
    esac
done
if [ -z "$gateway" ] || [ -z "$device" ]; then
    echo "lmrun: no IPv4 default route yet; routes not set" >&2
    exit 1
fi
while [ "$#" -ge 2 ]; do
    ip route replace "$1" via "$gateway" dev "$device" mtu "$2"
    echo "lmrun: $1 via $gateway dev $device mtu $2"
    shift 2
done
