#!/bin/sh
set -eu
## A readiness gate, run by pulumi-command on the operator's machine (POSIX sh, the AWS CLI and the operator's
## credentials): polls the SecureString PARAMETER until a VM has published it, prints the value on stdout
## (nothing else) and exits 0; exits 1 with a message on stderr after TIMEOUT seconds.
## Header: REGION, PARAMETER, TIMEOUT and INTERVAL (seconds), READY (a case pattern the value must match),
## PLACEHOLDER (the value before the VM publishes; may be empty), SERVER_URL (optional: replaces the API
## address of a kubeconfig), WHAT and HINT (the timeout message).
deadline=$(($(date +%s) + TIMEOUT))
while :; do
    value=$(aws ssm get-parameter --region "$REGION" --name "$PARAMETER" --with-decryption \
        --query Parameter.Value --output text 2>/dev/null || true)
    if [ -n "$value" ] && [ "$value" != "${PLACEHOLDER:-}" ]; then
        # READY is a pattern on purpose (e.g. *apiVersion*clusters*), so it stays unquoted.
        # shellcheck disable=SC2254
        case "$value" in
        $READY)
            if [ -n "${SERVER_URL:-}" ]; then
                printf '%s\n' "$value" | sed "s#server: https://[^[:space:]]*#server: $SERVER_URL#"
            else
                printf '%s\n' "$value"
            fi
            exit 0
            ;;
        esac
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "lmrun: $WHAT within ${TIMEOUT}s" >&2
        echo "lmrun: $HINT" >&2
        exit 1
    fi
    sleep "$INTERVAL"
done
