"""What the spec asks of a cloud: the checks that depend on where a node or a site lives.

Each cloud's ``<pkg>.rules`` module exposes ``RULES`` implementing :class:`CloudRules`; the spec reaches it
by cloud name through :func:`lmrun.clouds.cloud_module`, never by comparing names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from lmrun.aws.instances.availability import CATALOG_ONLY, Availability
from lmrun.clouds import cloud_module
from lmrun.spec.errors import ConfigIssue

if TYPE_CHECKING:
    from lmrun.spec.nodes import NodeSpec
    from lmrun.spec.sites import SiteSpec

ConfigLocation = tuple[str | int, ...]


@dataclass(frozen=True)
class NodeContext:
    """What a node's checks may look at besides the node: the mesh's AWS regions, its valid sites, and the hub
    cloud's instance offerings as the stack records them (``lmrun:offerings``; the catalog where it records none)."""

    mesh_regions: frozenset[str]
    sites: Mapping[str, SiteSpec]
    offerings: Availability = CATALOG_ONLY


class CloudRules(Protocol):
    """Config checks of one cloud."""

    label: str
    """How messages name the cloud, e.g. ``GCP``."""
    site_fields: tuple[str, ...]
    """Fields of :class:`~lmrun.spec.sites.SiteSpec` that only this cloud's sites use (empty for the hub)."""

    def node_issues(self, node: NodeSpec, where: ConfigLocation, context: NodeContext) -> list[ConfigIssue]:
        """Problems with a node placed in this cloud (its location, its GPU offered there)."""
        ...

    def site_issues(self, site: SiteSpec, where: ConfigLocation) -> list[ConfigIssue]:
        """Problems with a site of this cloud (its cloud-specific fields)."""
        ...

    def pin_hint(self, role: str, stack: str) -> str:
        """How an operator pins this cloud's current image for VM ``role`` (said when a pin is missing)."""
        ...


def cloud_rules(cloud: str) -> CloudRules:
    return cast(CloudRules, cloud_module(cloud, "rules").RULES)
