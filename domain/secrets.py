"""Where each secret of a mesh lives: SSM parameter names under ``/lmrun/<stack>`` (GCP Secret Manager ids
are derived from the site name by the GCP site component)."""

from __future__ import annotations

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
    def k3s_token(self) -> str:
        return f"{self.prefix}/k3s/token"

    @property
    def kubeconfig(self) -> str:
        return f"{self.prefix}/k3s/kubeconfig"

    @property
    def k3s_deployer_credential(self) -> str:
        """The lmrun-deployer ServiceAccount's token, as the ExecCredential the kubeconfig's exec plugin prints."""
        return f"{self.prefix}/k3s/deployer-credential"

    @property
    def huggingface_token(self) -> str:
        return f"{self.prefix}/huggingface/token"

    @property
    def wireguard_hub(self) -> str:
        return f"{self.prefix}/wireguard/hub"

    def phoenix(self, key: str) -> str:
        """``secret``, ``admin-secret``, ``admin-password`` or ``ingest-key`` of the Phoenix node."""
        return f"{self.prefix}/phoenix/{key}"
