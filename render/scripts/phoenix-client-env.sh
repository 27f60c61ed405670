#!/bin/bash
set -euo pipefail
# Usage: phoenix-client-env.sh REGION KEY_PARAMETER ENV_FILE ENDPOINT [UNIT...]
## Writes the OTLP exporter settings of a trace producer (endpoint, protocol, auth header) into a root-only
## EnvironmentFile, reading the Phoenix ingest key by parameter name. When the content changed, restarts
## the given units so they pick up the new key; a failed read keeps the old file and exits non-zero.
## Twin of phoenix-client-env-gcp.sh: from reading the key on, both must stay the same.
region="$1"
parameter="$2"
env_file="$3"
endpoint="$4"
shift 4
umask 077
mkdir -p "$(dirname "$env_file")"
tmp="$(mktemp "${env_file}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
key="$(aws ssm get-parameter --region "$region" --name "$parameter" --with-decryption \
    --query Parameter.Value --output text)"
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
