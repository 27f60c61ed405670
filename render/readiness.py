"""Readiness gates run on the operator's machine by ``pulumi-command`` during ``pulumi up``.

The K3s server publishes its admin kubeconfig to an SSM SecureString parameter once the API serves. The
gate polls that parameter (bounded) and prints the kubeconfig, so the Kubernetes provider and every
Kubernetes object wait for a live API instead of failing on the first ``pulumi up``.
"""

from __future__ import annotations

from lmrun.render.cloudinit import sh_assign

PARAMETER_PLACEHOLDER = "pending-published-at-boot"
"""Initial value of a parameter a VM publishes (kubeconfig, Phoenix ingest key). Token-shaped on purpose: a
producer that reads it before the real key exists sends a well-formed header and gets a clean 401."""


def kubeconfig_gate_script(
    *,
    region: str,
    parameter: str,
    server_url: str | None = None,
    timeout_seconds: int = 1200,
    interval: int = 10,
) -> str:
    """POSIX sh that waits until ``parameter`` holds a kubeconfig and prints it on stdout (nothing else).

    ``server_url`` replaces the API address in the printed kubeconfig (the server publishes its private
    address; an operator outside the mesh reaches the public one). Needs the AWS CLI and credentials that
    may read the parameter (the operator's). Exits 1 with a message on stderr when the server has not
    published within ``timeout_seconds``.
    """
    if timeout_seconds <= 0 or interval <= 0:
        raise ValueError("timeout_seconds and interval must be positive")
    rewrite = "cat" if server_url is None else 'sed "s#server: https://[^[:space:]]*#server: $SERVER_URL#"'
    server = "" if server_url is None else sh_assign("SERVER_URL", server_url) + "\n"
    return f"""#!/bin/sh
set -eu
{sh_assign("REGION", region)}
{sh_assign("PARAMETER", parameter)}
{sh_assign("TIMEOUT", timeout_seconds)}
{sh_assign("INTERVAL", interval)}
{server}deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
    value=$(aws ssm get-parameter --region "$REGION" --name "$PARAMETER" --with-decryption \\
        --query Parameter.Value --output text 2>/dev/null || true)
    case "$value" in
        *apiVersion*clusters*)
            printf '%s\\n' "$value" | {rewrite}
            exit 0
            ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "lmrun: the K3s server did not publish its kubeconfig to $PARAMETER within ${{TIMEOUT}}s" >&2
        echo "lmrun: check the server's boot log (SSM Session Manager: journalctl -u cloud-final)" >&2
        exit 1
    fi
    sleep "$INTERVAL"
done
"""
