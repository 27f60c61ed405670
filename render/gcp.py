"""GCP renderers: the Secret Manager fetch script and a GCP site gateway's cloud-init.

On GCP the secrets (WireGuard config, K3s join token, Hugging Face token) live in Secret Manager, readable
only by the VM's service account. A VM reads them by *secret id* at boot with an access token from the
metadata server and plain ``curl`` (no ``gcloud``: the gateway runs a stock Ubuntu image, and the script
must not depend on which Google tools an image happens to ship). Nothing rendered here contains a secret.
"""

from __future__ import annotations

import re

from lmrun.render.cloudinit import SCRIPT_DIR, sh_join, vm_script

__all__ = [
    "GCP_SECRET_GET_SCRIPT",
    "METADATA_TOKEN_URL",
    "SECRET_MANAGER_API",
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


# --- a GCP site gateway's user data ------------------------------------------------------------------------
