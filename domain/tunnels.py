"""WireGuard tunnel facts: MTU arithmetic and keepalive (one place: spec, plan, renderers and components agree)."""

from __future__ import annotations

DEFAULT_UNDERLAY_MTU = 1500
"""The internet path MTU between a site and the hub's Elastic IP (jumbo frames stop at the VPC edge)."""

WIREGUARD_IPV4_OVERHEAD = 60
"""Outer IPv4 header (20) + UDP header (8) + WireGuard data header and auth tag (16 + 16)."""

MIN_TUNNEL_MTU = 1280
"""IPv6's minimum link MTU: Linux drops IPv6 from a link below it, and WireGuard may carry IPv6."""

MAX_MTU = 65535

IPV4_ICMP_ECHO_OVERHEAD = 28
"""IPv4 header (20) + ICMP echo header (8): ``ping -s`` payload = MTU - 28."""


def tunnel_mtu(underlay_mtu: int = DEFAULT_UNDERLAY_MTU) -> int:
    """The tunnel MTU that fits one WireGuard packet in one underlay packet (IPv4 underlay)."""
    return underlay_mtu - WIREGUARD_IPV4_OVERHEAD


def underlay_mtu(tunnel: int) -> int:
    """The underlay MTU a tunnel of this MTU needs (its packets plus WireGuard's overhead)."""
    return tunnel + WIREGUARD_IPV4_OVERHEAD


PERSISTENT_KEEPALIVE = 25
"""Seconds; below the ~30 s UDP idle timeout of common NATs, the value the WireGuard docs suggest."""
