"""User data as the recorded resources carry it, read one way everywhere (checks, contracts, tests).

- an EC2 instance: ``userDataBase64`` (base64 of the bytes EC2 hands the VM: gzip, as
  :func:`lmrun.render.cloudinit.gzip_base64_user_data` writes it) or ``userData`` (the text itself);
- an EC2 launch template: ``userData``, always base64;
- a GCP instance or template: the ``user-data`` metadata value (text; cloud-init's GCE datasource).

:func:`user_data_payload` is what the platform receives and limits (EC2: 16 KB raw, before base64);
:func:`user_data_text` is what cloud-init processes after decompressing it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

from lmrun.render.cloudinit import user_data_text as decoded_text
from lmrun.verify import tokens
from lmrun.verify.resources import get

EC2_USER_DATA_TYPES = frozenset({tokens.INSTANCE, tokens.SPOT_INSTANCE_REQUEST, tokens.LAUNCH_TEMPLATE})
GCP_USER_DATA_TYPES = frozenset(
    {tokens.GCP_INSTANCE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE}
)
USER_DATA_TYPES = EC2_USER_DATA_TYPES | GCP_USER_DATA_TYPES
"""Every resource type that carries cloud-init user data."""


class WithUserData(Protocol):
    """What the reader needs of a resource (the reader's ``Resource`` and the mock's ``RecordedResource`` fit)."""

    @property
    def type(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...


def _base64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def user_data_payload(resource: WithUserData) -> bytes | None:
    """The user data bytes the platform receives (gzip when compressed); None when the resource carries none,
    or its value is not known (a preview) or not valid base64."""
    if resource.type == tokens.LAUNCH_TEMPLATE:
        return _base64(get(resource.inputs, "userData"))
    if resource.type in EC2_USER_DATA_TYPES:
        encoded = get(resource.inputs, "userDataBase64")
        if encoded is not None:
            return _base64(encoded)
        text = get(resource.inputs, "userData")
        return text.encode("utf-8") if isinstance(text, str) else None
    if resource.type in GCP_USER_DATA_TYPES:
        text = get(resource.inputs, "metadata", "user-data")
        return text.encode("utf-8") if isinstance(text, str) else None
    return None


def user_data_text(resource: WithUserData) -> str | None:
    """The text cloud-init processes (gunzipped); None when :func:`user_data_payload` is None or the payload
    is not gzip/UTF-8 text cloud-init could read (a foreign state file may hold anything)."""
    payload = user_data_payload(resource)
    if payload is None:
        return None
    try:
        return decoded_text(payload)
    except (OSError, EOFError, UnicodeDecodeError):  # gzip.BadGzipFile is an OSError
        return None
