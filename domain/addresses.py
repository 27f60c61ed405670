"""The mesh's address pools: where regions, sites, tunnels and the K3s pod/service networks live.

Layout of 10.0.0.0/8 (every block below is disjoint from every other):

=================  ===================================================================
10.42.0.0/16       K3s pods (K3s default ``--cluster-cidr``)
10.43.0.0/16       K3s services (K3s default ``--service-cidr``)
10.64.0.0/10       AWS regions: one /16 each, fixed by ``lmrun.aws.network.cidr_blocks``
10.128.0.0/10      non-AWS sites (GCP, external clouds, on-prem), chosen per site
10.192.0.0/16      WireGuard tunnel addresses
=================  ===================================================================
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
