"""What a SkyPilot VM of the mesh is and may read: its node-name prefix, its labels, and the secrets of its role.

SkyPilot clusters launched into the mesh (``lmrun:skypilot``) run with one fixed-name instance profile. They
join K3s as agents with the **agent** credential only (no Kubernetes API credential ever reaches them) and
become replicas of a declared service by the ``serves.lmrun.io/<service>`` label they register with.
"""

from __future__ import annotations

from lmrun.domain.access import ACCESS_MATRIX, MESH, SKYPILOT_ROLE, SKYSERVE_CONTROLLER_ROLE
from lmrun.domain.secrets import SecretPaths

__all__ = [
    "CHECKPOINT_PREFIX",
    "LABEL_LAUNCHER",
    "SKYPILOT_ROLE",
    "SKYSERVE_CONTROLLER_PATTERN",
    "SKYSERVE_CONTROLLER_ROLE",
    "SKY_NODE_PREFIX",
    "joining_credential_path",
    "skypilot_role_reads",
]
SKY_NODE_PREFIX = "sky-"
"""``lmrun.io/node`` names of SkyPilot VMs start with it (``sky-<cluster>[-<rank>]``); stack nodes may not, so a
SkyPilot VM never shares a node name with a declared VM (the node reaper pairs Nodes by that name)."""
LABEL_LAUNCHER = "lmrun.io/launcher"
"""Label of the VMs that joined through the SkyPilot join script (value :data:`SKYPILOT_ROLE`)."""
SKYSERVE_CONTROLLER_PATTERN = "sky-serve-controller-*"
"""The cluster names of SkyServe's controller (SkyPilot 0.14.1 ``sky/utils/common.py``:
``SKY_SERVE_CONTROLLER_PREFIX = 'sky-serve-controller-'``), as an ``fnmatch`` pattern of ``aws.remote_identity``."""
CHECKPOINT_PREFIX = "checkpoints"
"""Key prefix of the managed jobs' checkpoints in the SkyPilot bucket; the role may touch nothing else there."""


def joining_credential_path(paths: SecretPaths) -> str:
    """The SSM parameter a joining VM reads to register as a K3s agent: the agent token (it cannot join a
    server; the SkyPilot role never reads the server token)."""
    return paths.k3s_agent_token


def skypilot_role_reads(paths: SecretPaths, *, phoenix: bool, role: str = SKYPILOT_ROLE) -> tuple[str, ...]:
    """The SSM parameters a SkyPilot identity (``role``: the VMs' or SkyServe's controller's) may read, and nothing
    else: its lines of the access matrix (the joining credential and, for the VMs with Phoenix, its ingest key,
    which trace producers send)."""
    keys = [line.key for line in ACCESS_MATRIX if line.scope == MESH and role in line.readers]
    return tuple(f"{paths.prefix}/{key}" for key in keys if phoenix or not key.startswith("phoenix/"))
