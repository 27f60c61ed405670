#!/usr/bin/env bash
# Usage: bootstrap.sh [WIREGUARD_CONFIG]  (default: CONFIG_PATH above)
# Contains no secrets; the config file it installs does.
## Turns a Linux machine into a WireGuard gateway: forwarding on, config installed, tunnel up; re-running it
## applies a changed (rotated) config.
## Header: IFACE, CONFIG_PATH (relative to this script's folder when CONFIG_NEXT_TO_SCRIPT=1),
## INSTALL_PACKAGES (1: install wireguard-tools when wg-quick is missing).
set -euo pipefail

iface="${IFACE:?}"
default_src="${CONFIG_PATH:?}"
if [[ "${CONFIG_NEXT_TO_SCRIPT:-0}" == 1 ]]; then
  default_src="$(dirname -- "${BASH_SOURCE[0]}")/$default_src"
fi
src="${1:-$default_src}"

if [[ $EUID -ne 0 ]]; then
  echo "lmrun: run as root" >&2
  exit 1
fi
if [[ ! -r "$src" ]]; then
  echo "lmrun: WireGuard config $src is missing or unreadable" >&2
  exit 1
fi

if [[ "${INSTALL_PACKAGES:-0}" == 1 ]] && ! command -v wg-quick >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wireguard-tools
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y wireguard-tools
  elif command -v yum >/dev/null 2>&1; then
    yum install -y wireguard-tools
  else
    echo "lmrun: install wireguard-tools (wg-quick) and re-run" >&2
    exit 1
  fi
fi

# A gateway routes between its LAN and the tunnel.
printf 'net.ipv4.ip_forward = 1\n' >/etc/sysctl.d/99-lmrun-wireguard.conf
sysctl -q -w net.ipv4.ip_forward=1

umask 077
install -d -m 0700 /etc/wireguard
install -m 0600 "$src" "/etc/wireguard/$iface.conf"

# enable --now leaves a running tunnel alone, so restart it to apply a changed (rotated) config.
if systemctl is-active --quiet "wg-quick@$iface"; then
  systemctl enable "wg-quick@$iface"
  systemctl restart "wg-quick@$iface"
else
  systemctl enable --now "wg-quick@$iface"
fi
echo "lmrun: wg-quick@$iface is up"
