#!/bin/bash
set -euo pipefail
# Usage: phoenix-ingest-key.sh REGION KEY_PARAMETER PHOENIX_URL ENV_FILE [KMS_KEY_ID]
## Makes sure KEY_PARAMETER holds a system API key that Phoenix accepts. Reads PHOENIX_ADMIN_SECRET from
## ENV_FILE; mints a new key only when the stored one is missing or refused (HTTP 401), so producers keep a
## working key across reboots. Secrets go through 0600 files, never through argv.
region="$1"
parameter="$2"
url="${3%/}"
env_file="$4"
kms_key="${5:-}"
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

admin_secret="$(sed -n 's/^PHOENIX_ADMIN_SECRET=//p' "$env_file")"
if [ -z "$admin_secret" ]; then
    echo "lmrun: no PHOENIX_ADMIN_SECRET in $env_file" >&2
    exit 1
fi

for attempt in $(seq 1 60); do
    if curl -sf -o /dev/null "$url/healthz"; then
        break
    fi
    if [ "$attempt" -eq 60 ]; then
        echo "lmrun: Phoenix at $url is not healthy; giving up" >&2
        exit 1
    fi
    sleep 5
done

# The stored key, if any ("ParameterNotFound" is the only error that means "none yet").
if aws ssm get-parameter --region "$region" --name "$parameter" --with-decryption \
    --query Parameter.Value --output text >"$work/key" 2>"$work/err"; then
    printf 'Authorization: Bearer %s\n' "$(tr -d '\n' <"$work/key")" >"$work/key-header"
    status="$(curl -s -o /dev/null -w '%{http_code}' -H @"$work/key-header" "$url/v1/projects?limit=1")"
    case "$status" in
    200)
        echo "lmrun: ingest key in $parameter is accepted by Phoenix"
        exit 0
        ;;
    401)
        echo "lmrun: ingest key in $parameter is refused by Phoenix; minting a new one"
        ;;
    *)
        echo "lmrun: Phoenix answered HTTP $status while checking the ingest key" >&2
        exit 1
        ;;
    esac
elif grep -q ParameterNotFound "$work/err"; then
    echo "lmrun: $parameter does not exist yet; minting the first ingest key"
else
    cat "$work/err" >&2
    exit 1
fi

printf 'Authorization: Bearer %s\n' "$admin_secret" >"$work/admin-header"
curl -sf -X POST -H @"$work/admin-header" -H 'Content-Type: application/json' \
    --data '{"data": {"name": "lmrun-ingest", "description": "OTLP ingestion for mesh trace producers (lmrun)"}}' \
    -o "$work/created" "$url/v1/system/api_keys"
"$python" "$helpers/phoenix_key_request.py" "$work/created" "$work/put.json" "$parameter" "$kms_key"
aws ssm put-parameter --region "$region" --cli-input-json "file://$work/put.json" >/dev/null
echo "lmrun: stored a new Phoenix ingest key in $parameter"
