"""Small helpers for resource names and tags, shared by every component."""

from __future__ import annotations

import re
from collections.abc import Mapping

from lmrun.domain.names import TAG_NODE, TAG_REGION, TAG_ROLE
from lmrun.plan.mesh import MANAGED_BY_TAG, MESH_TAG

IDENTITY_TAG_KEYS = frozenset({MESH_TAG, MANAGED_BY_TAG, TAG_REGION, TAG_ROLE, TAG_NODE, "Name"})
"""Tags that name what a resource is (mesh, role, region, node): they never change for a given resource.
Whatever cannot change in place (launch templates, GCP instance templates) carries only these, so editing
``lmrun:tags`` rolls no node."""


def slug(key: str) -> str:
    """A stable key (region, AZ id, node name) as a resource-name fragment: lowercase, [a-z0-9-]."""
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def with_name(tags: Mapping[str, str], name: str) -> dict[str, str]:
    """Tags plus the ``Name`` tag the AWS console shows."""
    return {**tags, "Name": name}


def identity_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The :data:`IDENTITY_TAG_KEYS` of ``tags`` (the user's ``lmrun:tags`` left out)."""
    return {key: value for key, value in tags.items() if key in IDENTITY_TAG_KEYS}
