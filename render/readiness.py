"""Readiness gates run on the operator's machine by ``pulumi-command`` during ``pulumi up``.

The K3s server publishes Pulumi's kubeconfig (the ``lmrun-deployer`` account's; its exec plugin reads the
token from a parameter of its own on every use) to an SSM SecureString parameter once the API serves and the
deployer's namespace and token exist. The gate polls that parameter (bounded) and prints the kubeconfig, so
the Kubernetes provider and every Kubernetes object wait for a live API instead of failing on the first
``pulumi up``. The Phoenix node publishes its ingest key the same way; a second gate hands it to producers
that cannot read SSM (GPU nodes in GCP sites). Both are :func:`parameter_gate_script`.
"""

from __future__ import annotations

from lmrun.render.script_files import HeaderValue, render_script

PARAMETER_PLACEHOLDER = "pending-published-at-boot"
"""Initial value of a parameter a VM publishes (kubeconfig, Phoenix ingest key). Token-shaped on purpose: a
producer that reads it before the real key exists sends a well-formed header and gets a clean 401."""


def parameter_gate_script(
    *,
    region: str,
    parameter: str,
    what: str,
    hint: str,
    ready: str = "*",
    placeholder: str = "",
    server_url: str | None = None,
    timeout_seconds: int = 1200,
    interval: int = 10,
) -> str:
    """POSIX sh (``render/scripts/parameter-gate.sh``) that polls the SecureString ``parameter`` until its value
    is neither empty nor ``placeholder`` and matches the ``case`` pattern ``ready``, then prints it on stdout
    (with ``server_url`` replacing a kubeconfig's API address) and exits 0; stdout carries nothing else.

    ``what`` says what the gate waits for and ``hint`` where to look, in the timeout message. Needs the AWS
    CLI and credentials that may read the parameter (the operator's). Exits 1 with a message on stderr after
    ``timeout_seconds``.
    """
    if timeout_seconds <= 0 or interval <= 0:
        raise ValueError("timeout_seconds and interval must be positive")
    values: dict[str, HeaderValue] = {
        "REGION": region,
        "PARAMETER": parameter,
        "TIMEOUT": timeout_seconds,
        "INTERVAL": interval,
        "READY": ready,
        "PLACEHOLDER": placeholder,
    }
    if server_url is not None:
        values["SERVER_URL"] = server_url
    values.update({"WHAT": what, "HINT": hint})
    return render_script("parameter-gate.sh", values, note=None)


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
    return parameter_gate_script(
        region=region,
        parameter=parameter,
        what=f"the K3s server did not publish its kubeconfig to {parameter}",
        hint="check the server's boot log (SSM Session Manager: journalctl -u cloud-final)",
        ready="*apiVersion*clusters*",
        server_url=server_url,
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
        what=f"the Phoenix node did not publish an ingest key to {parameter}",
        hint="check the Phoenix node's journal (SSM Session Manager: journalctl -u lmrun-phoenix-ingest-key)",
        placeholder=PARAMETER_PLACEHOLDER,
        timeout_seconds=timeout_seconds,
        interval=interval,
    )
