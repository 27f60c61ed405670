"""Path MTUs of the AWS fabric (EC2 User Guide, "Network maximum transmission unit (MTU) for your EC2
instance"): instances use jumbo frames (9,001 bytes) inside a VPC, but "traffic over an inter-region VPC
peering connection" is limited to 8,500 bytes, and "if packets are over their MTU limit, they are
fragmented, or they are dropped if the Don't Fragment flag is set" (Linux sets it on TCP).

The docs do not say that the peering returns ICMP "fragmentation needed" for such a drop, so the mesh does not
rely on path MTU discovery there: every AWS GPU node routes the AWS regions' pool at the peering's MTU
(:mod:`lmrun.render.routes`, the by-route MTU the same page suggests). Every inter-region connection has a node
in a spoke at one end (spokes hold GPU nodes only; peering is hub-and-spoke), and that node's route caps the
TCP segments of both directions (its advertised MSS is the route MTU minus 40).
"""

from __future__ import annotations

from lmrun.domain.addresses import REGION_POOL

INSTANCE_MTU = 9001
"""Jumbo frames: the MTU of current-generation instances inside a VPC (and of intra-region peering)."""
INTER_REGION_PEERING_MTU = 8500
"""The largest packet an inter-region VPC peering connection carries."""
PEERING_ROUTES: tuple[tuple[str, int], ...] = ((str(REGION_POOL), INTER_REGION_PEERING_MTU),)
"""(destination, MTU) routes an AWS node sets: every region's /16 (its own subnet's connected route stays 9,001)."""
