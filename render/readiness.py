"""Readiness gates run on the operator's machine by ``pulumi-command`` during ``pulumi up``.

The K3s server publishes its admin kubeconfig to an SSM SecureString parameter once the API serves. The
gate polls that parameter (bounded) and prints the kubeconfig, so the Kubernetes provider and every
Kubernetes object wait for a live API instead of failing on the first ``pulumi up``. The Phoenix node
publishes its ingest key the same way; a second gate hands it to producers that cannot read SSM (GPU nodes
in GCP sites). Both are :func:`parameter_gate_script`.
"""

from __future__ import annotations

from lmrun.render.cloudinit import sh_assign

PARAMETER_PLACEHOLDER = "pending-published-at-boot"
"""Initial value of a parameter a VM publishes (kubeconfig, Phoenix ingest key). Token-shaped on purpose: a
producer that reads it before the real key exists sends a well-formed header and gets a clean 401."""


def parameter_gate_script(
    *,
    region: str,
    parameter: str,
    pending: str,
    ready: str,
    emit: str,
    what: str,
    hint: str,
    assignments: tuple[tuple[str, str | int], ...] = (),
    timeout_seconds: int = 1200,
    interval: int = 10,
) -> str:
    """POSIX sh that polls the SecureString ``parameter`` until its value matches the ``case`` pattern
    ``ready`` (and not the pattern ``pending``, tried first; ``""`` for none), then runs ``emit`` (which
    prints ``"$value"``, possibly transformed) and exits 0; stdout carries nothing else.

    ``what`` names what the gate waits for and ``hint`` where to look in the timeout message; ``assignments``
    are extra shell variables for the patterns and ``emit``. Needs the AWS CLI and credentials that may read
    the parameter (the operator's). Exits 1 with a message on stderr after ``timeout_seconds``.
    """
    if timeout_seconds <= 0 or interval <= 0:
        raise ValueError("timeout_seconds and interval must be positive")
    extra = "".join(sh_assign(name, value) + "\n" for name, value in assignments)
    pending_arm = f"        {pending})\n            ;;\n" if pending else ""
    return f"""#!/bin/sh
set -eu
{sh_assign("REGION", region)}
{sh_assign("PARAMETER", parameter)}
{sh_assign("TIMEOUT", timeout_seconds)}
{sh_assign("INTERVAL", interval)}
{extra}deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
    value=$(aws ssm get-parameter --region "$REGION" --name "$PARAMETER" --with-decryption \\
        --query Parameter.Value --output text 2>/dev/null || true)
    case "$value" in
{pending_arm}        {ready})
            {emit}
            exit 0
            ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "lmrun: {what} within ${{TIMEOUT}}s" >&2
        echo "lmrun: {hint}" >&2
        exit 1
    fi
    sleep "$INTERVAL"
done
"""


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
    rewrite = "cat" if server_url is None else 'sed "s#server: https://[^[:space:]]*#server: $SERVER_URL#"'
    return parameter_gate_script(
        region=region,
        parameter=parameter,
        pending="",
        ready="*apiVersion*clusters*",
        emit=f"printf '%s\\n' \"$value\" | {rewrite}",
        what="the K3s server did not publish its kubeconfig to $PARAMETER",
        hint="check the server's boot log (SSM Session Manager: journalctl -u cloud-final)",
        assignments=() if server_url is None else (("SERVER_URL", server_url),),
        timeout_seconds=timeout_seconds,
        interval=interval,
    )


def ingest_key_gate_script(
    *,
    region: str,
    parameter: str,
    timeout_seconds: int = 1800,
    interval: int = 10,
) -> str:
    """POSIX sh that waits until the Phoenix node has published a real ingest key to ``parameter`` (not
    :data:`PARAMETER_PLACEHOLDER`) and prints it on stdout (nothing else).

    Producers that cannot read SSM (GPU nodes in GCP sites) get the key through the stack instead: the
    gate's output is stored in their own secret store. The default timeout allows for the node's first boot
    (K3s join, Phoenix install) before it mints the key.
    """
    return parameter_gate_script(
        region=region,
        parameter=parameter,
        pending='"" | "$PLACEHOLDER"',
        ready="*",
        emit="printf '%s\\n' \"$value\"",
        what="the Phoenix node did not publish an ingest key to $PARAMETER",
        hint="check the Phoenix node's journal (SSM Session Manager: journalctl -u lmrun-phoenix-ingest-key)",
        assignments=(("PLACEHOLDER", PARAMETER_PLACEHOLDER),),
        timeout_seconds=timeout_seconds,
        interval=interval,
    )
