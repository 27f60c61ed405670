#!/bin/bash
set -euo pipefail
# Usage: gcp-secret-get.sh PROJECT SECRET_ID DEST
## Reads the latest version of a Secret Manager secret with the VM's service account and writes its value to
## DEST, mode 0600. The access token comes from the metadata server and reaches curl on stdin (-H @-), never
## on a command line other local users could read in /proc. Retries for ~10 minutes: a new secret-level IAM
## grant and the VM's first token can lag the boot.
## Header: METADATA_TOKEN_URL (the metadata server's token endpoint), SECRET_MANAGER_API (its base URL).
project="$1"
secret="$2"
dest="$3"
token_url="${METADATA_TOKEN_URL:?}"
url="${SECRET_MANAGER_API:?}/projects/${project}/secrets/${secret}/versions/latest:access"
umask 077
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp "${dest}.XXXXXX")"
body="$(mktemp)"
trap 'rm -f "$tmp" "$body"' EXIT

fetch() {
    local token
    token="$(curl -sf --max-time 30 -H 'Metadata-Flavor: Google' "$token_url" | tr -d '\n' |
        sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')" || return 1
    [ -n "$token" ] || return 1
    printf 'Authorization: Bearer %s\n' "$token" | curl -sf --max-time 30 -H @- "$url" >"$body" || return 1
    # The payload is base64 in the JSON answer ("payload": {"data": "..."}).
    tr -d '\n' <"$body" | sed -n 's/.*"data" *: *"\([A-Za-z0-9+\/=]*\)".*/\1/p' | base64 -d >"$tmp" || return 1
    [ -s "$tmp" ]
}

for attempt in $(seq 1 60); do
    if fetch; then
        rm -f "$body"
        mv -f "$tmp" "$dest"
        trap - EXIT
        exit 0
    fi
    echo "lmrun: secret $secret in project $project not readable yet (attempt $attempt/60)" >&2
    sleep 10
done
echo "lmrun: giving up on secret $secret in project $project" >&2
exit 1
