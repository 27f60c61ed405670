"""GCP's part of the reachability walk: how an IPv4 packet crosses a GCP site's network.

Why here: GCP routes and firewalls are GCP knowledge; the cloud-neutral walk
(:mod:`lmrun.verify.reachability`) calls this model through :class:`lmrun.verify.network.NetworkModel`.

- **Routes**: subnetwork routes plus custom routes (longest prefix, then the lowest priority number); a next
  hop given as an instance resolves by id, by name or self link, or through the route's dependencies; one
  given only by zone (its self link is computed at deploy time) is the network's forwarding instance in
  that zone.
- **Firewalls**: ingress rules (stateful) by source range, protocol, port and target tags, the lowest
  priority number deciding and deny winning ties; egress is GCP's implied allow (no egress rules are
  modelled).
- **Gateways**: a site's gateway (``canIpForward``) ends the site's WireGuard tunnel; its config is the
  site's Secret Manager version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lmrun.verify import tokens
from lmrun.verify.network import (
    MAX_HOPS,
    DroppedError,
    Host,
    Hub,
    Net,
    NetworkModel,
    Packet,
    PrefixTable,
    Walk,
    net,
    port_in,
    protocol_admits_tcp,
    tunnel_peer,
)
from lmrun.verify.resources import Resource, flag, get, integer, is_unknown, items, plain

if TYPE_CHECKING:
    from lmrun.verify.reachability import Fabric

CLOUD: Final = "gcp"
NODE_LABEL = "lmrun_node"
LABELLED_TYPES = (tokens.GCP_INSTANCE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE)


@dataclass(frozen=True)
class Attachment:
    """Where a GCP host sits (:attr:`Host.where`): its network and its network tags (None: unknown, so only
    firewall rules without target tags count)."""

    network: str
    tags: tuple[str, ...] | None


class GcpNetwork(NetworkModel):
    """The networks, routes, firewalls and instances of a snapshot's GCP sites, indexed once."""

    cloud = CLOUD

    def __init__(self, fabric: Fabric) -> None:
        super().__init__(fabric)
        snapshot = self.snapshot
        self.subnets: dict[str, tuple[str, Net]] = {}
        self.subnets_of_network: dict[str, list[Net]] = defaultdict(list)
        for subnet in snapshot.of_type(tokens.GCP_SUBNETWORK):
            cidr = net(subnet.get("ipCidrRange"))
            network = snapshot.ref_key(subnet, "network", (tokens.GCP_NETWORK,))
            if cidr is not None and network is not None:
                self.subnets[subnet.urn] = (network, cidr)
                self.subnets_of_network[network].append(cidr)
        self.routes: dict[str, PrefixTable[Resource]] = defaultdict(PrefixTable)
        for route in snapshot.of_type(tokens.GCP_ROUTE):
            network = snapshot.ref_key(route, "network", (tokens.GCP_NETWORK,))
            destination = net(route.get("destRange"))
            if network is not None and destination is not None:
                self.routes[network].add(destination, route)
        self.firewalls: dict[str, list[Resource]] = defaultdict(list)
        for rule in snapshot.of_type(tokens.GCP_FIREWALL):
            network = snapshot.ref_key(rule, "network", (tokens.GCP_NETWORK,))
            if network is not None:
                self.firewalls[network].append(rule)
        self.instances = snapshot.of_type(tokens.GCP_INSTANCE)
        self.instances_by_name: dict[str, Resource] = {}
        for instance in self.instances:
            for name in (instance.name, get(instance.inputs, "name")):
                if isinstance(name, str):
                    self.instances_by_name.setdefault(name, instance)
        self.forwarders: dict[str, list[Resource]] = defaultdict(list)
        for instance in self.instances:
            network = self._network_of(instance)
            if flag(instance.get("canIpForward")) and network is not None:
                self.forwarders[network].append(instance)
        self.labelled: dict[str, list[Resource]] = defaultdict(list)
        for resource in snapshot.of_type(*LABELLED_TYPES):
            labels = get(resource.inputs, "labels")
            if isinstance(labels, Mapping) and labels.get(NODE_LABEL):
                self.labelled[str(labels[NODE_LABEL])].append(resource)
        self._site_networks: dict[str, str | None] = {}

    # --- sites ----------------------------------------------------------------------------------------------
    def site_network(self, site: str) -> str | None:
        """The network of the subnetwork that lies inside the site's CIDR."""
        if site not in self._site_networks:
            cidr = self.fabric.site_cidr(site)
            self._site_networks[site] = next(
                (network for network, range_ in self.subnets.values() if cidr is not None and range_.subnet_of(cidr)),
                None,
            )
        return self._site_networks[site]

    def site_of_network(self, network: str) -> str | None:
        return next((site for site in self.fabric.sites if self.site_network(site) == network), None)

    def holds_site(self, site: str) -> bool:
        return self.site_network(site) is not None

    def wireguard_texts(self) -> Iterable[tuple[str, Any]]:
        return [(v.name, plain(v.inputs.get("secretData"))) for v in self.snapshot.of_type(tokens.GCP_SECRET_VERSION)]

    # --- machines -------------------------------------------------------------------------------------------
    def _interfaces(self, resource: Resource) -> list[tuple[int, Mapping[str, Any]]]:
        return [
            (i, entry)
            for i, entry in enumerate(items(resource.inputs.get("networkInterfaces")))
            if isinstance(entry, Mapping)
        ]

    def _network_of(self, resource: Resource) -> str | None:
        for index, interface in self._interfaces(resource):
            subnet = self.snapshot.ref(resource, ("networkInterfaces", index, "subnetwork"), (tokens.GCP_SUBNETWORK,))
            if subnet is not None and subnet.urn in self.subnets:
                return self.subnets[subnet.urn][0]
            if interface.get("network"):
                return self.snapshot.ref_key(resource, ("networkInterfaces", index, "network"), (tokens.GCP_NETWORK,))
        return None

    def address(self, resource: Resource) -> Net | None:
        for index, interface in self._interfaces(resource):
            ip = net(interface.get("networkIp")) if get(interface, "networkIp") else None
            if ip is not None:
                return ip
            subnet = self.snapshot.ref(resource, ("networkInterfaces", index, "subnetwork"), (tokens.GCP_SUBNETWORK,))
            if subnet is not None and subnet.urn in self.subnets:
                return self.subnets[subnet.urn][1]
        return None

    def gateway(self, network: str, zone: Any) -> Resource | None:
        """The network's one forwarding instance (in ``zone``, when given)."""
        forwarders = [
            i for i in self.forwarders.get(network, ()) if zone is None or get(i.inputs, "zone") in (None, zone)
        ]
        return forwarders[0] if len(forwarders) == 1 else None

    # --- hosts ----------------------------------------------------------------------------------------------
    def location_hosts(self, location: str) -> list[Host] | None:
        network = self.site_network(location) if location in self.fabric.sites else None
        if network is None:
            return None
        return [
            Host(f"a host of {location} in {range_}", location, range_, CLOUD, Attachment(network, ()), site=location)
            for range_ in self.subnets_of_network[network]
        ]

    def node_hosts(self, node: str, info: Mapping[str, Any]) -> list[Host] | None:
        """A GPU node in a GCP site: the instance (or template) labelled with the node's name, else a host in
        each subnetwork of the site."""
        site = info.get("site")
        network = self.site_network(str(site)) if info.get("cloud") == CLOUD and site else None
        if network is None:
            return None
        site = str(site)
        for resource in self.labelled.get(node, ()):
            address = self.address(resource)
            if address is not None:
                tags = tuple(str(t) for t in items(resource.inputs.get("tags")))
                return [Host(f"node {node}", site, address, CLOUD, Attachment(network, tags), site=site, machine=node)]
        return [
            Host(f"node {node} in {range_}", site, range_, CLOUD, Attachment(network, None), site=site, machine=node)
            for range_ in self.subnets_of_network[network]
        ]

    def role_hosts(self, role: str) -> list[Host]:
        return []

    # --- walking --------------------------------------------------------------------------------------------
    def send(self, walk: Walk, source: Host, packet: Packet, target: Host) -> None:
        where = source.where
        assert isinstance(where, Attachment)
        self.route(walk, where.network, packet, target, 0, source.label)

    def from_site_tunnel(self, walk: Walk, site: str, packet: Packet, target: Host, depth: int) -> None:
        network = self.site_network(site)
        gateway = self.gateway(network, None) if network is not None else None
        if network is None or gateway is None or not flag(gateway.get("canIpForward")):
            raise DroppedError(f"site {site} has no gateway with canIpForward to put tunnel traffic on its network")
        self.route(walk, network, packet, target, depth + 1, gateway.name)

    def hubs(self) -> list[Hub]:
        return []

    def from_hub_tunnel(self, walk: Walk, hub: Hub, packet: Packet, target: Host, depth: int) -> None:
        raise DroppedError(f"{hub.name} is not a machine of a GCP network")

    def route(self, walk: Walk, network: str, packet: Packet, target: Host, depth: int, where: str) -> None:
        if depth > MAX_HOPS:
            raise DroppedError(f"{packet.text}: forwarding loop")
        net_name = self.name(network)
        candidates: list[tuple[int, int, Resource | None]] = [
            (range_.prefixlen, 0, None)
            for range_ in self.subnets_of_network.get(network, ())
            if packet.dst.subnet_of(range_)
        ]
        for destination, custom in self.routes[network].covering(packet.dst):
            candidates.append((destination.prefixlen, -_priority(custom), custom))
        if not candidates:
            raise DroppedError(
                f"GCP network {net_name} has no route for {packet.dst} (only the implied default route "
                "to the internet, which does not carry private addresses)"
            )
        _, _, route = max(candidates, key=lambda c: (c[0], c[1]))
        if route is None:
            packet.hops.append(f"{net_name}: {packet.dst} is a local subnetwork (from {where})")
            attachment = target.where
            if (
                not isinstance(attachment, Attachment)
                or attachment.network != network
                or not packet.dst.subnet_of(target.address)
            ):
                raise DroppedError(f"{packet.dst} is delivered inside {net_name}, where {target.label} is not")
            self._firewall_admits(network, attachment.tags, packet, target.label)
            packet.hops.append(f"delivered to {target.label}")
            return
        gateway = self._next_hop(network, route)
        packet.hops.append(f"{net_name}: route {route.name} -> {gateway.name}")
        if not flag(gateway.get("canIpForward")):
            raise DroppedError(f"{gateway.name} is the next hop of {route.name} but has canIpForward off")
        tags = tuple(str(t) for t in items(gateway.inputs.get("tags")))
        self._firewall_admits(network, tags, packet, gateway.name)
        site = self.site_of_network(network)
        config = walk.fabric.site_wireguard(site) if site else None
        if site is None or config is None:
            raise DroppedError(f"{gateway.name} forwards, but no WireGuard config of its site is recorded")
        dropped = f"{gateway.name} has no WireGuard peer whose AllowedIPs include {packet.dst}"
        tunnel_peer(config, packet, gateway.name, dropped)
        walk.to_hub(site, packet, target, depth)

    def _next_hop(self, network: str, route: Resource) -> Resource:
        inputs = route.inputs
        raw_hop = plain(inputs.get("nextHopInstance"))
        if raw_hop is not None or route.property_dependencies.get("nextHopInstance"):
            found = self.snapshot.ref(route, "nextHopInstance", (tokens.GCP_INSTANCE,))
            if found is not None:
                return found
            hop = get(inputs, "nextHopInstance")
            if hop:
                named = self.instances_by_name.get(str(hop)) or self.instances_by_name.get(str(hop).rsplit("/", 1)[-1])
                if named is not None:
                    return named
                raise DroppedError(f"route {route.name}'s next hop {hop} is no recorded instance")
        if get(inputs, "nextHopIp"):
            for instance in self.instances:
                if self.address(instance) == net(inputs["nextHopIp"]):
                    return instance
            raise DroppedError(f"route {route.name}'s next hop {get(inputs, 'nextHopIp')} is no recorded instance")
        zone_only = is_unknown(raw_hop) or (raw_hop is None and "nextHopInstance" in inputs)
        if get(inputs, "nextHopInstanceZone") or zone_only:
            # The self link is computed at deploy time: the forwarding instance of this network in that zone.
            gateway = self.gateway(network, get(inputs, "nextHopInstanceZone"))
            if gateway is not None:
                return gateway
            raise DroppedError(
                f"route {route.name}: no single forwarding instance (canIpForward) in its network and zone"
            )
        raise DroppedError(
            f"route {route.name}'s next hop ({', '.join(k for k in inputs if k.startswith('nextHop'))}) is "
            "not modelled (only instances)"
        )

    def _firewall_admits(self, network: str, tags: Sequence[str] | None, packet: Packet, where: str) -> None:
        if packet.reply:
            return
        matching: list[tuple[int, int, Resource]] = []
        for rule in self.firewalls.get(network, []):
            if str(rule.get("direction") or "INGRESS").upper() != "INGRESS" or flag(rule.get("disabled")):
                continue
            targets = items(rule.inputs.get("targetTags"))
            if targets and (tags is None or not set(targets) & set(tags)):
                continue
            if items(rule.inputs.get("targetServiceAccounts")):
                continue  # not modelled: only counts when nothing else admits
            sources = [n for n in (net(s) for s in items(rule.inputs.get("sourceRanges"))) if n is not None]
            if not any(packet.src.subnet_of(s) for s in sources):
                continue
            for action, key in ((0, "denies"), (1, "allows")):
                for entry in items(rule.inputs.get(key)):
                    if not protocol_admits_tcp(get(entry, "protocol") or ""):
                        continue
                    ports = items(get(entry, "ports"))
                    if ports and not any(port_in(p, packet.port) for p in ports):
                        continue
                    matching.append((_priority(rule), action, rule))
        if not matching:
            raise DroppedError(
                f"no GCP firewall rule of {self.name(network)} admits tcp/{packet.port} from "
                f"{packet.src} to {where}" + (" (its network tags are unknown)" if tags is None else "")
            )
        _lowest, action, rule = min(matching, key=lambda m: (m[0], m[1]))
        if action == 0:
            raise DroppedError(f"GCP firewall rule {rule.name} denies tcp/{packet.port} from {packet.src} to {where}")
        packet.hops.append(f"firewall {rule.name} admits it at {where}")


def _priority(resource: Resource) -> int:
    """A route's or firewall rule's priority (GCP's default: 1000; lower wins)."""
    found = integer(resource.get("priority"))
    return 1000 if found is None else found


MODEL = GcpNetwork
"""This cloud's network model (:func:`lmrun.verify.network_models.network_models` loads it by name)."""
