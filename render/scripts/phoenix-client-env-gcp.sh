#!/bin/bash
set -euo pipefail
# Usage: phoenix-client-env.sh PROJECT KEY_SECRET ENV_FILE ENDPOINT [UNIT...]
## Writes the OTLP exporter settings of a trace producer (endpoint, protocol, auth header) into a root-only
## EnvironmentFile, reading the Phoenix ingest key from a Secret Manager secret of PROJECT by secret id
## (gcp-secret-get.sh, with the VM's service account). When the content changed, restarts the given units
## so they pick up the new key; a failed read keeps the old file and exits non-zero.
## Twin of phoenix-client-env.sh (AWS): from reading the key on, both must stay the same.
project="$1"
parameter="$2"
env_file="$3"
endpoint="$4"
shift 4
umask 077
mkdir -p "$(dirname "$env_file")"
tmp="$(mktemp "${env_file}.XXXXXX")"
key_file="$(mktemp "${env_file}.key.XXXXXX")"
trap 'rm -f "$tmp" "$key_file"' EXIT
"${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}/gcp-secret-get.sh" "$project" "$parameter" "$key_file"
key="$(cat "$key_file")"
rm -f "$key_file"
key="$(printf '%s' "$key" | tr -d '\n')"
if [ -z "$key" ]; then
    echo "lmrun: $parameter is empty" >&2
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
