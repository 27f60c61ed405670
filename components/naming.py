"""Small helpers for resource names and tags, shared by every component."""

from __future__ import annotations

import re
from collections.abc import Mapping


def slug(key: str) -> str:
    """A stable key (region, AZ id, node name) as a resource-name fragment: lowercase, [a-z0-9-]."""
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def with_name(tags: Mapping[str, str], name: str) -> dict[str, str]:
    """Tags plus the ``Name`` tag the AWS console shows."""
    return {**tags, "Name": name}
