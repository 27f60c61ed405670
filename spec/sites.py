"""Spec of non-AWS sites joined through WireGuard (``lmrun:sites``) and of the hub gateway."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from lmrun.aws.network.cidr_blocks import REGION_CIDRS
from lmrun.clouds import EXTERNAL_SITE, SITE_CLOUDS, SITE_KINDS
from lmrun.domain.addresses import (
    PRIVATE_RANGES,
    SITE_POOL,
    earlier_overlaps,
    mesh_overlaps,
    private_range_of,
    site_tunnel_address,
)
from lmrun.domain.ports import WIREGUARD_PORT as DEFAULT_LISTEN_PORT
from lmrun.domain.tunnels import MIN_TUNNEL_MTU, WIREGUARD_IPV4_OVERHEAD, tunnel_mtu
from lmrun.spec.cloud_rules import cloud_rules
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.images import SiteImages
from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import Name
from lmrun.spec.partial import Entry, entries
from lmrun.spec.values import InstanceType, NetworkText

if TYPE_CHECKING:
    SiteKind = str
else:
    SiteKind = Literal[SITE_KINDS]  # the registered site clouds and `external`

MAX_SITE_PREFIX = 24
"""Sites get at least a /24: the tunnel address of a site is derived from its first /24 (stable, unique)."""

_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_GCP_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")


_PRIVATE = ", ".join(f"{net} ({label})" for net, label in PRIVATE_RANGES.items())


def _site_cidr(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if private_range_of(value) is None:
        raise ValueError(
            f"{value} is not a private range; a site's network must lie inside one of {_PRIVATE}: the mesh routes "
            "a site's range into its tunnel, which would take public addresses away from their owners"
        )
    if value.prefixlen > MAX_SITE_PREFIX:
        raise ValueError(f"{value} is smaller than a /{MAX_SITE_PREFIX}; give the site at least a /{MAX_SITE_PREFIX}")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


SiteCidr = Annotated[ipaddress.IPv4Network, NetworkText, AfterValidator(_site_cidr)]
GcpProject = Annotated[str, _pattern(_GCP_PROJECT, "a GCP project id like 'my-project-123'")]
GcpRegion = Annotated[str, _pattern(_GCP_REGION, "a GCP region like 'us-central1'")]
GcpZone = Annotated[str, _pattern(_GCP_ZONE, "a GCP zone like 'us-central1-a'")]


class SiteSpec(SpecModel):
    """A non-AWS location joined to the main region through a WireGuard site-to-site tunnel."""

    name: Name = Field(description="Unique site name; resources and the join bundle are named after it.")
    kind: SiteKind = Field(
        description=f"{', '.join(f'`{c}`' for c in SITE_CLOUDS)}: declared here with the cloud's Pulumi provider; "
        f"`{EXTERNAL_SITE}`: any other cloud or on-prem, by join bundle."
    )
    cidr: SiteCidr = Field(
        description="The site's own network, a /24 or larger: any private range (10.0.0.0/8, 172.16.0.0/12, "
        "192.168.0.0/16, 100.64.0.0/10) clear of other sites and of the mesh's ranges (AWS regions "
        "10.64.0.0/10, K3s pods 10.42.0.0/16 and services 10.43.0.0/16, tunnels 10.192.0.0/16)."
    )
    project: GcpProject | None = Field(default=None, description="GCP project (kind `gcp`).")
    region: GcpRegion | None = Field(default=None, description="GCP region (kind `gcp`).")
    zone: GcpZone | None = Field(default=None, description="GCP zone of the gateway; default `<region>-a`.")
    underlay_mtu: int = Field(
        default=1500, ge=576, le=9001, description="MTU of the path between the site and the hub (internet: 1500)."
    )
    mtu: int | None = Field(
        default=None, description="Tunnel MTU; default underlay MTU minus WireGuard's 60 bytes. At least 1280."
    )
    behind_nat: bool = Field(default=True, description="The site's gateway sits behind NAT: send keepalives.")
    key_epoch: int = Field(default=0, ge=0, description="Bump to rotate this site's WireGuard keys (and nothing else).")
    gateway_machine_type: str = Field(default="e2-small", description="GCP machine type of the site gateway.")
    images: SiteImages | None = Field(
        default=None,
        description="Pinned images of the site's VMs (kind `gcp`): exact images, "
        "`projects/<project>/global/images/<name>` or its self-link, never a family. Pinned by hand: "
        "`lmrun images sync` prints the gcloud command that finds the current ones.",
    )

    STAND_INS: ClassVar[Mapping[str, Any]] = {"name": "stand-in", "kind": EXTERNAL_SITE, "cidr": str(SITE_POOL)}

    @property
    def tunnel_mtu(self) -> int:
        return self.mtu if self.mtu is not None else tunnel_mtu(self.underlay_mtu)

    @property
    def gateway_zone(self) -> str | None:
        return self.zone or (f"{self.region}-a" if self.region else None)


class WireGuardSpec(SpecModel):
    """The hub gateway in the main region (created when any site exists)."""

    port: int = Field(
        default=DEFAULT_LISTEN_PORT, ge=1024, le=65535, description="UDP port of the hub (the only world-open port)."
    )
    instance_type: InstanceType = Field(default="t3.small", description="EC2 instance type of the hub gateway.")


def _cloud_issues(site: SiteSpec, where: tuple[str | int, ...]) -> list[ConfigIssue]:
    """The site's cloud checks its own fields; fields of other clouds must stay unset."""
    owners = {cloud: cloud_rules(cloud) for cloud in SITE_CLOUDS}
    issues = owners[site.kind].site_issues(site, where) if site.kind in owners else []
    own = set(owners[site.kind].site_fields) if site.kind in owners else set()
    for field in sorted({field for rules in owners.values() for field in rules.site_fields} - own):
        if getattr(site, field) is not None:
            users = " or ".join(f"{r.label} sites (kind: {c})" for c, r in owners.items() if field in r.site_fields)
            issues.append(ConfigIssue(config_path((*where, field)), f"only applies to {users}"))
    return issues


def _declared_regions(raw: Mapping[str, Any]) -> list[tuple[str, ipaddress.IPv4Network, str]]:
    """(config path, VPC CIDR, region) of every known region the config declares, the main region first."""
    main, spokes = raw.get("mainRegion"), raw.get("regions")
    declared = [(config_path(("mainRegion",)), main)]
    declared += [(config_path(("regions", i)), r) for i, r in enumerate(spokes if isinstance(spokes, list) else [])]
    return [(path, REGION_CIDRS[r], r) for path, r in declared if isinstance(r, str) and r in REGION_CIDRS]


def _mesh_range_issues(site: SiteSpec, where: tuple[str | int, ...], raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """The site's network against the mesh's own ranges: a declared region's VPC is named with its config
    path; the rest of each reserved block with what it is for."""
    path = config_path((*where, "cidr"))
    regions = [(p, vpc, r) for p, vpc, r in _declared_regions(raw) if site.cidr.overlaps(vpc)]
    issues = [ConfigIssue(path, f"{site.cidr} overlaps {vpc}, the VPC of {r} ({p})") for p, vpc, r in regions]
    for block, what in mesh_overlaps(site.cidr):
        if not (regions and any(vpc.subnet_of(block) for _, vpc, _ in regions)):
            issues.append(ConfigIssue(path, f"{site.cidr} overlaps {block}, reserved for {what}"))
    return issues


def _tunnel_issues(
    index: int, site: SiteSpec, taken: dict[ipaddress.IPv4Address, tuple[int, SiteSpec]]
) -> list[ConfigIssue]:
    """A site whose tunnel address an earlier site already has (only where the slots wrap around:
    :func:`lmrun.domain.addresses.site_tunnel_address`); records the site's address in ``taken``."""
    tunnel = site_tunnel_address(site.cidr)
    other_index, other = taken.setdefault(tunnel, (index, site))
    if other_index == index or site.cidr.overlaps(other.cidr):  # overlapping sites are reported as such
        return []
    return [
        ConfigIssue(
            config_path(("sites", index, "cidr")),
            f"{site.cidr} would share the tunnel address {tunnel} with lmrun:sites[{other_index}] ({other.name}, "
            f"{other.cidr}): the tunnel range has fewer addresses than the private ranges have /24s; give one of "
            "the two sites another range",
        )
    ]


def site_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules across sites and between sites, regions and nodes (each site's sound fields, even when others
    are broken)."""
    issues: list[ConfigIssue] = []
    seen_names: dict[str, int] = {}
    named: list[Entry[SiteSpec]] = []
    tunnels: dict[ipaddress.IPv4Address, tuple[int, SiteSpec]] = {}
    for entry in entries(raw.get("sites"), SiteSpec):
        site, index = entry.spec, entry.index
        where = ("sites", index)
        if entry.sound("name"):
            if site.name in seen_names:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "name")), f"{site.name!r} is already lmrun:sites[{seen_names[site.name]}]"
                    )
                )
                continue
            seen_names[site.name] = index
        named.append(entry)
        if entry.sound("cidr"):
            range_issues = _mesh_range_issues(site, where, raw)
            issues.extend(range_issues)
            if not range_issues and entry.sound("name"):
                issues.extend(_tunnel_issues(index, site, tunnels))
        if entry.sound("kind"):
            issues.extend(_cloud_issues(site, where))
        if not entry.sound("mtu", "underlay_mtu"):
            continue
        if site.tunnel_mtu < MIN_TUNNEL_MTU:
            field = "mtu" if site.mtu is not None else "underlayMtu"
            issues.append(
                ConfigIssue(
                    config_path((*where, field)),
                    f"the tunnel MTU would be {site.tunnel_mtu}, below the {MIN_TUNNEL_MTU} IPv4/IPv6 minimum",
                )
            )
        elif site.mtu is not None and site.mtu > tunnel_mtu(site.underlay_mtu):
            issues.append(
                ConfigIssue(
                    config_path((*where, "mtu")),
                    f"{site.mtu} does not fit the underlay ({site.underlay_mtu}) minus WireGuard's "
                    f"{WIREGUARD_IPV4_OVERHEAD} bytes; packets would fragment",
                )
            )
    # One line per site that overlaps earlier ones, naming the first (never one line per pair).
    with_cidr = [entry for entry in named if entry.sound("cidr")]
    for position, overlap in earlier_overlaps([entry.spec.cidr for entry in with_cidr]).items():
        later, first = with_cidr[position], with_cidr[overlap.first]
        what = f"{first.spec.name}, {first.spec.cidr}" if first.sound("name") else str(first.spec.cidr)
        others = f" and {overlap.count - 1} other earlier site(s)" if overlap.count > 1 else ""
        issues.append(
            ConfigIssue(
                config_path(("sites", later.index, "cidr")),
                f"{later.spec.cidr} overlaps lmrun:sites[{first.index}] ({what}){others}",
            )
        )
    return issues


def site_names(raw: Mapping[str, Any]) -> dict[str, SiteSpec]:
    """Sites by name, for node placement checks: every site whose name and kind are sound (the first of a
    name)."""
    sites: dict[str, SiteSpec] = {}
    for entry in entries(raw.get("sites"), SiteSpec):
        if entry.sound("name", "kind"):
            sites.setdefault(entry.spec.name, entry.spec)
    return sites


def unsettled_sites(raw: Mapping[str, Any]) -> frozenset[str]:
    """Names of sites whose kind is broken: what a node there may be is unknown until it is fixed."""
    return frozenset(
        entry.spec.name
        for entry in entries(raw.get("sites"), SiteSpec)
        if entry.sound("name") and not entry.sound("kind")
    )
