"""Spec -> the images the mesh boots: which pinned image each VM role needs where, and a refusal (with the
pin's config path and how to pin it) for every one that is missing.

Nothing here looks an image up, and neither does the program: an image a ``.../latest`` lookup resolved on
every run would replace the K3s server and the WireGuard hub (API and every tunnel down) and roll every GPU
node the day its publisher releases a new one. Pins change only when an operator changes the stack file
(``lmrun images sync`` for AWS), so ``pulumi preview`` shows an upgrade as the config change it is.

What needs a pin:

- the main region: ``server`` (the K3s server, the Phoenix node, the WireGuard hub), always;
- every AWS region with GPU nodes: ``gpu``;
- every site of a site cloud: ``gateway``, and ``gpu`` when the site has nodes.

External sites run no VM of the mesh: nothing to pin. Pins nothing needs are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lmrun.clouds import HUB_CLOUD, SITE_CLOUDS
from lmrun.domain.names import IMAGE_GATEWAY, IMAGE_GPU, IMAGE_SERVER
from lmrun.spec.cloud_rules import ConfigLocation, cloud_rules
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model import MeshSpec


@dataclass(frozen=True)
class ImageNeed:
    """One image the mesh boots: where, for which VM role, and where the stack file pins it."""

    location: str
    """An AWS region of the mesh, or a site."""
    role: str
    """``server``, ``gpu`` or ``gateway`` (:mod:`lmrun.domain.names`)."""
    cloud: str
    """Whose image it is: the hub cloud for regions, the site's cloud for sites."""
    where: ConfigLocation
    """Config location of the pin, e.g. ``("images", "us-east-1", "server")``."""
    users: str
    """Who boots it, in words (for messages)."""
    pinned: str | None
    """The pinned id, or None when the stack pins none."""

    @property
    def is_site(self) -> bool:
        return self.cloud != HUB_CLOUD

    @property
    def path(self) -> str:
        """The pin's config path, e.g. ``lmrun:images.us-east-1.server``."""
        return config_path(self.where)


def _main_users(spec: MeshSpec) -> str:
    users = ["the K3s server"]
    if spec.phoenix.enabled and spec.phoenix.placement == "node":
        users.append("the Phoenix node")
    if spec.sites:
        users.append("the WireGuard hub")
    return " and ".join([", ".join(users[:-1]), users[-1]] if len(users) > 1 else users)


def _nodes(names: list[str]) -> str:
    return f"GPU node{'s' if len(names) > 1 else ''} {', '.join(sorted(names))}"


def image_needs(spec: MeshSpec) -> list[ImageNeed]:
    """Every image the mesh boots (main region first, then AWS regions by name, then sites in config order)."""
    main = spec.main_region

    def region_need(region: str, role: str, users: str) -> ImageNeed:
        pins = spec.images.get(region)
        pinned: str | None = getattr(pins, role) if pins is not None else None
        return ImageNeed(region, role, HUB_CLOUD, ("images", region, role), f"{users} in {region}", pinned)

    region_nodes: dict[str, list[str]] = {}
    site_nodes: dict[str, list[str]] = {}
    for node in spec.nodes:
        if node.site is not None:
            site_nodes.setdefault(node.site, []).append(node.name)
        elif node.region is not None:
            region_nodes.setdefault(node.region, []).append(node.name)

    needs = [region_need(main, IMAGE_SERVER, _main_users(spec))]
    for region in sorted(region_nodes, key=lambda r: (r != main, r)):
        needs.append(region_need(region, IMAGE_GPU, _nodes(region_nodes[region])))
    for index, site in enumerate(spec.sites):
        if site.kind not in SITE_CLOUDS:
            continue
        roles = {IMAGE_GATEWAY: f"the WireGuard gateway of site {site.name}"}
        if site.name in site_nodes:
            roles[IMAGE_GPU] = f"{_nodes(site_nodes[site.name])} of site {site.name}"
        for role, users in roles.items():
            pinned = getattr(site.images, role) if site.images is not None else None
            needs.append(ImageNeed(site.name, role, site.kind, ("sites", index, "images", role), users, pinned))
    return needs


@dataclass(frozen=True)
class ImagePlan:
    """The pinned image of every VM role the mesh runs, by where it runs (only the pins it uses)."""

    regions: Mapping[str, Mapping[str, str]]
    """AWS region -> role -> AMI id."""
    sites: Mapping[str, Mapping[str, str]]
    """Site -> role -> the site cloud's image."""

    def region(self, region: str, role: str) -> str:
        """The AMI of ``role`` in ``region`` ("" only in a plan :func:`plan_images` refused)."""
        return self.regions.get(region, {}).get(role, "")

    def site(self, site: str, role: str) -> str:
        """The image of ``role`` in ``site`` ("" only in a plan :func:`plan_images` refused)."""
        return self.sites.get(site, {}).get(role, "")

    def export(self) -> dict[str, dict[str, dict[str, str]]]:
        """``{"regions": {...}, "sites": {...}}``, plain (the ``images`` stack output)."""
        return {
            "regions": {region: dict(roles) for region, roles in self.regions.items()},
            "sites": {site: dict(roles) for site, roles in self.sites.items()},
        }


def plan_images(spec: MeshSpec, *, stack: str) -> tuple[ImagePlan, list[ConfigIssue]]:
    """The pins the mesh uses, and one issue per missing pin (its config path, who needs it, how to pin it;
    ``stack`` names the stack in the sync command the message suggests)."""
    regions: dict[str, dict[str, str]] = {}
    sites: dict[str, dict[str, str]] = {}
    issues: list[ConfigIssue] = []
    for need in image_needs(spec):
        if need.pinned is None:
            what = "image" if need.is_site else "AMI"
            hint = cloud_rules(need.cloud).pin_hint(need.role, stack)
            issues.append(ConfigIssue(need.path, f"no {what} pinned for {need.users}; {hint}"))
            continue
        (sites if need.is_site else regions).setdefault(need.location, {})[need.role] = need.pinned
    return ImagePlan(regions=regions, sites=sites), issues
