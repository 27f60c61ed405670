"""The secret store a VM reads its secrets from at boot, as a value the caller passes to the renderers.

A renderer never knows which cloud it renders for. Where a VM's secrets live (the K3s agent token, the Hugging
Face token, the Phoenix ingest key, a gateway's WireGuard config) is a :class:`SecretStore` object, built in
the cloud's folder (``aws/secret_store.py``: SSM Parameter Store; ``gcp/secret_store.py``: Secret Manager)
and handed to :class:`~lmrun.render.k3s.K3sAgentConfig`, :class:`~lmrun.render.vllm.VllmConfig`,
:class:`~lmrun.render.phoenix.PhoenixClientConfig` and :func:`~lmrun.render.gateways.render_gateway_user_data`.
A new cloud implements this protocol in its own folder; nothing in ``render/`` changes.

Stores are values: two stores are equal when a VM reads from the same place with the same helper (frozen
dataclasses give that), which is how a GPU node checks that its join token, Hugging Face token and ingest key
come from one store (only one helper is installed). Nothing here holds a secret: only names of secrets.
"""

from __future__ import annotations

from typing import Protocol

from lmrun.render.cloudinit import WriteFile

__all__ = ["SecretStore", "check_same_store"]


class SecretStore(Protocol):
    """What a VM needs to read a secret at boot."""

    @property
    def label(self) -> str:
        """A short human name for messages and unit descriptions (``SSM``, ``Secret Manager``)."""
        ...

    @property
    def fetch_script(self) -> WriteFile:
        """The helper the VM installs to read secrets (an executable under ``SCRIPT_DIR``)."""
        ...

    def fetch_argv(self, name: str, dest: str) -> list[str]:
        """The argv (of :attr:`fetch_script`) that writes the value of secret ``name`` into the file ``dest``,
        mode 0600, retrying while the VM's credentials or the secret lag the boot; non-zero exit on failure."""
        ...

    def check_name(self, field_name: str, name: str) -> None:
        """Raise ``ValueError("<field_name>: ...")`` unless ``name`` is a valid secret name in this store."""
        ...


def check_same_store(field_name: str, what: str, store: SecretStore, agent_store: SecretStore) -> None:
    """A VM installs one fetch helper, its K3s agent's: another secret of the VM (``what``) must come from
    the same store."""
    if store != agent_store:
        raise ValueError(
            f"{field_name}: {what} ({store!r}) and the join token ({agent_store!r}) must come from the same "
            "secret store"
        )
