"""Routes with their own MTU on a VM: a path narrower than the VM's interface, taken into account up front.

The renderer names no cloud: the caller says which destinations need which MTU (on AWS, the inter-Region VPC
peering's 8,500 bytes for the other regions, :mod:`lmrun.aws.network.mtu`). ``route-mtu.sh`` installs the
routes through the default gateway at boot (before anything talks across them) and a timer re-applies them
every few minutes, in case the network manager (systemd-networkd, which owns the interface's DHCP routes)
flushed routes it did not configure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, sh_join, systemd_unit, vm_script

ROUTE_MTU_UNIT = "lmrun-route-mtu.service"
ROUTE_MTU_TIMER = "lmrun-route-mtu.timer"
MIN_MTU = 1280
"""IPv6's minimum link MTU; nothing in the mesh routes below it."""
MAX_MTU = 9001
"""EC2's jumbo-frame MTU, the largest an instance interface has."""


@dataclass(frozen=True)
class RouteMtu:
    """Send to ``destination`` (a CIDR) through the default gateway with packets of at most ``mtu`` bytes."""

    destination: str
    mtu: int

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Network(self.destination)
        except ValueError:
            raise ValueError(f"destination: {self.destination!r} is not an IPv4 CIDR") from None
        if isinstance(self.mtu, bool) or not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ValueError(f"mtu: {self.mtu!r} is not between {MIN_MTU} and {MAX_MTU}")


def route_mtu_command(routes: Sequence[RouteMtu]) -> list[str]:
    """argv of ``route-mtu.sh`` for ``routes``."""
    if not routes:
        raise ValueError("routes: empty")
    return [f"{SCRIPT_DIR}/route-mtu.sh", *(part for r in routes for part in (r.destination, str(r.mtu)))]


def route_mtu_files(routes: Sequence[RouteMtu]) -> list[WriteFile]:
    """The script, a oneshot unit that runs it once the network is up, and a timer that re-applies it."""
    if not routes:
        return []
    service = systemd_unit(
        {
            "Unit": [
                ("Description", "Routes with their path's MTU (" + ", ".join(r.destination for r in routes) + ")"),
                ("After", "network-online.target"),
                ("Wants", "network-online.target"),
            ],
            "Service": [("Type", "oneshot"), ("ExecStart", sh_join(route_mtu_command(routes)))],
        }
    )
    timer = systemd_unit(
        {
            "Unit": [("Description", "Re-apply the MTU routes")],
            "Timer": [("OnBootSec", "1min"), ("OnUnitActiveSec", "5min"), ("Unit", ROUTE_MTU_UNIT)],
            "Install": [("WantedBy", "timers.target")],
        }
    )
    return [
        vm_script("route-mtu.sh"),
        WriteFile(f"/etc/systemd/system/{ROUTE_MTU_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{ROUTE_MTU_TIMER}", timer),
    ]


def route_mtu_runcmd(routes: Sequence[RouteMtu]) -> list[list[str]]:
    """Set the routes now (first of the boot steps: before the node talks across them) and keep them set."""
    if not routes:
        return []
    return [
        ["systemctl", "daemon-reload"],
        ["systemctl", "start", ROUTE_MTU_UNIT],
        ["systemctl", "enable", "--now", ROUTE_MTU_TIMER],
    ]
