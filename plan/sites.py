"""Spec -> WireGuard plan: the hub gateway, each site's tunnel address and MTU, and the reachability model.

Reachability follows the topology (docs/architecture.md): the main region reaches every location and every location
reaches the main region. Nothing else flows: AWS peering is not transitive (spoke <-> spoke), a peering
drops packets whose destination or source lies outside the two VPCs (spoke <-> site through the hub), and
a site routes only the main region and the tunnel range into its tunnel (site <-> site).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from lmrun.clouds import SITE_CLOUDS
from lmrun.domain.addresses import TUNNEL_POOL, site_tunnel_address
from lmrun.domain.names import IMAGE_GATEWAY, IMAGE_SERVER
from lmrun.domain.tunnels import PERSISTENT_KEEPALIVE as DEFAULT_PERSISTENT_KEEPALIVE
from lmrun.plan.flow_logs import FlowLogsPlan, plan_flow_logs
from lmrun.plan.images import ImagePlan
from lmrun.spec.model import MeshSpec

HUB_HOST_OFFSET = 11
"""The hub gateway takes the 11th address of the main region's first subnet (the K3s server has the 10th)."""
GCP_GATEWAY_HOST_OFFSET = 10
"""A GCP site gateway's internal address inside the site CIDR (GCP reserves .0, .1 and the last two)."""

LocationKind = Literal["main", "spoke", "site"]


@dataclass(frozen=True)
class SitePlan:
    """One site: its network, its end of the tunnel, and (GCP) where its gateway runs."""

    name: str
    kind: str
    """A site cloud of :mod:`lmrun.clouds` or ``external``."""
    cidr: str
    tunnel_address: str
    mtu: int
    persistent_keepalive: int | None
    key_epoch: int
    gateway_ip: str
    project: str | None
    region: str | None
    zone: str | None
    gateway_machine_type: str
    gateway_image: str | None
    """Pinned image of the site's gateway VM (a site cloud's); None for an external site (no VM of ours)."""
    flow_logs: FlowLogsPlan | None = None
    """How the site's subnet logs its flows (a site cloud's; the mesh-wide ``lmrun:flowLogs``); None: off."""


@dataclass(frozen=True)
class HubPlan:
    """The WireGuard hub gateway in the main region."""

    region: str
    private_ip: str
    tunnel_address: str
    port: int
    instance_type: str
    image: str
    """Pinned AMI of the hub: the main region's Amazon Linux 2023 (the K3s server's)."""


@dataclass(frozen=True)
class WireGuardPlan:
    """Hub and sites; ``hub`` is None when the mesh has no site."""

    hub: HubPlan | None
    sites: dict[str, SitePlan]
    aws_routes: tuple[str, ...]
    """CIDRs a site routes into its tunnel: the main region and the tunnel range (nothing else is reachable)."""


def hub_tunnel_address() -> ipaddress.IPv4Address:
    return TUNNEL_POOL.network_address + 1


def plan_wireguard(spec: MeshSpec, main_cidr: str, main_first_subnet: str, images: ImagePlan) -> WireGuardPlan:
    flow_logs = plan_flow_logs(spec)
    sites = {
        site.name: SitePlan(
            name=site.name,
            kind=site.kind,
            cidr=str(site.cidr),
            tunnel_address=str(site_tunnel_address(site.cidr)),
            mtu=site.tunnel_mtu,
            persistent_keepalive=DEFAULT_PERSISTENT_KEEPALIVE if site.behind_nat else None,
            key_epoch=site.key_epoch,
            gateway_ip=str(site.cidr.network_address + GCP_GATEWAY_HOST_OFFSET),
            project=site.project,
            region=site.region,
            zone=site.gateway_zone,
            gateway_machine_type=site.gateway_machine_type,
            gateway_image=images.site(site.name, IMAGE_GATEWAY) if site.kind in SITE_CLOUDS else None,
            flow_logs=flow_logs if site.kind in SITE_CLOUDS else None,
        )
        for site in sorted(spec.sites, key=lambda s: s.name)
    }
    hub = None
    if sites:
        hub = HubPlan(
            region=spec.main_region,
            private_ip=str(ipaddress.IPv4Network(main_first_subnet).network_address + HUB_HOST_OFFSET),
            tunnel_address=str(hub_tunnel_address()),
            port=spec.wireguard.port,
            instance_type=spec.wireguard.instance_type,
            image=images.region(spec.main_region, IMAGE_SERVER),
        )
    return WireGuardPlan(hub=hub, sites=sites, aws_routes=(main_cidr, str(TUNNEL_POOL)))


@dataclass(frozen=True)
class Reachability:
    """Whether packets from clients in ``source`` reach ``target`` on ``port``, and why (not)."""

    source: str
    target: str
    port: int
    ok: bool
    reason: str


def location_reaches(source: tuple[str, LocationKind], target: tuple[str, LocationKind]) -> tuple[bool, str]:
    """The topology's answer for one hop, with the reason in words."""
    (src, src_kind), (dst, dst_kind) = source, target
    if src == dst:
        return True, f"same location ({src})"
    if src_kind == "main":
        via = "VPC peering" if dst_kind == "spoke" else "the WireGuard hub"
        return True, f"the main region reaches {dst} through {via}"
    if dst_kind == "main":
        via = "VPC peering" if src_kind == "spoke" else "its WireGuard tunnel"
        return True, f"{src} reaches the main region through {via}"
    if src_kind == "spoke" and dst_kind == "spoke":
        return False, f"{src} -> {dst}: VPC peering is not transitive (spokes peer only with the main region)"
    if src_kind == "spoke":
        return False, (
            f"{src} -> {dst}: the peering with the main region drops packets whose destination is outside the "
            "main VPC, so they never reach the WireGuard hub"
        )
    if dst_kind == "spoke":
        return False, (
            f"{src} -> {dst}: traffic from a site enters the main VPC with a site source address, which the "
            "peering to the spoke drops"
        )
    return False, f"{src} -> {dst}: a site routes only the main region into its tunnel (no site-to-site path)"
