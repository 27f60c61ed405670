"""The intended access matrix: for every secret of a mesh, exactly which machine roles read it and which write it.

Why one table: a secret is only as safe as the broadest grant on it. ``lmrun plan`` and ``lmrun check`` compute
who can read and write each secret from the recorded resources (IAM policies, Secret Manager bindings:
:mod:`lmrun.verify.access`) and fail when that differs from this table, naming the secret, the principal and the
statement that grants it. A new secret is one line here; a secret the resources hold that no line names fails the
plan too.

A *principal* is a machine of the mesh, named by its role: ``k3s-server``, ``phoenix``, ``wireguard-hub``,
``gpu-node:<node>``, ``gpu-pool:<node>`` (a GPU pool node), ``gateway:<site>`` (a site's WireGuard gateway),
``skypilot`` (VMs SkyPilot launches into the mesh), ``skyserve-controller`` (SkyServe's controller VM), or
``operator``: whoever runs ``pulumi up``,
the writer of every value the program sets (its own credentials are outside the stack, so its reads are listed
only where Pulumi's state is the secret's one store). Readers and writers are exact: a machine of a listed role
that cannot read the secret disagrees as much as one of another role that can. A role binds within the secret's
scope: a mesh secret (SSM, main region) binds the machines of the hub cloud, a site's secret binds that site's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from lmrun.domain.secrets import SITE_HF_TOKEN, SITE_K3S_AGENT_TOKEN, SITE_PHOENIX_INGEST_KEY, SITE_WIREGUARD

K3S_SERVER = "k3s-server"
PHOENIX = "phoenix"
WIREGUARD_HUB = "wireguard-hub"
GPU_NODE = "gpu-node"
GPU_POOL = "gpu-pool"
"""The role of a GPU pool node (``lmrun:gpuPool``, principal ``gpu-pool:<node>``): it joins K3s and reads nothing
else (no model, no token of Hugging Face, no traces of its own)."""
SITE_GATEWAY = "wireguard-gateway"
"""The role of a site's WireGuard gateway VM (principal ``gateway:<site>``)."""
SKYPILOT_ROLE = "skypilot"
"""The identity of the VMs SkyPilot launches into the mesh (``lmrun:skypilot``): an instance profile no machine of
the stack uses (the ``lmrun:role`` tag of its resources)."""
SKYSERVE_CONTROLLER_ROLE = "skyserve-controller"
"""The identity of SkyServe's controller VM (elastic services): SkyPilot gives it an instance profile of its own
(``aws.remote_identity`` by cluster name), because it launches and terminates the replicas; it joins K3s to reach
the GPU pool's pods."""
OPERATOR = "operator"
MACHINE_ROLES = (
    K3S_SERVER,
    PHOENIX,
    WIREGUARD_HUB,
    GPU_NODE,
    GPU_POOL,
    SITE_GATEWAY,
    SKYPILOT_ROLE,
    SKYSERVE_CONTROLLER_ROLE,
)
"""The values of a machine's role tag (``lmrun:role``) or label (``lmrun_role``)."""

Scope = Literal["mesh", "site", "bundle"]
MESH: Scope = "mesh"
"""A parameter under the mesh's prefix in the hub cloud's store (SSM Parameter Store of the main region)."""
SITE: Scope = "site"
"""A secret of one site of a site cloud, in that site's store (GCP Secret Manager)."""
BUNDLE: Scope = "bundle"
"""An external site's join bundle: a secret stack output, in Pulumi's state only."""


def principal_label(role: str, *, node: str | None = None, site: str | None = None) -> str:
    """How the table names a machine: ``gpu-node:<node>``, ``gpu-pool:<node>``, ``gateway:<site>``, or its role."""
    if role in (GPU_NODE, GPU_POOL) and node:
        return f"{role}:{node}"
    if role == SITE_GATEWAY and site:
        return f"gateway:{site}"
    return role


@dataclass(frozen=True)
class SecretAccess:
    """One line of the matrix."""

    key: str
    """What the secret holds: a mesh parameter's name under the prefix (``k3s/agent-token``), a site secret's kind
    (``k3s-agent-token``), or ``join-bundle``."""
    scope: Scope
    holds: str
    readers: frozenset[str]
    """Roles that read it (``operator`` included where Pulumi's state is its store)."""
    writers: frozenset[str]
    """Roles that write its value (``operator``: the program sets it)."""


def _line(key: str, scope: Scope, holds: str, readers: Iterable[str], writers: Iterable[str]) -> SecretAccess:
    return SecretAccess(key, scope, holds, frozenset(readers), frozenset(writers))


ACCESS_MATRIX: tuple[SecretAccess, ...] = (
    _line("k3s/server-token", MESH, "K3s server token (joins servers; cluster admin)", [K3S_SERVER], [OPERATOR]),
    _line(
        "k3s/agent-token",
        MESH,
        "K3s agent token (joins agents only)",
        [K3S_SERVER, GPU_NODE, GPU_POOL, PHOENIX, SKYPILOT_ROLE, SKYSERVE_CONTROLLER_ROLE],
        [OPERATOR],
    ),
    _line("k3s/kubeconfig", MESH, "Pulumi's kubeconfig (API address, CA, exec plugin)", [K3S_SERVER], [K3S_SERVER]),
    _line("k3s/deployer-credential", MESH, "lmrun-deployer ServiceAccount token", [K3S_SERVER], [K3S_SERVER]),
    _line(
        "k3s/skypilot-kubeconfig",
        MESH,
        "lmrun-skypilot ServiceAccount kubeconfig (namespace skypilot; for SkyPilot's API server)",
        [K3S_SERVER],
        [K3S_SERVER],
    ),
    _line(
        "serve/*/endpoint",
        MESH,
        "an elastic service's SkyServe load balancer, IP:PORT (a String, not a secret; `lmrun sky bind` writes it)",
        [K3S_SERVER],
        [OPERATOR],
    ),
    _line("huggingface/token", MESH, "Hugging Face token", [GPU_NODE], [OPERATOR]),
    _line("wireguard/hub", MESH, "WireGuard hub config (its private key)", [WIREGUARD_HUB], [OPERATOR]),
    _line("phoenix/secret", MESH, "Phoenix signing secret", [PHOENIX], [OPERATOR]),
    _line("phoenix/admin-secret", MESH, "Phoenix admin secret", [PHOENIX], [OPERATOR]),
    _line("phoenix/admin-password", MESH, "Phoenix admin password", [PHOENIX], [OPERATOR]),
    _line("phoenix/ingest-key", MESH, "Phoenix ingest key (traces)", [PHOENIX, GPU_NODE, SKYPILOT_ROLE], [PHOENIX]),
    _line(SITE_K3S_AGENT_TOKEN, SITE, "the K3s agent token, copied for the site", [GPU_NODE, GPU_POOL], [OPERATOR]),
    _line(SITE_HF_TOKEN, SITE, "the Hugging Face token, copied for the site", [GPU_NODE], [OPERATOR]),
    _line(SITE_PHOENIX_INGEST_KEY, SITE, "the Phoenix ingest key, copied for the site", [GPU_NODE], [OPERATOR]),
    _line(SITE_WIREGUARD, SITE, "the site gateway's WireGuard config (its private key)", [SITE_GATEWAY], [OPERATOR]),
    _line("join-bundle", BUNDLE, "an external site's WireGuard config and bootstrap", [OPERATOR], [OPERATOR]),
)


def intended(scope: Scope, key: str) -> SecretAccess | None:
    """The matrix line of a secret (a line's ``*`` stands for one name: ``serve/*/endpoint``); None when the matrix
    does not name it (a disagreement in itself)."""
    return next((line for line in ACCESS_MATRIX if line.scope == scope and _names(line.key, key)), None)


def _names(pattern: str, key: str) -> bool:
    parts, keys = pattern.split("/"), key.split("/")
    return len(parts) == len(keys) and all(p in ("*", k) for p, k in zip(parts, keys, strict=True))
