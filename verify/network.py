"""The interface between the cloud-neutral reachability walk and each cloud's network knowledge.

Why: how packets cross a VPC route table, a peering or a GCP firewall is knowledge of one cloud; how they
cross a WireGuard tunnel between the hub and a site, and which hosts serve a Kubernetes service, is not.
:mod:`lmrun.verify.reachability` (the core) walks packets and calls a :class:`NetworkModel` per cloud;
each cloud folder implements one (``aws/network_model.py``, ``gcp/network_model.py``), registered in
:mod:`lmrun.verify.network_models`. A model indexes its resources once, so every hop is a dictionary lookup.

The vocabulary both sides share lives here too: hosts, packets, dropped and undecidable hops, parsed
WireGuard configs and a longest-prefix-match table.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from lmrun.verify.resources import Snapshot, plain

if TYPE_CHECKING:
    from lmrun.verify.reachability import Fabric

Net = ipaddress.IPv4Network
MAX_HOPS = 16


class DroppedError(Exception):
    """A hop drops the packet; the message says where and why."""

    internal = True  # control flow of the walk, caught by it: never reaches the CLI


class UndecidableError(Exception):
    """A hop depends on a value the source does not hold (a secret or an id a preview cannot know)."""

    internal = True  # control flow of the walk, caught by it: never reaches the CLI


def net(value: Any) -> Net | None:
    """An IPv4 network from a CIDR or address; None when missing, unknown or not IPv4."""
    try:
        return ipaddress.IPv4Network(str(plain(value)), strict=False)
    except ValueError:
        return None


@dataclass(frozen=True)
class Host:
    """Where a packet starts or ends: an address range and where the cloud attaches it.

    Two hosts with the same :attr:`key` take the same walk (only their labels differ), so a path's verdict
    walks each pair of keys once, however many machines share them.
    """

    label: str
    location: str
    address: Net
    cloud: str
    """A registered model's cloud name, or :data:`EXTERNAL`."""
    where: Hashable = None
    """The cloud's attachment point (a subnet with security groups, a network with tags); opaque to the core."""
    site: str | None = None
    machine: str | None = None
    """The resource (or node) the host is; two hosts of one machine talk over localhost."""

    @property
    def key(self) -> tuple[Hashable, ...]:
        return (self.cloud, self.address, self.where, self.site)


EXTERNAL = "external"
"""The cloud of a host in an external site (its own network is not modelled)."""


@dataclass
class Packet:
    src: Net
    dst: Net
    port: int
    reply: bool
    hops: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"{self.src} -> {self.dst} tcp/{self.port}" + (" (reply)" if self.reply else "")


@dataclass
class WireGuardConfig:
    """A parsed wg-quick config: where it came from and its peers (name from ``# peer:``, AllowedIPs)."""

    source: str
    addresses: list[Net] = field(default_factory=list)
    peers: list[tuple[str, list[Net]]] = field(default_factory=list)

    def peer_for(self, address: Net) -> tuple[str, Net] | None:
        """Cryptokey routing: the peer whose AllowedIPs hold ``address`` (most specific wins)."""
        best: tuple[str, Net] | None = None
        for name, allowed in self.peers:
            for prefix in allowed:
                if address.subnet_of(prefix) and (best is None or prefix.prefixlen > best[1].prefixlen):
                    best = (name, prefix)
        return best


def parse_wireguard(text: str, source: str) -> WireGuardConfig:
    """The parts of a wg-quick config that decide forwarding: interface addresses and each peer's AllowedIPs."""
    config = WireGuardConfig(source)
    section, name = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        match = re.match(r"#\s*peer:\s*(\S+)", line)
        if match:
            name = match.group(1)
            continue
        if line.startswith("["):
            section = line.strip("[]").lower()
            if section == "peer":
                config.peers.append((name or f"peer {len(config.peers) + 1}", []))
                name = ""
            continue
        key, _, value = line.partition("=")
        nets = [n for n in (net(v.strip()) for v in value.split(",")) if n is not None]
        if section == "interface" and key.strip() == "Address":
            config.addresses += nets
        elif section == "peer" and key.strip() == "AllowedIPs":
            config.peers[-1][1].extend(nets)
    return config


def tunnel_peer(config: WireGuardConfig, packet: Packet, sender: str, dropped: str) -> str:
    """The peer whose tunnel ``sender`` puts the packet into (cryptokey routing on its destination), as a hop;
    raises :class:`DroppedError` with ``dropped`` when no peer's AllowedIPs hold it."""
    peer = config.peer_for(packet.dst)
    if peer is None:
        raise DroppedError(dropped)
    packet.hops.append(f"{sender}: WireGuard peer {peer[0]} (AllowedIPs {peer[1]})")
    return peer[0]


def protocol_admits_tcp(protocol: Any) -> bool:
    return str(protocol).lower() in ("-1", "all", "tcp", "6")


def port_in(spec: Any, port: int) -> bool:
    """Whether ``port`` is in a port spec (``"80"``, ``"30000-32767"``)."""
    low, _, high = str(spec).partition("-")
    try:
        return int(low) <= port <= int(high or low)
    except ValueError:
        return False


Entry = TypeVar("Entry")


class PrefixTable(Generic[Entry]):
    """Entries keyed by destination prefix; :meth:`covering` finds every entry whose prefix holds a range.

    Indexed by prefix length, so a lookup is at most 33 dictionary accesses however many routes a table
    holds (a hub route table carries one route per spoke region and site).
    """

    def __init__(self) -> None:
        self._by_length: dict[int, dict[int, list[tuple[Net, Entry]]]] = {}

    def add(self, destination: Net, entry: Entry) -> None:
        self._by_length.setdefault(destination.prefixlen, {}).setdefault(int(destination.network_address), []).append(
            (destination, entry)
        )

    def covering(self, address: Net) -> list[tuple[Net, Entry]]:
        """Entries whose prefix holds all of ``address``, longest prefix first, in insertion order within one."""
        found: list[tuple[Net, Entry]] = []
        start = int(address.network_address)
        for length in sorted(self._by_length, reverse=True):
            if length > address.prefixlen:
                continue
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF if length else 0
            found += self._by_length[length].get(start & mask, [])
        return found

    def __iter__(self) -> Any:
        for bucket in self._by_length.values():
            for entries in bucket.values():
                yield from entries


@dataclass(frozen=True)
class Hub:
    """A WireGuard hub: a forwarding machine with a config holding one peer per site."""

    name: str
    config: WireGuardConfig | None
    """None when the source does not show it (a preview shows secrets as ``[secret]``)."""
    model: NetworkModel
    handle: Hashable
    """The model's own reference to the machine."""


class Walk(Protocol):
    """What a model calls back into the core for: crossing a WireGuard tunnel."""

    fabric: Fabric

    def into_tunnel(self, router: str, config: WireGuardConfig, packet: Packet, target: Host, depth: int) -> None:
        """``router`` (a hub) puts the packet into the tunnel of the peer whose AllowedIPs hold its destination."""

    def to_hub(self, site: str, packet: Packet, target: Host, depth: int) -> None:
        """A site's gateway put the packet into its tunnel: the hub's end receives it."""


class NetworkModel(ABC):
    """One cloud's network, read from a snapshot: its hosts, and how a packet crosses it."""

    cloud: ClassVar[str]
    """The cloud's name as the ``nodes`` export spells it."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.snapshot: Snapshot = fabric.snapshot
        self.name = fabric.snapshot.name_of
        """A resource's name from its URN, for messages."""
        self.unresolved: list[str] = []
        """References this model could not resolve (``resource.property``): a walk that fails may be wrong."""

    # --- hosts ------------------------------------------------------------------------------------------
    @abstractmethod
    def location_hosts(self, location: str) -> list[Host] | None:
        """Client hosts of a region or site this cloud holds; None when it holds no network there."""

    @abstractmethod
    def node_hosts(self, node: str, info: Mapping[str, Any]) -> list[Host] | None:
        """Where a K3s node (an entry of the ``nodes`` export) runs; None when it is not this cloud's."""

    @abstractmethod
    def role_hosts(self, role: str) -> list[Host]:
        """Hosts of the mesh's own machines with this ``lmrun:role`` (``k3s-server``)."""

    # --- walking ----------------------------------------------------------------------------------------
    @abstractmethod
    def send(self, walk: Walk, source: Host, packet: Packet, target: Host) -> None:
        """Walk a packet that leaves ``source`` (a host of this cloud) towards ``target``."""

    @abstractmethod
    def holds_site(self, site: str) -> bool:
        """Whether the site's network is declared in this cloud (its gateway ends the site's tunnel)."""

    @abstractmethod
    def from_site_tunnel(self, walk: Walk, site: str, packet: Packet, target: Host, depth: int) -> None:
        """The site's gateway received the packet from its tunnel: walk it on inside the site's network."""

    @abstractmethod
    def hubs(self) -> list[Hub]:
        """The WireGuard hubs this cloud holds (forwarding machines with a config)."""

    @abstractmethod
    def from_hub_tunnel(self, walk: Walk, hub: Hub, packet: Packet, target: Host, depth: int) -> None:
        """The hub received the packet from a site's tunnel: walk it on from the hub into this cloud."""

    @abstractmethod
    def wireguard_texts(self) -> Iterable[tuple[str, Any]]:
        """(source, config text) of every WireGuard config a site's gateway of this cloud reads (text unknown
        when the source does not hold it)."""
