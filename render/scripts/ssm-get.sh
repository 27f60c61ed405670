#!/bin/bash
set -euo pipefail
# Usage: ssm-get.sh REGION PARAMETER_NAME DEST
## Reads a (SecureString) parameter with the instance role and writes its value to DEST, mode 0600.
## Retries for ~10 minutes: instance-profile credentials and the parameter itself can lag the boot.
region="$1"
name="$2"
dest="$3"
umask 077
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp "${dest}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
for attempt in $(seq 1 60); do
    if aws ssm get-parameter --region "$region" --name "$name" --with-decryption \
        --query Parameter.Value --output text >"$tmp"; then
        mv -f "$tmp" "$dest"
        trap - EXIT
        exit 0
    fi
    echo "lmrun: SSM parameter $name not readable yet (attempt $attempt/60)" >&2
    sleep 10
done
echo "lmrun: giving up on SSM parameter $name" >&2
exit 1
