"""The mesh's address pools: where regions, sites, tunnels and the K3s pod/service networks live.

Layout of 10.0.0.0/8 (every block below is disjoint from every other):

=================  ===================================================================
10.42.0.0/16       K3s pods (K3s default ``--cluster-cidr``)
10.43.0.0/16       K3s services (K3s default ``--service-cidr``)
10.64.0.0/10       AWS regions: one /16 each, fixed by ``lmrun.aws.network.cidr_blocks``
10.128.0.0/10      the suggested range for non-AWS sites (GCP, external clouds, on-prem)
10.192.0.0/16      WireGuard tunnel addresses
=================  ===================================================================

A site keeps its own network: any private range (:data:`PRIVATE_RANGES`) that overlaps none of the other
blocks above, nor another site. The site range 10.128.0.0/10 only comes first in the tunnel addresses
(:func:`site_tunnel_address`), so a site there keeps the address it always had.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

K3S_POD_CIDR = ipaddress.IPv4Network("10.42.0.0/16")
K3S_SERVICE_CIDR = ipaddress.IPv4Network("10.43.0.0/16")
REGION_POOL = ipaddress.IPv4Network("10.64.0.0/10")
SITE_POOL = ipaddress.IPv4Network("10.128.0.0/10")
TUNNEL_POOL = ipaddress.IPv4Network("10.192.0.0/16")

RESERVED_BLOCKS: dict[str, ipaddress.IPv4Network] = {
    "k3s-pods": K3S_POD_CIDR,
    "k3s-services": K3S_SERVICE_CIDR,
    "aws-regions": REGION_POOL,
    "sites": SITE_POOL,
    "wireguard-tunnels": TUNNEL_POOL,
}

MESH_RANGES: dict[str, tuple[ipaddress.IPv4Network, str]] = {
    "k3s-pods": (K3S_POD_CIDR, "the K3s pod network (--cluster-cidr)"),
    "k3s-services": (K3S_SERVICE_CIDR, "the K3s service network (--service-cidr)"),
    "aws-regions": (REGION_POOL, "the AWS regions' VPCs (one fixed /16 per region, so a region added later fits)"),
    "wireguard-tunnels": (TUNNEL_POOL, "the WireGuard tunnel addresses"),
}
"""The reserved blocks no site may overlap (every one but the sites' own), with what each is for."""

PRIVATE_RANGES: dict[ipaddress.IPv4Network, str] = {
    ipaddress.IPv4Network("10.0.0.0/8"): "RFC 1918",
    ipaddress.IPv4Network("172.16.0.0/12"): "RFC 1918",
    ipaddress.IPv4Network("192.168.0.0/16"): "RFC 1918",
    ipaddress.IPv4Network("100.64.0.0/10"): "RFC 6598 shared address space",
}
"""The ranges a site's network may lie in. None is routed on the internet, so routing a site's range into the
tunnel takes no one's public addresses; AWS routes and security groups take any IPv4 CIDR, and GCP subnets
take exactly these (Google Cloud VPC docs, "Subnets": valid IPv4 ranges)."""


def overlapping_pairs(
    blocks: Iterable[tuple[str, ipaddress.IPv4Network]],
) -> list[tuple[str, str]]:
    """Every pair of named blocks that overlap, in input order (the check behind 'no two CIDRs overlap')."""
    items = list(blocks)
    return [
        (name_a, name_b)
        for i, (name_a, net_a) in enumerate(items)
        for name_b, net_b in items[i + 1 :]
        if net_a.overlaps(net_b)
    ]


def private_range_of(cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Network | None:
    """The private range (:data:`PRIVATE_RANGES`) holding ``cidr``; None for a public (or special) range."""
    return next((private for private in PRIVATE_RANGES if cidr.subnet_of(private)), None)


def mesh_overlaps(cidr: ipaddress.IPv4Network) -> list[tuple[ipaddress.IPv4Network, str]]:
    """The mesh ranges (:data:`MESH_RANGES`) that ``cidr`` overlaps, with what each is for."""
    return [(block, what) for block, what in MESH_RANGES.values() if cidr.overlaps(block)]


# --- tunnel addresses -------------------------------------------------------------------------------------

_SLOT_ORDER: tuple[ipaddress.IPv4Network, ...] = (
    SITE_POOL,
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("100.64.0.0/10"),
)
"""The private ranges in the order their /24s take tunnel addresses: the site range first (the addresses sites
there always had), the shared address space last. 10.0.0.0/8 counts only the /24s outside the reserved blocks."""

TUNNEL_SLOTS = TUNNEL_POOL.num_addresses - 3
"""Site addresses in the tunnel range: all but the network address, the hub's (.1) and the last one."""


def _slots(block: ipaddress.IPv4Network) -> int:
    return block.num_addresses >> 8


def _holes(block: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """Blocks inside ``block`` that hold no site (or were counted before it, the site range)."""
    return [reserved for reserved in RESERVED_BLOCKS.values() if reserved.subnet_of(block) and reserved != block]


def site_slot(cidr: ipaddress.IPv4Network) -> int:
    """The index of the site's first /24 among the /24s a site may use, in :data:`_SLOT_ORDER`: one number per
    /24, unique and stable (it depends on nothing but the site's own CIDR). ValueError for a CIDR no site may
    have (public, or inside a mesh range)."""
    first = int(cidr.network_address) >> 8
    offset = 0
    for block in _SLOT_ORDER:
        holes = _holes(block)
        if cidr.subnet_of(block):
            if any(cidr.overlaps(hole) for hole in holes):
                raise ValueError(f"{cidr} lies in a mesh range, where no site may be")
            below = sum(_slots(hole) for hole in holes if hole.network_address < cidr.network_address)
            return offset + first - (int(block.network_address) >> 8) - below
        offset += _slots(block) - sum(_slots(hole) for hole in holes)
    raise ValueError(f"{cidr} is not inside a private range ({', '.join(map(str, PRIVATE_RANGES))})")


def site_tunnel_address(cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """A site's address in the tunnel range, from its CIDR alone, so it never moves: 2 + :func:`site_slot`.

    The private ranges hold more /24s (69,120 outside the mesh ranges) than the tunnel range has addresses
    (:data:`TUNNEL_SLOTS`), so the slots wrap around: the top of 100.64.0.0/10 (from 100.113.253.0) shares
    addresses with the bottom of the site range (10.128.0.0 to 10.142.2.255). The spec refuses two sites of
    one mesh that share an address (:func:`lmrun.spec.sites.site_issues`).
    """
    return TUNNEL_POOL.network_address + 2 + site_slot(cidr) % TUNNEL_SLOTS


@dataclass(frozen=True)
class EarlierOverlap:
    """How a network of a list overlaps the ones before it: the first of them, and how many there are."""

    first: int
    count: int


def earlier_overlaps(networks: Sequence[ipaddress.IPv4Network]) -> dict[int, EarlierOverlap]:
    """For each network that overlaps an earlier one of ``networks``: the first such and how many.

    Two CIDR blocks overlap exactly when one contains the other, so each block is looked up under its at
    most 33 supernets: linear in the blocks, where comparing every pair (2,000 sites sharing one range: two
    million comparisons, and as many messages) is quadratic.
    """
    equal: dict[ipaddress.IPv4Network, list[int]] = defaultdict(list)
    """Block -> the earlier entries that are exactly it."""
    within: dict[ipaddress.IPv4Network, list[int]] = defaultdict(list)
    """Block -> the earlier entries inside it (itself included)."""
    found: dict[int, EarlierOverlap] = {}
    for index, network in enumerate(networks):
        supernets = [network.supernet(new_prefix=prefix) for prefix in range(network.prefixlen + 1)]
        containing = [other for supernet in supernets for other in equal.get(supernet, ())[:1]]
        count = sum(len(equal.get(supernet, ())) for supernet in supernets)
        inner = within.get(network, [])
        count += len(inner) - len(equal.get(network, ()))
        if count:
            found[index] = EarlierOverlap(min([*containing, *inner[:1]]), count)
        equal[network].append(index)
        for supernet in supernets:
            within[supernet].append(index)
    return found
