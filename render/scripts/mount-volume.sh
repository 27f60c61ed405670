#!/bin/bash
set -euo pipefail
# Usage: mount-volume.sh DEVICE_NAME VOLUME_ID|"" MOUNT_POINT LABEL
## Finds an attached EBS volume (NVMe by-id link from the volume id, then the device name, then its Xen
## alias), waits for it (the attachment may come after boot), formats it only when it carries no
## filesystem signature at all, and mounts it by UUID through /etc/fstab so reboots mount it too.
device_name="$1"
volume_id="$2"
mount_point="$3"
label="$4"
serial="${volume_id//-/}"

find_device() {
    if [ -n "$serial" ] && [ -e "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${serial}" ]; then
        readlink -f "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${serial}"
        return 0
    fi
    if [ -b "$device_name" ]; then
        readlink -f "$device_name"
        return 0
    fi
    local xen="/dev/xvd${device_name#/dev/sd}"
    if [ -b "$xen" ]; then
        echo "$xen"
        return 0
    fi
    if [ -n "$serial" ]; then
        local by_serial
        by_serial="$(lsblk -dnpo NAME,SERIAL | awk -v s="$serial" '$2 == s { print $1; exit }')"
        if [ -n "$by_serial" ]; then
            echo "$by_serial"
            return 0
        fi
    fi
    return 1
}

device=""
for attempt in $(seq 1 120); do
    if device="$(find_device)"; then
        break
    fi
    echo "lmrun: waiting for volume ${volume_id:-$device_name} (attempt $attempt/120)" >&2
    sleep 5
done
if [ -z "$device" ]; then
    echo "lmrun: volume ${volume_id:-$device_name} never appeared" >&2
    exit 1
fi

# blkid -p exits 2 when it finds no signature at all: only then is the volume blank and safe to format.
probe=0
blkid -p "$device" >/dev/null || probe=$?
if [ "$probe" -eq 2 ]; then
    echo "lmrun: $device is blank, creating ext4 ($label)" >&2
    mkfs.ext4 -q -L "$label" "$device"
elif [ "$probe" -ne 0 ]; then
    echo "lmrun: cannot probe $device (blkid exit $probe); refusing to touch it" >&2
    exit 1
fi

uuid="$(blkid -s UUID -o value "$device")"
if [ -z "$uuid" ]; then
    echo "lmrun: $device has no filesystem UUID; refusing to mount it" >&2
    exit 1
fi
mkdir -p "$mount_point"
if ! grep -q "^UUID=$uuid " /etc/fstab; then
    echo "UUID=$uuid $mount_point ext4 defaults,nofail,x-systemd.device-timeout=5min 0 2" >>/etc/fstab
fi
if ! mountpoint -q "$mount_point"; then
    mount "$mount_point"
fi
