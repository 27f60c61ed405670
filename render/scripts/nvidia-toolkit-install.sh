#!/bin/bash
set -euo pipefail
## Installs the pinned NVIDIA Container Toolkit from NVIDIA's apt repository (NVIDIA, "Installing the NVIDIA
## Container Toolkit", With apt) before the K3s agent starts: K3s looks for nvidia-container-runtime when its
## containerd starts and registers the `nvidia` runtime, which the agent's --default-runtime then makes the
## default. The GPU image already carries the driver; an image that already has this exact version skips apt.
## Header: VERSION (the apt version of every toolkit package, e.g. 1.17.8-1), REPOSITORY (the repository's
## base URL), KEYRING (where the repository's signing key goes).
packages=(nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1)
installed="$(dpkg-query -W -f '${Version}' nvidia-container-toolkit 2>/dev/null || true)"
if [ "$installed" = "${VERSION:?}" ]; then
    echo "lmrun: NVIDIA Container Toolkit $VERSION already installed" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
for _ in $(seq 1 30); do
    curl -fsSL "${REPOSITORY:?}/gpgkey" -o /run/lmrun-nvidia-gpgkey && break
    sleep 5
done
install -d -m 0755 "$(dirname "${KEYRING:?}")"
gpg --batch --yes --dearmor -o "$KEYRING" /run/lmrun-nvidia-gpgkey
rm -f /run/lmrun-nvidia-gpgkey
# shellcheck disable=SC2016 # $(ARCH) is apt's own variable, written as is
printf 'deb [signed-by=%s] %s/stable/deb/$(ARCH) /\n' "$KEYRING" "$REPOSITORY" \
    >/etc/apt/sources.list.d/nvidia-container-toolkit.list
pinned=()
for package in "${packages[@]}"; do
    pinned+=("$package=$VERSION")
done
for _ in $(seq 1 10); do
    if apt-get update -q && apt-get install -y -q --allow-downgrades --no-install-recommends "${pinned[@]}"; then
        exit 0
    fi
    sleep 15
done
echo "lmrun: could not install NVIDIA Container Toolkit $VERSION" >&2
exit 1
