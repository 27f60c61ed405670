#!/bin/bash
set -euo pipefail
# Usage: phoenix-env.sh REGION ENV_FILE VAR=SSM_PARAMETER_NAME...
## Builds a root-only EnvironmentFile from SecureString parameters read by name (ssm-get.sh retries while
## credentials or parameters lag the boot). Values must be one line; the file is replaced atomically.
region="$1"
env_file="$2"
shift 2
umask 077
mkdir -p "$(dirname "$env_file")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for pair in "$@"; do
    var="${pair%%=*}"
    name="${pair#*=}"
    "${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}/ssm-get.sh" "$region" "$name" "$work/value"
    if [ "$(wc -l <"$work/value")" -gt 1 ]; then
        echo "lmrun: SSM parameter $name holds more than one line; refusing it for $var" >&2
        exit 1
    fi
    printf '%s=%s\n' "$var" "$(tr -d '\n' <"$work/value")" >>"$work/env"
done
mv -f "$work/env" "$env_file"
chmod 0600 "$env_file"
