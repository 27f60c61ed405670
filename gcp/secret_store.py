# layer: render (5)
"""GCP Secret Manager as a VM's secret store (:class:`lmrun.render.secret_store.SecretStore`).

On GCP the secrets (WireGuard config, K3s agent token, Hugging Face token, Phoenix ingest key) live in Secret
Manager, readable only by the VM's service account. A VM reads them by *secret id* at boot with an access
token from the metadata server and plain ``curl`` (no ``gcloud``: the gateway runs a stock Ubuntu image, and
the script must not depend on which Google tools an image happens to ship). Nothing here contains a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, sh_join, vm_script

__all__ = [
    "GCP_SECRET_GET_SCRIPT",
    "METADATA_TOKEN_URL",
    "SECRET_MANAGER_API",
    "SecretManagerStore",
    "check_gcp_project",
    "check_gcp_region",
    "check_secret_id",
    "secret_get_argv",
    "secret_get_command",
]

METADATA_TOKEN_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
"""The metadata server's OAuth token for the VM's service account (only reachable from the VM)."""
SECRET_MANAGER_API = "https://secretmanager.googleapis.com/v1"

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


def check_gcp_project(field_name: str, value: str) -> None:
    """GCP project ids: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."""
    if not isinstance(value, str) or not _PROJECT.match(value):
        raise ValueError(f"{field_name}: {value!r} is not a GCP project id")


def check_secret_id(field_name: str, value: str) -> None:
    """Secret Manager secret ids: letters, digits, ``_`` and ``-``, at most 255 characters."""
    if not isinstance(value, str) or not _SECRET_ID.match(value):
        raise ValueError(f"{field_name}: {value!r} is not a Secret Manager secret id")


def check_gcp_region(field_name: str, value: str) -> None:
    if not isinstance(value, str) or not _GCP_REGION.match(value):
        raise ValueError(f"{field_name}: {value!r} is not a GCP region like 'us-central1'")


GCP_SECRET_GET_SCRIPT = vm_script(
    "gcp-secret-get.sh", {"METADATA_TOKEN_URL": METADATA_TOKEN_URL, "SECRET_MANAGER_API": SECRET_MANAGER_API}
)
"""``gcp-secret-get.sh PROJECT SECRET_ID DEST``: the Secret Manager twin of ``ssm-get.sh``."""


def secret_get_argv(project: str, secret_id: str, dest: str) -> list[str]:
    """argv that fetches ``secret_id`` of ``project`` into ``dest`` (0600)."""
    check_gcp_project("project", project)
    check_secret_id("secret_id", secret_id)
    return [f"{SCRIPT_DIR}/gcp-secret-get.sh", project, secret_id, dest]


def secret_get_command(project: str, secret_id: str, dest: str) -> str:
    """One shell line that fetches ``secret_id`` of ``project`` into ``dest`` (0600)."""
    return sh_join(secret_get_argv(project, secret_id, dest))


@dataclass(frozen=True)
class SecretManagerStore:
    """Secret Manager secrets of ``project``, read with ``gcp-secret-get.sh PROJECT SECRET_ID DEST``."""

    project: str
    """Project of the secrets (the site's)."""

    def __post_init__(self) -> None:
        check_gcp_project("project", self.project)

    @property
    def label(self) -> str:
        return "Secret Manager"

    @property
    def fetch_script(self) -> WriteFile:
        return GCP_SECRET_GET_SCRIPT

    def fetch_argv(self, name: str, dest: str) -> list[str]:
        return secret_get_argv(self.project, name, dest)

    def check_name(self, field_name: str, name: str) -> None:
        check_secret_id(field_name, name)
