#!/bin/bash
set -euo pipefail
# Fetches the gateway's WireGuard config; applies it only when it differs from the installed one.
## Header: FETCH_CONFIG (the argv of the secret store's fetch script, writing the config to FETCHED), FETCHED.
"${FETCH_CONFIG[@]}"
if cmp -s "${FETCHED:?}" /etc/wireguard/wg0.conf; then
    rm -f "$FETCHED"
    exit 0
fi
"${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}/wireguard-bootstrap.sh" "$FETCHED"
rm -f "$FETCHED"
