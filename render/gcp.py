"""GCP renderers: the Secret Manager fetch script and a GCP site gateway's cloud-init.

On GCP the secrets (WireGuard config, K3s join token, Hugging Face token) live in Secret Manager, readable
only by the VM's service account. A VM reads them by *secret id* at boot with an access token from the
metadata server and plain ``curl`` (no ``gcloud``: the gateway runs a stock Ubuntu image, and the script
must not depend on which Google tools an image happens to ship). Nothing rendered here contains a secret.
"""

from __future__ import annotations

import re

from lmrun.render.cloudinit import SCRIPT_DIR, script_file, sh_join

__all__ = [
    "GCP_SECRET_GET_SCRIPT",
    "METADATA_TOKEN_URL",
    "SECRET_MANAGER_API",
    "check_gcp_project",
    "check_gcp_region",
    "check_secret_id",
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


GCP_SECRET_GET_SCRIPT = script_file(
    "gcp-secret-get.sh",
    rf"""
# Usage: gcp-secret-get.sh PROJECT SECRET_ID DEST
# Reads the latest version of a Secret Manager secret with the VM's service account and writes its value to
# DEST, mode 0600. The access token comes from the metadata server and reaches curl on stdin (-H @-), never
# on a command line other local users could read in /proc. Retries for ~10 minutes: a new secret-level IAM
# grant and the VM's first token can lag the boot.
project="$1"
secret="$2"
dest="$3"
token_url='{METADATA_TOKEN_URL}'
url="{SECRET_MANAGER_API}/projects/${{project}}/secrets/${{secret}}/versions/latest:access"
umask 077
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp "${{dest}}.XXXXXX")"
body="$(mktemp)"
trap 'rm -f "$tmp" "$body"' EXIT

fetch() {{
    local token
    token="$(curl -sf --max-time 30 -H 'Metadata-Flavor: Google' "$token_url" | tr -d '\n' |
        sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')" || return 1
    [ -n "$token" ] || return 1
    printf 'Authorization: Bearer %s\n' "$token" | curl -sf --max-time 30 -H @- "$url" >"$body" || return 1
    # The payload is base64 in the JSON answer ("payload": {{"data": "..."}}).
    tr -d '\n' <"$body" | sed -n 's/.*"data" *: *"\([A-Za-z0-9+\/=]*\)".*/\1/p' | base64 -d >"$tmp" || return 1
    [ -s "$tmp" ]
}}

for attempt in $(seq 1 60); do
    if fetch; then
        rm -f "$body"
        mv -f "$tmp" "$dest"
        trap - EXIT
        exit 0
    fi
    echo "lmrun: secret $secret in project $project not readable yet (attempt $attempt/60)" >&2
    sleep 10
done
echo "lmrun: giving up on secret $secret in project $project" >&2
exit 1
""",
)
"""``gcp-secret-get.sh PROJECT SECRET_ID DEST``: the Secret Manager twin of ``ssm-get.sh``."""


def secret_get_command(project: str, secret_id: str, dest: str) -> str:
    """One shell line that fetches ``secret_id`` of ``project`` into ``dest`` (0600)."""
    check_gcp_project("project", project)
    check_secret_id("secret_id", secret_id)
    return f"{SCRIPT_DIR}/gcp-secret-get.sh {sh_join([project, secret_id, dest])}"


# --- a GCP site gateway's user data ------------------------------------------------------------------------
