#!/bin/bash
set -euo pipefail
# Usage: phoenix-client-env.sh ENV_FILE ENDPOINT [UNIT...]
## Writes the OTLP exporter settings of a trace producer (endpoint, protocol, auth header) into a root-only
## EnvironmentFile, reading the Phoenix ingest key with the VM's secret store. When the content changed,
## restarts the given units so they pick up the new key; a failed read keeps the old file and exits non-zero.
## Header: FETCH_KEY (the argv of the secret store's fetch script, writing the key to KEY_FILE), KEY_FILE.
env_file="$1"
endpoint="$2"
shift 2
umask 077
mkdir -p "$(dirname "$env_file")"
tmp="$(mktemp "${env_file}.XXXXXX")"
trap 'rm -f "$tmp" "${KEY_FILE:?}"' EXIT
"${FETCH_KEY[@]}"
key="$(tr -d '\n' <"$KEY_FILE")"
rm -f "$KEY_FILE"
if [ -z "$key" ]; then
    echo "lmrun: the key read by ${FETCH_KEY[*]} is empty" >&2
    exit 1
fi
{
    printf 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=%s\n' "$endpoint"
    printf 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc\n'
    printf 'OTEL_EXPORTER_OTLP_TRACES_INSECURE=true\n'
    # W3C-baggage encoding of the header value: the space is %20.
    printf 'OTEL_EXPORTER_OTLP_TRACES_HEADERS=authorization=Bearer%%20%s\n' "$key"
} >"$tmp"
chmod 0600 "$tmp"
if [ -f "$env_file" ] && cmp -s "$tmp" "$env_file"; then
    exit 0
fi
mv -f "$tmp" "$env_file"
trap - EXIT
echo "lmrun: wrote $env_file"
for unit in "$@"; do
    systemctl try-restart "$unit"
done
