"""Where each secret of a mesh lives, named for what it holds: SSM parameter names under ``/lmrun/<stack>``, and
the secret ids of a site's own store (``<site prefix>-<kind>``, the prefix from the site's component name).

Who may read and write each one is :mod:`lmrun.domain.access`; the checks key their rows by what this module
names (:func:`mesh_secret_key`, :func:`site_secret_kind`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

HF_TOKEN_UNSET = "lmrun-no-hugging-face-token"
"""The Hugging Face token secret's value while ``lmrun:huggingFaceToken`` is not set. The secret always exists and
GPU nodes always read it (at every vLLM start), so setting the token changes that one value and no node's user
data; a node reading this value runs without a token."""


@dataclass(frozen=True)
class SecretPaths:
    """SSM parameter names of one mesh's secrets, from its prefix (``/lmrun/<stack>``)."""

    prefix: str

    @classmethod
    def for_mesh(cls, mesh: str) -> SecretPaths:
        return cls(f"/lmrun/{mesh}")

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.prefix.rstrip("/"))

    @property
    def k3s_server_token(self) -> str:
        """K3s's server token (``--token-file`` of the server only): it joins servers and agents alike and is the
        passphrase of the cluster's encrypted bootstrap data, so it amounts to cluster admin."""
        return f"{self.prefix}/k3s/server-token"

    @property
    def k3s_agent_token(self) -> str:
        """K3s's agent token (``--agent-token-file`` on the server): it joins agents, never servers."""
        return f"{self.prefix}/k3s/agent-token"

    @property
    def kubeconfig(self) -> str:
        return f"{self.prefix}/k3s/kubeconfig"

    @property
    def k3s_deployer_credential(self) -> str:
        """The lmrun-deployer ServiceAccount's token, as the ExecCredential the kubeconfig's exec plugin prints."""
        return f"{self.prefix}/k3s/deployer-credential"

    @property
    def k3s_skypilot_kubeconfig(self) -> str:
        """The ``lmrun-skypilot`` ServiceAccount's kubeconfig (namespace ``skypilot``, its token inside), which the
        K3s server publishes and the operator hands to SkyPilot's API server."""
        return f"{self.prefix}/k3s/skypilot-kubeconfig"

    def serve_endpoint(self, service: str) -> str:
        """Where ``lmrun sky bind`` records an elastic service's SkyServe load balancer (``IP:PORT``, a String
        parameter: an address, not a secret); the K3s server points the service's node port at it."""
        return f"{self.prefix}/serve/{service}/endpoint"

    @property
    def serve_endpoints(self) -> str:
        """Every elastic service's :meth:`serve_endpoint`, as an IAM resource pattern: what the K3s server reads."""
        return f"{self.prefix}/serve/*"

    @property
    def huggingface_token(self) -> str:
        return f"{self.prefix}/huggingface/token"

    @property
    def wireguard_hub(self) -> str:
        return f"{self.prefix}/wireguard/hub"

    def phoenix(self, key: str) -> str:
        """``secret``, ``admin-secret``, ``admin-password`` or ``ingest-key`` of the Phoenix node."""
        return f"{self.prefix}/phoenix/{key}"


_MESH_SECRET = re.compile(r"^/lmrun/[^/]+/(?P<key>.+)$")


def mesh_secret_key(name: str) -> str | None:
    """What a mesh parameter holds, from its name: ``/lmrun/global/k3s/agent-token`` -> ``k3s/agent-token``;
    None for a name outside every mesh's prefix."""
    match = _MESH_SECRET.match(name)
    return match.group("key") if match else None


SITE_K3S_AGENT_TOKEN = "k3s-agent-token"
SITE_HF_TOKEN = "hf-token"
SITE_PHOENIX_INGEST_KEY = "phoenix-ingest-key"
SITE_WIREGUARD = "wireguard"
SITE_SECRET_KINDS = (SITE_K3S_AGENT_TOKEN, SITE_HF_TOKEN, SITE_PHOENIX_INGEST_KEY, SITE_WIREGUARD)
"""The secrets a site of a site cloud keeps in its own store (the copies its VMs read there)."""


def site_secret_id(prefix: str, kind: str) -> str:
    """The id of a site's secret ``kind`` (one of :data:`SITE_SECRET_KINDS`), under the site's prefix."""
    if kind not in SITE_SECRET_KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(SITE_SECRET_KINDS)}")
    return f"{prefix}-{kind}"


def site_secret_kind(secret_id: str) -> str | None:
    """Which of :data:`SITE_SECRET_KINDS` an id holds (its longest matching suffix); None for another id."""
    kinds = [kind for kind in SITE_SECRET_KINDS if secret_id.endswith(f"-{kind}")]
    return max(kinds, key=len) if kinds else None
