#!/bin/bash
set -euo pipefail
# Usage: k3s-install.sh VERSION server|agent [K3S FLAGS...]
## Runs the install script of the pinned release tag (not the moving get.k3s.io one); it downloads the
## release binary, checks its sha256, writes the systemd unit with the flags, and starts K3s.
version="$1"
shift
installer="$(mktemp)"
trap 'rm -f "$installer"' EXIT
curl -sfL --retry 10 --retry-delay 5 --retry-all-errors -o "$installer" \
    "https://raw.githubusercontent.com/k3s-io/k3s/${version}/install.sh"
INSTALL_K3S_VERSION="$version" sh "$installer" "$@"
