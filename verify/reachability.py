"""Static reachability from a stack's resources: do packets of each planned path actually flow?

``plan/sites.py`` answers reachability from the topology *model*; this module answers it from what the
program declared (a mock recording, a preview or a state export: :mod:`lmrun.verify.sources`), by walking
the network the way the clouds forward IPv4. The walk here is cloud-neutral; each cloud's forwarding lives
in its folder behind :class:`lmrun.verify.network.NetworkModel`:

- **AWS** (``aws/network_model.py``): route tables (longest prefix; the VPC's ``local`` route implicit; a
  subnet without association uses the VPC's main table), VPC peering (not transitive), security groups
  (stateful; standalone rules and inline ``ingress``/``egress``), forwarding instances.
- **GCP** (``gcp/network_model.py``): subnetwork and custom routes (longest prefix, then priority), ingress
  firewalls (stateful; lowest priority number decides, deny wins ties), forwarding instances.
- **WireGuard** (here): the hub puts a packet into the tunnel of the peer whose ``AllowedIPs`` hold its
  destination; the far end accepts it only when its source is in *its* peer's ``AllowedIPs``. Configs come
  from the clouds (the hub's SSM parameter, a GCP site's Secret Manager version) and from the external
  sites' join bundles (a stack output). The tunnel's underlay (UDP between public addresses) is taken as up.
- Replies (TCP): the same walk back from every replica, without security-group or firewall checks (they
  are stateful), but with routes, peering and WireGuard checks — asymmetric routing breaks TCP.

Not modelled (``NOT_MODELLED``, printed under the plan's reachability table): network ACLs (the mesh declares
none: the default NACL allows all), an external site's own network and firewall (beyond its WireGuard config),
OS firewalls on the VMs, and the underlay of the tunnels. Packets and hosts are address *ranges*: a host whose
address is not fixed stands for every address of every subnet it can launch in.

**Cost.** Every index is built once per stack. Hosts that share a cloud attachment and an address range
(every GPU node of one subnet, say) take the same walk, so a path walks each pair of such classes once
(memoized across paths), then walks one real pair again for the words of its verdict: linear in nodes and
regions, where walking every client host against every replica was quadratic.

**What a source cannot tell.** A preview has no ids for what it will create (references resolve through
``propertyDependencies``) and shows secrets as ``[secret]``: WireGuard configs are secrets, so paths through
a tunnel are *undecidable* from a preview (``ok`` is None, with the reason), as is a failing walk when
some reference could not be resolved.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lmrun.mock_engine import Recording
from lmrun.verify import tokens
from lmrun.verify.network import (
    EXTERNAL,
    DroppedError,
    Host,
    Hub,
    NetworkModel,
    Packet,
    UndecidableError,
    WireGuardConfig,
    net,
    parse_wireguard,
    tunnel_peer,
)
from lmrun.verify.network_models import network_models
from lmrun.verify.replicas import Replicas
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown, plain
from lmrun.verify.sources import snapshot_of

__all__ = [
    "NOT_MODELLED",
    "DroppedError",
    "Fabric",
    "Host",
    "PathVerdict",
    "UndecidableError",
    "check_path",
    "parse_wireguard",
    "reachability_from_resources",
    "walk_hosts",
]

NOT_MODELLED = (
    "not modelled: network ACLs (none are declared; the default NACL allows all), an external site's own "
    "network and firewall, OS firewalls, the tunnels' internet underlay"
)
K3S_API = "k3s-api"
K3S_SERVER_ROLE = "k3s-server"


@dataclass(frozen=True)
class PathVerdict:
    """Whether packets of one planned path flow through the resources, and why (not)."""

    source: str
    target: str
    port: int
    ok: bool | None
    """None: the source (a preview) does not hold what the walk needs; the reason says what."""
    reason: str
    """On failure: the first blocking hop, in words. On success: the ways the packets take."""
    hops: tuple[str, ...] = ()
    """The walk that decided (the failing one, or the last successful one)."""

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "port": self.port, "ok": self.ok, "reason": self.reason}


Value = TypeVar("Value")


def _memoized(method: Callable[[Fabric, str], Value]) -> Callable[[Fabric, str], Value]:
    """A one-argument method computed once per argument and per instance (kept in the instance, so it goes
    with it: ``functools.cache`` on a method would keep every Fabric alive)."""
    slot = f"_memo_{method.__name__}"

    @functools.wraps(method)
    def memoized(self: Fabric, key: str) -> Value:
        memo: dict[str, Value] = self.__dict__.setdefault(slot, {})
        if key not in memo:
            memo[key] = method(self, key)
        return memo[key]

    return memoized


class Fabric:
    """A stack's network as the walk reads it: one model per cloud, the sites, and the hosts of every
    location, node and service (each computed once)."""

    def __init__(self, source: Snapshot | Recording | Sequence[Resource], exports: Mapping[str, Any] | None = None):
        self.snapshot = snapshot_of(source, exports)
        self.exports = {key: plain(value) for key, value in self.snapshot.outputs.items()}
        self.sites: dict[str, dict[str, Any]] = _mapping(self.exports.get("sites"))
        self.regions: dict[str, dict[str, Any]] = _mapping(self.exports.get("regions"))
        self.nodes: dict[str, dict[str, Any]] = _mapping(self.exports.get("nodes"))
        self.models: list[NetworkModel] = [model(self) for model in network_models()]
        self.by_cloud = {model.cloud: model for model in self.models}
        self._site_wireguard: dict[str, tuple[WireGuardConfig | None, str | None]] = {}
        self.walks: dict[tuple[Hashable, Hashable, int], _Outcome] = {}
        """Outcomes of the walks between two classes of hosts on a port, shared by every path."""

    @property
    def unresolved(self) -> list[str]:
        return [ref for model in self.models for ref in model.unresolved]

    # --- sites ------------------------------------------------------------------------------------------
    def site_cidr(self, site: str) -> Any:
        return net((self.sites.get(site) or {}).get("cidr"))

    @_memoized
    def site_model(self, site: str) -> NetworkModel | None:
        """The cloud model that holds the site's network (None: an external site)."""
        return next((model for model in self.models if model.holds_site(site)), None)

    def site_wireguard(self, site: str) -> WireGuardConfig | None:
        """A site's own config: the one (from a cloud's secret, or the external site's join bundle) whose
        interface address is the site's tunnel address. Raises :class:`UndecidableError` when the source
        does not hold the configs (a preview shows secrets as ``[secret]``; it has no stack outputs)."""
        if site not in self._site_wireguard:
            self._site_wireguard[site] = self._find_site_wireguard(site)
        config, undecidable = self._site_wireguard[site]
        if undecidable:
            raise UndecidableError(undecidable)
        return config

    def _find_site_wireguard(self, site: str) -> tuple[WireGuardConfig | None, str | None]:
        tunnel = net((self.sites.get(site) or {}).get("tunnel_address"))
        candidates = [text for model in self.models for text in model.wireguard_texts()]
        bundles = self.exports.get("joinBundles")
        bundle = plain(bundles.get(site)) if isinstance(bundles, Mapping) else None
        if isinstance(bundle, Mapping):
            candidates.append((f"joinBundles[{site}]", plain(bundle.get("config"))))
        unknown = []
        for source, text in candidates:
            if isinstance(text, str) and not is_unknown(text) and "[Interface]" in text:
                config = parse_wireguard(text, source)
                if tunnel is not None and tunnel in config.addresses:
                    return config, None
            elif text is None or is_unknown(text):
                unknown.append(source)
        if unknown:
            return None, f"site {site}'s WireGuard config may be one of {', '.join(unknown)}, which this " + (
                f"{self.snapshot.source} does not show (a secret)"
            )
        if self.site_model(site) is None and "joinBundles" not in self.exports:
            return None, f"external site {site}'s WireGuard config is the joinBundles stack output, which this " + (
                f"{self.snapshot.source} does not hold"
            )
        return None, None

    @functools.cached_property
    def hubs(self) -> list[Hub]:
        return [hub for model in self.models for hub in model.hubs()]

    # --- hosts ------------------------------------------------------------------------------------------
    @_memoized
    def location_hosts(self, location: str) -> list[Host]:
        """Clients in a location: its machines (routers excluded); a location without any stands for a host
        in each of its subnets."""
        if location in self.sites:
            model = self.site_model(location)
            if model is not None:
                return model.location_hosts(location) or []
            cidr = self.site_cidr(location)
            return [Host(f"a host of {location}", location, cidr, EXTERNAL, site=location)] if cidr else []
        for model in self.models:
            hosts = model.location_hosts(location)
            if hosts is not None:
                return hosts
        return []

    @_memoized
    def location_classes(self, location: str) -> _Classes:
        """The location's client hosts grouped by walk (computed once, shared by every path from there)."""
        return _Classes(self.location_hosts(location), "client")

    @_memoized
    def replica_classes(self, service: str) -> _Classes:
        replicas = self.replicas(service)
        return _Classes(replicas if isinstance(replicas, list) else [], "server")

    @_memoized
    def machine_hosts(self, node: str) -> list[Host]:
        """Where a K3s node (``lmrun.io/node``) runs, asked of each cloud; a node of a site no cloud holds
        runs somewhere in the external site."""
        info = self.nodes.get(node) or {}
        for model in self.models:
            hosts = model.node_hosts(node, info)
            if hosts is not None:
                return hosts
        site = info.get("site")
        if not site:
            return []
        cidr = self.site_cidr(str(site))
        return [Host(f"node {node}", str(site), cidr, EXTERNAL, site=str(site), machine=node)] if cidr else []

    @functools.cached_property
    def _services(self) -> dict[str, Resource]:
        found: dict[str, Resource] = {}
        for service in self.snapshot.of_type(tokens.K8S_SERVICE):
            found.setdefault(str(get(service.inputs, "metadata", "name")), service)
        return found

    @functools.cached_property
    def _replicas(self) -> Replicas:
        return Replicas(self.snapshot)

    @_memoized
    def replicas(self, service: str) -> list[Host] | str:
        """Every replica of a service (the machines its readiness DaemonSet selects), or why none can be placed."""
        if service == K3S_API:
            hosts = [host for model in self.models for host in model.role_hosts(K3S_SERVER_ROLE)]
            return hosts or "no K3s server instance (lmrun:role=k3s-server) is recorded"
        found = self._services.get(f"lmrun-svc-{service}")
        if found is None:
            return f"no Kubernetes Service lmrun-svc-{service} is recorded"
        selector = get(found.inputs, "spec", "selector")
        nodes = self._replicas.nodes(selector if isinstance(selector, Mapping) else {})
        if not nodes:
            return f"no readiness DaemonSet of Service lmrun-svc-{service} selects a recorded machine"
        hosts = []
        for node in sorted(set(nodes)):
            placed = self.machine_hosts(node)
            if not placed:
                return f"replica node {node} of {service} is not found among the recorded machines"
            hosts += placed
        return hosts


def _mapping(value: Any) -> dict[str, Any]:
    value = plain(value)
    return dict(value) if isinstance(value, Mapping) else {}


class Walker:
    """One packet's walk through the fabric; raises :class:`DroppedError` at the first hop that drops it.
    The clouds' hops are their models'; the tunnels between the hub and the sites are walked here."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric

    def send(self, source: Host, target: Host, packet: Packet) -> None:
        if source.cloud != EXTERNAL:
            self.fabric.by_cloud[source.cloud].send(self, source, packet, target)
            return
        site = str(source.site)
        config = self.fabric.site_wireguard(site)
        if config is None:
            raise DroppedError(f"no WireGuard config of external site {site} is recorded")
        dropped = (
            f"external site {site} routes nothing for {packet.dst} into its tunnel (no AllowedIPs "
            f"of {config.source} include it)"
        )
        tunnel_peer(config, packet, site, dropped)
        self.to_hub(site, packet, target, 0)

    def into_tunnel(self, router: str, config: WireGuardConfig, packet: Packet, target: Host, depth: int) -> None:
        dropped = f"{router} has no WireGuard peer whose AllowedIPs include {packet.dst} ({config.source})"
        site = tunnel_peer(config, packet, router, dropped)
        fabric = self.fabric
        if site not in fabric.sites:
            raise DroppedError(f"the hub's WireGuard peer {site} is not a site of the stack")
        site_config = fabric.site_wireguard(site)
        if site_config is None:
            raise DroppedError(f"no WireGuard config of site {site} is recorded")
        accepted = site_config.peer_for(packet.src)
        if accepted is None:
            raise DroppedError(
                f"site {site} drops {packet.text} from the tunnel: its source is in no AllowedIPs of its "
                f"peers ({site_config.source})"
            )
        packet.hops.append(f"site {site} accepts it from the tunnel (AllowedIPs {accepted[1]})")
        model = fabric.site_model(site)
        if model is not None:
            model.from_site_tunnel(self, site, packet, target, depth)
            return
        cidr = fabric.site_cidr(site)  # external site: its own LAN is not modelled
        if cidr is None or not packet.dst.subnet_of(cidr) or target.site != site:
            raise DroppedError(f"{packet.dst} is not inside external site {site} ({cidr}); it routes nothing onwards")
        packet.hops.append(f"delivered to {target.label} (the external site's own network is not modelled)")

    def to_hub(self, site: str, packet: Packet, target: Host, depth: int) -> None:
        hubs = self.fabric.hubs
        if not hubs:
            raise DroppedError("no WireGuard hub instance is recorded in the main region")
        hub = hubs[0]
        if hub.config is None:
            raise UndecidableError(
                f"the WireGuard hub {hub.name}'s config is not in this {self.fabric.snapshot.source} (a secret)"
            )
        allowed = next((nets for name, nets in hub.config.peers if name == site), None)
        if allowed is None:
            raise DroppedError(f"the hub's WireGuard config ({hub.config.source}) has no peer for site {site}")
        if not any(packet.src.subnet_of(n) for n in allowed):
            raise DroppedError(
                f"the hub drops {packet.text} from site {site}'s tunnel: the source is outside the "
                f"site's AllowedIPs ({', '.join(map(str, allowed))})"
            )
        packet.hops.append(f"{hub.name} accepts it from {site}'s tunnel")
        hub.model.from_hub_tunnel(self, hub, packet, target, depth)


@dataclass(frozen=True)
class _Outcome:
    """One walk of a class pair, both ways: the first blocking hop (None: it flows) and the ways taken."""

    blocked: str | None
    undecidable: bool
    ways: frozenset[str]


def _walk(fabric: Fabric, host: Host, replica: Host, port: int) -> tuple[_Outcome, tuple[str, ...]]:
    """Packets from ``host`` to ``replica`` and back: the outcome and the hops of the deciding walk."""
    walker = Walker(fabric)
    ways: set[str] = set()
    hops: tuple[str, ...] = ()
    for forward in (True, False):
        src, dst = (host, replica) if forward else (replica, host)
        packet = Packet(src.address, dst.address, port, reply=not forward)
        try:
            walker.send(src, dst, packet)
        except (DroppedError, UndecidableError) as blocked:
            direction = "" if forward else "the reply "
            undecidable = isinstance(blocked, UndecidableError)
            return _Outcome(f"{direction}{blocked}", undecidable, frozenset(ways)), tuple(packet.hops)
        ways.update(_ways(packet.hops))
        hops = tuple(packet.hops)
    return _Outcome(None, False, frozenset(ways)), hops


class _Classes:
    """Hosts grouped by :attr:`Host.key`, in order of first appearance, with the machines each class holds
    (a host of no known machine is a machine of its own, tagged with ``side`` so a client and a replica
    never share one by accident)."""

    def __init__(self, hosts: Sequence[Host], side: str) -> None:
        self.hosts = list(hosts)
        self.members: dict[Hashable, list[int]] = defaultdict(list)
        for index, host in enumerate(self.hosts):
            self.members[host.key].append(index)
        self.machines: dict[Hashable, frozenset[Any]] = {
            key: frozenset(self.hosts[i].machine or (side, i) for i in members) for key, members in self.members.items()
        }


def check_path(fabric: Fabric, source: str, target: str, port: int) -> PathVerdict:
    """Packets from every client host of ``source`` to every replica of ``target`` on tcp/``port``, and back."""
    if source not in fabric.regions and source not in fabric.sites:
        return PathVerdict(source, target, port, False, f"{source} is neither a region nor a site of the stack")
    hosts = fabric.location_hosts(source)
    if not hosts:
        return PathVerdict(source, target, port, False, f"no network of {source} is recorded")
    replicas = fabric.replicas(target)
    if isinstance(replicas, str):
        return PathVerdict(source, target, port, False, replicas)
    clients, servers = fabric.location_classes(source), fabric.replica_classes(target)
    memo = fabric.walks
    ways: set[str] = set()
    failing: dict[Hashable, set[Hashable]] = defaultdict(set)
    localhost = False
    for client_key, client_members in clients.members.items():
        client_machines = clients.machines[client_key]
        for server_key, server_members in servers.members.items():
            server_machines = servers.machines[server_key]
            if client_machines & server_machines:
                localhost = True
            if len(client_machines) == 1 and client_machines == server_machines:
                continue  # every pair is one machine talking to itself
            cache_key = (client_key, server_key, port)
            if cache_key not in memo:
                memo[cache_key] = _walk(fabric, hosts[client_members[0]], replicas[server_members[0]], port)[0]
            outcome = memo[cache_key]
            if outcome.blocked is not None:
                failing[client_key].add(server_key)
            ways.update(outcome.ways)
    if failing:
        return _blocked(fabric, source, target, port, hosts, replicas, failing)
    last = _last_pair(hosts, replicas)
    hops = _walk(fabric, *last, port)[1] if last else ()
    summary = ", ".join(sorted(ways | ({"localhost"} if localhost else set()))) or "inside the VPC"
    return PathVerdict(
        source,
        target,
        port,
        True,
        f"{len(hosts)} client host(s) x {len(replicas)} replica host(s), both ways: {summary}",
        hops,
    )


def walk_hosts(fabric: Fabric, client: Host, server: Host, port: int) -> PathVerdict:
    """Packets from one host to another on tcp/``port`` and back (hosts a path's locations do not list: a virtual
    SkyPilot VM, :func:`lmrun.aws.network_model.skypilot_endpoints`)."""
    outcome, hops = _walk(fabric, client, server, port)
    if outcome.blocked is None:
        return PathVerdict(client.label, server.label, port, True, ", ".join(sorted(outcome.ways)), hops)
    ok = None if outcome.undecidable else False
    return PathVerdict(client.label, server.label, port, ok, outcome.blocked, hops)


def _same_machine(a: Host, b: Host) -> bool:
    return a.machine is not None and a.machine == b.machine


def _blocked(
    fabric: Fabric,
    source: str,
    target: str,
    port: int,
    hosts: Sequence[Host],
    replicas: Sequence[Host],
    failing: Mapping[Hashable, set[Hashable]],
) -> PathVerdict:
    """The verdict of the first failing (client, replica) pair in client-major order, walked again so its
    reason names the real hosts."""
    for host in hosts:
        bad = failing.get(host.key)
        if not bad:
            continue
        for replica in replicas:
            if replica.key in bad and not _same_machine(host, replica):
                outcome, hops = _walk(fabric, host, replica, port)
                assert outcome.blocked is not None
                reason = f"{host.label} -> {replica.label}: {outcome.blocked}"
                unresolved = fabric.unresolved
                if outcome.undecidable:
                    return PathVerdict(source, target, port, None, f"cannot tell: {reason}", hops)
                if unresolved:
                    shown = ", ".join(unresolved[:3]) + (", ..." if len(unresolved) > 3 else "")
                    reason += (
                        f" (but cannot tell: {len(unresolved)} reference(s) of this {fabric.snapshot.source} "
                        f"could not be resolved: {shown})"
                    )
                    return PathVerdict(source, target, port, None, reason, hops)
                return PathVerdict(source, target, port, False, reason, hops)
    raise AssertionError("a failing class pair has no failing host pair")


def _last_pair(hosts: Sequence[Host], replicas: Sequence[Host]) -> tuple[Host, Host] | None:
    """The last (client, replica) pair in client-major order that is not one machine talking to itself."""
    for host in reversed(hosts):
        for replica in reversed(replicas):
            if not _same_machine(host, replica):
                return host, replica
    return None


def _ways(hops: Iterable[str]) -> set[str]:
    ways = set()
    for hop in hops:
        if hop.startswith("peering "):
            ways.add(hop.split(" carries")[0])
        elif "WireGuard peer" in hop:
            ways.add("WireGuard " + hop.split(":")[0] + " -> " + hop.split("peer ")[1].split(" ")[0])
        elif "local subnetwork" in hop or "-> local local" in hop:
            ways.add("local routes")
    return ways


def reachability_from_resources(
    source: Snapshot | Recording | Sequence[Resource], exports: Mapping[str, Any] | None = None
) -> list[PathVerdict]:
    """A verdict for each path of the ``reachability`` export (``from``, ``to``, ``port``), from resources alone."""
    fabric = Fabric(source, exports)
    paths = plain(fabric.exports.get("reachability")) or []
    return [check_path(fabric, str(p["from"]), str(p["to"]), int(p["port"])) for p in paths]
