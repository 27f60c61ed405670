"""Static reachability from the recorded resources: do packets of each planned path actually flow?

``plan/sites.py`` answers reachability from the topology *model*; this module answers it from what the
program declared (the offline plan's recording), by walking the network the way AWS and GCP forward IPv4:

- **AWS route tables**: the subnet's associated table (no association: the VPC's main table, which the
  mesh never records, so only the implicit ``local`` route), longest prefix wins, the VPC's ``local`` route is
  implicit. Targets: ``local``, VPC peering, an instance's network interface; an internet gateway never
  carries private addresses; other targets (NAT, transit gateway, ...) are reported as not modelled.
- **VPC peering** (inter-region needs its accepter): carries a packet only when its source lies in the VPC it
  leaves and its destination in the peer VPC — so no transit to a third VPC or to a site.
- **Security groups** (stateful): the sender's egress rules and the receiver's ingress rules must admit the
  packet by IPv4 CIDR, protocol and port, on every network interface it crosses (a forwarding instance
  included). Rules that name a security group or prefix list are not evaluated (none exist in the mesh).
- **Forwarding instances** (the WireGuard hub, a GCP site gateway): source/dest check off (``canIpForward``
  on GCP), then WireGuard cryptokey routing: the packet enters the tunnel of the peer whose ``AllowedIPs``
  hold its destination, and the far end accepts it only when its source is in *its* peer's ``AllowedIPs``.
  Configs come from the hub's SSM parameter, the GCP site's Secret Manager version and the external sites'
  join bundles. The tunnel's underlay (UDP between public addresses) is taken as up.
- **GCP**: subnetwork routes plus custom routes (longest prefix, then priority); a next hop given only by
  zone (its self link is computed at deploy time) is the network's forwarding instance in that zone;
  ingress firewall rules (stateful) by source range, protocol, port and target tags, the lowest priority
  number deciding and deny winning ties; egress is GCP's implied allow (no egress rules are modelled).
- Replies (TCP): the same walk back from every replica, without security-group or firewall checks (they
  are stateful), but with routes, peering and WireGuard checks — asymmetric routing breaks TCP.

Not modelled (``NOT_MODELLED``, printed under the plan's reachability table): network ACLs (the mesh declares
none: the default NACL allows all), an external site's own network and firewall (beyond its WireGuard config),
OS firewalls on the VMs, and the underlay of the tunnels. Packets and hosts are address *ranges*: a host whose
address is not fixed stands for every address of every subnet it can launch in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lmrun.mock_engine import RecordedResource, Recording, Secret

Net = ipaddress.IPv4Network

NOT_MODELLED = (
    "not modelled: network ACLs (none are declared; the default NACL allows all), an external site's own "
    "network and firewall, OS firewalls, the tunnels' internet underlay"
)
K3S_API = "k3s-api"
MAX_HOPS = 16

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
PEERING = "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
ACCEPTER = "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
ENI = "aws:ec2/networkInterface:NetworkInterface"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
GCP_SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
GCP_ROUTE = "gcp:compute/route:Route"
GCP_FIREWALL = "gcp:compute/firewall:Firewall"
GCP_INSTANCE = "gcp:compute/instance:Instance"
GCP_SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NODE_LABEL = "lmrun.io/node"


@dataclass(frozen=True)
class PathVerdict:
    """Whether packets of one planned path flow through the recorded resources, and why (not)."""

    source: str
    target: str
    port: int
    ok: bool
    reason: str
    """On failure: the first blocking hop, in words. On success: the ways the packets take."""
    hops: tuple[str, ...] = ()
    """The walk that decided (the failing one, or the last successful one)."""

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "port": self.port, "ok": self.ok, "reason": self.reason}


class DroppedError(Exception):
    """A hop drops the packet; the message says where and why."""


@dataclass(frozen=True)
class Host:
    """Where a packet starts or ends: an address range and what the cloud attaches to it."""

    label: str
    location: str
    address: Net
    cloud: str
    """``aws``, ``gcp`` or ``external``."""
    subnet: str | None = None
    vpc: str | None = None
    groups: tuple[str, ...] = ()
    network: str | None = None
    tags: tuple[str, ...] | None = None
    """GCP network tags; None when unknown (then only rules without target tags count)."""
    site: str | None = None
    machine: str | None = None
    """The resource (or node) the host is; two hosts of one machine talk over localhost."""


@dataclass(frozen=True)
class _Rule:
    name: str
    cidr: Net | None
    protocol: str
    from_port: int | None
    to_port: int | None


@dataclass(frozen=True)
class _Route:
    name: str
    destination: Net
    kind: str
    """``local``, ``peering``, ``interface``, ``internet`` or ``other``."""
    target: str


@dataclass
class _WireGuard:
    """A parsed wg-quick config: its resource and its peers (name from ``# peer:``, AllowedIPs)."""

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


@dataclass
class _Packet:
    src: Net
    dst: Net
    port: int
    reply: bool
    hops: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"{self.src} -> {self.dst} tcp/{self.port}" + (" (reply)" if self.reply else "")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value


def _net(value: Any) -> Net | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return None


def parse_wireguard(text: str, source: str) -> _WireGuard:
    """The parts of a wg-quick config that decide forwarding: interface addresses and each peer's AllowedIPs."""
    config = _WireGuard(source)
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
        nets = [n for n in (_net(v.strip()) for v in value.split(",")) if n is not None]
        if section == "interface" and key.strip() == "Address":
            config.addresses += nets
        elif section == "peer" and key.strip() == "AllowedIPs":
            config.peers[-1][1].extend(nets)
    return config


def _protocol_admits(protocol: str, port: int) -> bool:
    return str(protocol).lower() in ("-1", "all", "tcp", "6")


class Fabric:
    """The recorded network, indexed by mock id (``<name>-id``)."""

    def __init__(self, recording: Recording, exports: Mapping[str, Any]) -> None:
        self.recording = recording
        self.exports = {key: _plain(value) for key, value in exports.items()}
        resources = recording.resources
        self.by_id: dict[str, RecordedResource] = {f"{r.name}-id": r for r in resources}
        self.by_urn = {r.urn: r for r in resources}
        provider_region = {r.urn: str(r.inputs.get("region", "")) for r in resources if r.is_provider}

        def of(type_: str) -> list[RecordedResource]:
            return [r for r in resources if r.type == type_]

        self.vpcs: dict[str, Net] = {}
        self.region_vpc: dict[str, str] = {}
        for vpc in of(VPC):
            cidr = _net(vpc.inputs.get("cidrBlock"))
            if cidr is not None:
                self.vpcs[f"{vpc.name}-id"] = cidr
                region = provider_region.get(vpc.provider_urn)
                if region:
                    self.region_vpc[region] = f"{vpc.name}-id"
        self.subnets: dict[str, tuple[str, Net]] = {}
        for subnet in of(SUBNET):
            cidr = _net(subnet.inputs.get("cidrBlock"))
            if cidr is not None:
                self.subnets[f"{subnet.name}-id"] = (str(subnet.inputs.get("vpcId")), cidr)
        self.subnet_table = {str(a.inputs.get("subnetId")): str(a.inputs.get("routeTableId")) for a in of(ASSOCIATION)}
        self.tables = {f"{t.name}-id": t for t in of(ROUTE_TABLE)}
        self.routes: dict[str, list[_Route]] = {}
        for route in of(ROUTE):
            destination = _net(route.inputs.get("destinationCidrBlock"))
            if destination is None:
                continue
            self.routes.setdefault(str(route.inputs.get("routeTableId")), []).append(
                self._aws_route(route, destination)
            )
        accepted = {str(a.inputs.get("vpcPeeringConnectionId")) for a in of(ACCEPTER)}
        self.peerings: dict[str, tuple[str, str, bool]] = {}
        for peering in of(PEERING):
            pid = f"{peering.name}-id"
            ok = pid in accepted or (bool(peering.inputs.get("autoAccept")) and not peering.inputs.get("peerRegion"))
            self.peerings[pid] = (str(peering.inputs.get("vpcId")), str(peering.inputs.get("peerVpcId")), ok)
        self.ingress: dict[str, list[_Rule]] = {}
        self.egress: dict[str, list[_Rule]] = {}
        for type_, rules in ((INGRESS, self.ingress), (EGRESS, self.egress)):
            for rule in of(type_):
                rules.setdefault(str(rule.inputs.get("securityGroupId")), []).append(
                    _Rule(
                        rule.name,
                        _net(rule.inputs["cidrIpv4"]) if "cidrIpv4" in rule.inputs else None,
                        str(rule.inputs.get("ipProtocol", "-1")),
                        rule.inputs.get("fromPort"),
                        rule.inputs.get("toPort"),
                    )
                )
        self.vpc_groups: dict[str, list[str]] = {}
        for group in of(SECURITY_GROUP):
            self.vpc_groups.setdefault(str(group.inputs.get("vpcId")), []).append(f"{group.name}-id")
        self.instances = of(INSTANCE)
        self.launch_templates = {f"{t.name}-id": t for t in of(LAUNCH_TEMPLATE)}
        self.asgs = of(ASG)
        self.parameters = of(SSM_PARAMETER)
        # GCP
        self.gcp_subnets: dict[str, tuple[str, Net]] = {}
        for subnet in of(GCP_SUBNETWORK):
            cidr = _net(subnet.inputs.get("ipCidrRange"))
            if cidr is not None:
                self.gcp_subnets[f"{subnet.name}-id"] = (str(subnet.inputs.get("network")), cidr)
        self.gcp_routes: dict[str, list[RecordedResource]] = {}
        for route in of(GCP_ROUTE):
            self.gcp_routes.setdefault(str(route.inputs.get("network")), []).append(route)
        self.firewalls: dict[str, list[RecordedResource]] = {}
        for rule in of(GCP_FIREWALL):
            self.firewalls.setdefault(str(rule.inputs.get("network")), []).append(rule)
        self.gcp_instances = of(GCP_INSTANCE)
        self.gcp_secret_versions = of(GCP_SECRET_VERSION)
        self.sites: dict[str, dict[str, Any]] = dict(self.exports.get("sites") or {})
        self.regions: dict[str, dict[str, Any]] = dict(self.exports.get("regions") or {})
        self.nodes: dict[str, dict[str, Any]] = dict(self.exports.get("nodes") or {})
        self._wireguard_cache: dict[str, _WireGuard | None] = {}

    # --- AWS ------------------------------------------------------------------------------------------
    def _aws_route(self, route: RecordedResource, destination: Net) -> _Route:
        inputs = route.inputs
        if inputs.get("vpcPeeringConnectionId"):
            return _Route(route.name, destination, "peering", str(inputs["vpcPeeringConnectionId"]))
        if inputs.get("networkInterfaceId") or inputs.get("instanceId"):
            return _Route(route.name, destination, "interface", self._interface_owner(route))
        gateway = str(inputs.get("gatewayId") or "")
        if gateway == "local":
            return _Route(route.name, destination, "local", "local")
        if gateway:
            return _Route(route.name, destination, "internet", gateway)
        target = next((f"{k}={v}" for k, v in inputs.items() if k.endswith("Id") and k != "routeTableId"), "?")
        return _Route(route.name, destination, "other", target)

    def _interface_owner(self, route: RecordedResource) -> str:
        """The instance behind a route's network interface: the ENI's id is the instance's output, so the
        route depends on it (or the ENI is a recorded NetworkInterface resource)."""
        value = str(route.inputs.get("networkInterfaceId") or route.inputs.get("instanceId"))
        owner = self.by_id.get(value)
        if owner is not None and owner.type in (INSTANCE, ENI):
            return f"{owner.name}-id"
        for urn in route.dependencies:
            dependency = self.by_urn.get(urn)
            if dependency is not None and dependency.type == INSTANCE:
                return f"{dependency.name}-id"
        return value

    def table_of(self, subnet: str) -> tuple[str | None, list[_Route]]:
        vpc, _ = self.subnets[subnet]
        local = [_Route("local", self.vpcs[vpc], "local", "local")] if vpc in self.vpcs else []
        table = self.subnet_table.get(subnet)
        if table is None:
            return None, local
        return table, local + self.routes.get(table, [])

    def instance_subnet(self, instance: RecordedResource) -> str:
        return str(instance.inputs.get("subnetId"))

    def is_router(self, instance: RecordedResource) -> bool:
        """An instance some route sends traffic to (the WireGuard hub): a forwarder, not a client."""
        iid = f"{instance.name}-id"
        return any(r.kind == "interface" and r.target == iid for routes in self.routes.values() for r in routes)

    def wireguard_of_instance(self, instance: RecordedResource) -> _WireGuard | None:
        """The hub's config: the SSM parameter the instance's user data fetches (its name appears there)."""
        key = instance.name
        if key not in self._wireguard_cache:
            user_data = str(instance.inputs.get("userData") or "")
            found = None
            for parameter in self.parameters:
                text = _plain(parameter.inputs.get("value"))
                name = str(parameter.inputs.get("name") or "")
                if isinstance(text, str) and "[Interface]" in text and name and name in user_data:
                    found = parse_wireguard(text, parameter.name)
                    break
            self._wireguard_cache[key] = found
        return self._wireguard_cache[key]

    # --- sites ----------------------------------------------------------------------------------------
    def site_cidr(self, site: str) -> Net | None:
        return _net((self.sites.get(site) or {}).get("cidr"))

    def site_network(self, site: str) -> str | None:
        cidr = self.site_cidr(site)
        for network, range_ in self.gcp_subnets.values():
            if cidr is not None and range_.subnet_of(cidr):
                return network
        return None

    def site_wireguard(self, site: str) -> _WireGuard | None:
        """A site's own config: the GCP secret version or the external site's join bundle whose interface
        address is the site's tunnel address."""
        key = f"site:{site}"
        if key not in self._wireguard_cache:
            tunnel = _net((self.sites.get(site) or {}).get("tunnel_address"))
            candidates: list[tuple[str, Any]] = [
                (v.name, _plain(v.inputs.get("secretData"))) for v in self.gcp_secret_versions
            ]
            bundles = _plain(self.exports.get("joinBundles")) or {}
            if isinstance(bundles, dict) and isinstance(bundles.get(site), dict):
                candidates.append((f"joinBundles[{site}]", bundles[site].get("config")))
            found = None
            for source, text in candidates:
                if isinstance(text, str) and "[Interface]" in text:
                    config = parse_wireguard(text, source)
                    if tunnel is not None and tunnel in config.addresses:
                        found = config
                        break
            self._wireguard_cache[key] = found
        return self._wireguard_cache[key]

    def gcp_gateway(self, network: str, zone: str | None) -> RecordedResource | None:
        forwarders = [
            i
            for i in self.gcp_instances
            if i.inputs.get("canIpForward")
            and self._gcp_network_of(i) == network
            and (zone is None or i.inputs.get("zone") in (None, zone))
        ]
        return forwarders[0] if len(forwarders) == 1 else None

    def _gcp_network_of(self, resource: RecordedResource) -> str | None:
        for interface in resource.inputs.get("networkInterfaces") or []:
            subnet = self.gcp_subnets.get(str(interface.get("subnetwork")))
            if subnet is not None:
                return subnet[0]
            if interface.get("network"):
                return str(interface["network"])
        return None

    def gcp_address(self, resource: RecordedResource) -> Net | None:
        for interface in resource.inputs.get("networkInterfaces") or []:
            ip = _net(interface.get("networkIp")) if interface.get("networkIp") else None
            if ip is not None:
                return ip
            subnet = self.gcp_subnets.get(str(interface.get("subnetwork")))
            if subnet is not None:
                return subnet[1]
        return None

    # --- hosts ----------------------------------------------------------------------------------------
    def _aws_instance_hosts(self, instance: RecordedResource, location: str, label: str) -> list[Host]:
        subnet = self.instance_subnet(instance)
        if subnet not in self.subnets:
            return []
        vpc, cidr = self.subnets[subnet]
        address = _net(instance.inputs.get("privateIp")) or cidr  # no fixed (or a computed) IP: the subnet
        groups = tuple(str(g) for g in instance.inputs.get("vpcSecurityGroupIds") or [])
        return [Host(label, location, address, "aws", subnet, vpc, groups, machine=instance.name)]

    def _asg_hosts(self, group: RecordedResource, location: str, label: str) -> list[Host]:
        spec = (group.inputs.get("mixedInstancesPolicy") or {}).get("launchTemplate", {}).get(
            "launchTemplateSpecification"
        ) or {}
        template_id = spec.get("launchTemplateId") or (group.inputs.get("launchTemplate") or {}).get("id")
        template = self.launch_templates.get(str(template_id))
        groups: list[str] = []
        if template is not None:
            groups = list(template.inputs.get("vpcSecurityGroupIds") or [])
            for interface in template.inputs.get("networkInterfaces") or []:
                groups += interface.get("securityGroups") or []
        hosts = []
        for subnet in group.inputs.get("vpcZoneIdentifiers") or []:
            if subnet in self.subnets:
                vpc, cidr = self.subnets[subnet]
                subnet_name = subnet.removesuffix("-id")
                hosts.append(
                    Host(f"{label} in {subnet_name}", location, cidr, "aws", subnet, vpc, tuple(groups), machine=label)
                )
        return hosts

    @staticmethod
    def _tag(resource: RecordedResource, key: str) -> str | None:
        tags = resource.inputs.get("tags")
        if isinstance(tags, dict):
            value = tags.get(key)
            return str(value) if value is not None else None
        if isinstance(tags, list):
            for tag in tags:
                if isinstance(tag, dict) and tag.get("key") == key:
                    return str(tag.get("value"))
        return None

    def machine_hosts(self, node: str) -> list[Host]:
        """Where a K3s node (``lmrun.io/node``) runs: by its ``lmrun:node`` tag (GPU nodes: auto scaling
        group and launch template), its ``lmrun:role`` (Phoenix, the K3s server), or its GCP labels."""
        info = self.nodes.get(node) or {}
        if info.get("cloud") == "gcp" or info.get("site"):
            return self._site_node_hosts(node, str(info.get("site")), str(info.get("cloud")))
        location = str(info.get("region") or "")
        hosts: list[Host] = []
        for group in self.asgs:
            if self._tag(group, "lmrun:node") == node:
                hosts += self._asg_hosts(group, location or str(self._tag(group, "lmrun:region")), f"node {node}")
        for instance in self.instances:
            if node in (self._tag(instance, "lmrun:node"), self._tag(instance, "lmrun:role")):
                region = location or str(self._tag(instance, "lmrun:region"))
                hosts += self._aws_instance_hosts(instance, region, instance.name)
        return hosts

    def _site_node_hosts(self, node: str, site: str, cloud: str) -> list[Host]:
        network = self.site_network(site)
        if cloud == "gcp" and network is not None:
            for resource in self.recording.resources:
                labels = resource.inputs.get("labels") if resource.type.startswith("gcp:compute/instance") else None
                if isinstance(labels, dict) and labels.get("lmrun_node") == node:
                    address = self.gcp_address(resource)
                    tags = tuple(str(t) for t in resource.inputs.get("tags") or [])
                    if address is not None:
                        return [
                            Host(
                                f"node {node}",
                                site,
                                address,
                                "gcp",
                                network=network,
                                tags=tags,
                                site=site,
                                machine=node,
                            )
                        ]
            return [
                Host(f"node {node} in {range_}", site, range_, "gcp", network=network, site=site, machine=node)
                for net_id, range_ in self.gcp_subnets.values()
                if net_id == network
            ]
        cidr = self.site_cidr(site)
        return [Host(f"node {node}", site, cidr, "external", site=site, machine=node)] if cidr else []

    def location_hosts(self, location: str) -> list[Host]:
        """Clients in a location: its machines (routers excluded); a location without any stands for a host
        in each of its subnets carrying the VPC's security groups."""
        if location in self.sites:
            network = self.site_network(location)
            cidr = self.site_cidr(location)
            if network is not None:
                return [
                    Host(
                        f"a host of {location} in {range_}",
                        location,
                        range_,
                        "gcp",
                        network=network,
                        tags=(),
                        site=location,
                    )
                    for net_id, range_ in self.gcp_subnets.values()
                    if net_id == network
                ]
            return [Host(f"a host of {location}", location, cidr, "external", site=location)] if cidr else []
        vpc = self.region_vpc.get(location)
        if vpc is None:
            return []
        hosts: list[Host] = []
        for instance in self.instances:
            subnet = self.instance_subnet(instance)
            if subnet in self.subnets and self.subnets[subnet][0] == vpc and not self.is_router(instance):
                hosts += self._aws_instance_hosts(instance, location, instance.name)
        for group in self.asgs:
            node = self._tag(group, "lmrun:node") or group.name
            for host in self._asg_hosts(group, location, f"node {node}"):
                if host.vpc == vpc:
                    hosts.append(host)
        if hosts:
            return hosts
        groups = tuple(self.vpc_groups.get(vpc, []))
        return [
            Host(f"a host of {location} in {sid.removesuffix('-id')}", location, cidr, "aws", sid, vpc, groups)
            for sid, (subnet_vpc, cidr) in self.subnets.items()
            if subnet_vpc == vpc
        ]

    def replicas(self, service: str) -> list[Host] | str:
        """Every replica of a service (its readiness Deployments' nodes), or why none can be placed."""
        if service == K3S_API:
            servers = [i for i in self.instances if self._tag(i, "lmrun:role") == "k3s-server"]
            hosts = [h for s in servers for h in self._aws_instance_hosts(s, str(self._tag(s, "lmrun:region")), s.name)]
            return hosts or "no K3s server instance (lmrun:role=k3s-server) is recorded"
        services = [
            s
            for s in self.recording.resources
            if s.type == K8S_SERVICE and (s.inputs.get("metadata") or {}).get("name") == f"lmrun-svc-{service}"
        ]
        if not services:
            return f"no Kubernetes Service lmrun-svc-{service} is recorded"
        selector = (services[0].inputs.get("spec") or {}).get("selector") or {}
        nodes: list[str] = []
        for deployment in self.recording.resources:
            if deployment.type != K8S_DEPLOYMENT:
                continue
            template = ((deployment.inputs.get("spec") or {}).get("template")) or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                node = ((template.get("spec") or {}).get("nodeSelector") or {}).get(NODE_LABEL)
                if node:
                    nodes.append(str(node))
        if not nodes:
            return f"no Deployment pinned to a node (nodeSelector {NODE_LABEL}) backs Service lmrun-svc-{service}"
        hosts = []
        for node in sorted(set(nodes)):
            placed = self.machine_hosts(node)
            if not placed:
                return f"replica node {node} of {service} is not found among the recorded machines"
            hosts += placed
        return hosts


class _Walker:
    """One packet's walk through the fabric; raises :class:`DroppedError` at the first hop that drops it."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric

    # --- checks ---------------------------------------------------------------------------------------
    def _groups_admit(self, groups: Iterable[str], packet: _Packet, direction: str, where: str) -> None:
        if packet.reply:
            return
        rules = self.fabric.ingress if direction == "ingress" else self.fabric.egress
        peer = packet.src if direction == "ingress" else packet.dst
        groups = list(groups)
        for group in groups:
            for rule in rules.get(group, []):
                if (
                    rule.cidr is None
                    or not peer.subnet_of(rule.cidr)
                    or not _protocol_admits(rule.protocol, packet.port)
                ):
                    continue
                if str(rule.protocol) in ("-1", "all") or (
                    rule.from_port is not None
                    and rule.to_port is not None
                    and rule.from_port <= packet.port <= rule.to_port
                ):
                    packet.hops.append(f"{direction} {rule.name} admits it at {where}")
                    return
        names = ", ".join(g.removesuffix("-id") for g in groups) or "none"
        side = "from" if direction == "ingress" else "to"
        raise DroppedError(
            f"no {direction} rule of the security groups of {where} ({names}) admits tcp/{packet.port} {side} {peer}"
        )

    def _firewall_admits(self, network: str, tags: tuple[str, ...] | None, packet: _Packet, where: str) -> None:
        if packet.reply:
            return
        matching: list[tuple[int, int, RecordedResource]] = []
        for rule in self.fabric.firewalls.get(network, []):
            inputs = rule.inputs
            if str(inputs.get("direction", "INGRESS")).upper() != "INGRESS" or inputs.get("disabled"):
                continue
            targets = inputs.get("targetTags") or []
            if targets and (tags is None or not set(targets) & set(tags)):
                continue
            if inputs.get("targetServiceAccounts"):
                continue  # not modelled: only counts when nothing else admits
            sources = [n for n in (_net(s) for s in inputs.get("sourceRanges") or []) if n is not None]
            if not any(packet.src.subnet_of(s) for s in sources):
                continue
            for action, key in ((0, "denies"), (1, "allows")):
                for entry in inputs.get(key) or []:
                    if not _protocol_admits(str(entry.get("protocol", "")), packet.port):
                        continue
                    ports = entry.get("ports") or []
                    if ports and not any(_port_in(p, packet.port) for p in ports):
                        continue
                    matching.append((int(inputs.get("priority", 1000)), action, rule))
        if not matching:
            raise DroppedError(
                f"no GCP firewall rule of {network.removesuffix('-id')} admits tcp/{packet.port} from "
                f"{packet.src} to {where}" + (" (its network tags are unknown)" if tags is None else "")
            )
        _priority, action, rule = min(matching, key=lambda m: (m[0], m[1]))
        if action == 0:
            raise DroppedError(f"GCP firewall rule {rule.name} denies tcp/{packet.port} from {packet.src} to {where}")
        packet.hops.append(f"firewall {rule.name} admits it at {where}")

    # --- AWS ------------------------------------------------------------------------------------------
    def leave_aws(self, subnet: str, groups: Iterable[str], packet: _Packet, where: str, target: Host) -> None:
        self._groups_admit(groups, packet, "egress", where)
        self.route_aws(subnet, packet, target, depth=0)

    def route_aws(self, subnet: str, packet: _Packet, target: Host, depth: int) -> None:
        fabric = self.fabric
        if depth > MAX_HOPS:
            raise DroppedError(f"{packet.text}: forwarding loop")
        vpc, _ = fabric.subnets[subnet]
        table, routes = fabric.table_of(subnet)
        table_name = table.removesuffix("-id") if table else f"the main route table of {vpc.removesuffix('-id')}"
        covering = [r for r in routes if packet.dst.subnet_of(r.destination)]
        route = max(covering, key=lambda r: r.destination.prefixlen) if covering else None
        if route is None or route.kind == "internet":
            default = (
                f" (only {route.name} to the internet gateway, which does not carry private addresses)" if route else ""
            )
            raise DroppedError(
                f"route table {table_name} has no route for {packet.dst}"
                + default
                + self._missing_route_hint(vpc, packet)
            )
        packet.hops.append(f"{table_name}: {route.destination} -> {route.kind} {route.target.removesuffix('-id')}")
        if route.kind == "local":
            self.deliver_aws(vpc, packet, target)
        elif route.kind == "peering":
            self.cross_peering(route, vpc, packet, target)
        elif route.kind == "interface":
            self.enter_aws_router(route.target, packet, target, depth)
        else:
            raise DroppedError(f"route {route.name} targets {route.target}: not modelled")

    def _missing_route_hint(self, vpc: str, packet: _Packet) -> str:
        """What a route could have used: a peering or a WireGuard hub of this VPC, and whether it would carry
        the packet at all."""
        fabric = self.fabric
        would, could_not = [], []
        for pid, (left, right, _) in sorted(fabric.peerings.items()):
            if vpc in (left, right):
                peer = right if vpc == left else left
                there = fabric.vpcs.get(peer)
                if there is not None and packet.dst.subnet_of(there):
                    would.append(f"peering {pid.removesuffix('-id')} to {peer.removesuffix('-id')} ({there})")
                else:
                    could_not.append((pid.removesuffix("-id"), peer.removesuffix("-id"), there))
        for instance in fabric.instances:
            subnet = fabric.instance_subnet(instance)
            config = fabric.wireguard_of_instance(instance) if instance.inputs.get("sourceDestCheck") is False else None
            if subnet in fabric.subnets and fabric.subnets[subnet][0] == vpc and config is not None:
                hub_peer = config.peer_for(packet.dst)
                if hub_peer is not None:
                    would.append(f"the WireGuard hub {instance.name} (peer {hub_peer[0]})")
        if would:
            return f"; {' and '.join(would)} would carry it, but no route sends it there"
        if len(could_not) == 1:
            name, peer, there = could_not[0]
            return (
                f"; peering {name} could not carry it either: {packet.dst} is outside the peer VPC {peer} "
                f"({there}), and peering is not transitive"
            )
        if could_not:
            return (
                f"; none of its {len(could_not)} peerings could carry it either: {packet.dst} is outside every "
                "peer VPC, and peering is not transitive"
            )
        return ""

    def cross_peering(self, route: _Route, vpc: str, packet: _Packet, target: Host) -> None:
        fabric = self.fabric
        peering = fabric.peerings.get(route.target)
        name = route.target.removesuffix("-id")
        if peering is None:
            raise DroppedError(f"route {route.name} names peering {name}, which is not recorded")
        left, right, accepted = peering
        if not accepted:
            raise DroppedError(f"peering {name} is never accepted (no accepter in the peer region)")
        if vpc not in (left, right):
            raise DroppedError(f"peering {name} does not connect {vpc.removesuffix('-id')}")
        peer = right if vpc == left else left
        here, there = fabric.vpcs.get(vpc), fabric.vpcs.get(peer)
        if here is None or not packet.src.subnet_of(here):
            raise DroppedError(
                f"peering {name} drops {packet.text}: its source is outside {vpc.removesuffix('-id')} "
                f"({here}); a peering only carries traffic between its two VPCs (not transitive)"
            )
        if there is None or not packet.dst.subnet_of(there):
            raise DroppedError(
                f"peering {name} drops {packet.text}: its destination is outside the peer VPC "
                f"{peer.removesuffix('-id')} ({there}); peering is not transitive"
            )
        packet.hops.append(f"peering {name} carries it into {peer.removesuffix('-id')}")
        self.deliver_aws(peer, packet, target)

    def deliver_aws(self, vpc: str, packet: _Packet, target: Host) -> None:
        if target.vpc != vpc or not packet.dst.subnet_of(target.address):
            raise DroppedError(
                f"{packet.dst} is delivered inside {vpc.removesuffix('-id')}, where {target.label} is not"
            )
        self._groups_admit(target.groups, packet, "ingress", target.label)
        packet.hops.append(f"delivered to {target.label}")

    def enter_aws_router(self, instance_id: str, packet: _Packet, target: Host, depth: int) -> None:
        fabric = self.fabric
        router = fabric.by_id.get(instance_id)
        if router is None or router.type != INSTANCE:
            raise DroppedError(f"the route's network interface {instance_id} belongs to no recorded instance")
        if router.inputs.get("sourceDestCheck", True) is not False:
            raise DroppedError(f"{router.name} has source/dest check on: it drops packets not addressed to itself")
        groups = [str(g) for g in router.inputs.get("vpcSecurityGroupIds") or []]
        self._groups_admit(groups, packet, "ingress", router.name)
        config = fabric.wireguard_of_instance(router)
        if config is None:
            raise DroppedError(
                f"{router.name} forwards, but no WireGuard config of it is recorded (nothing routes "
                f"{packet.dst} onwards)"
            )
        peer = config.peer_for(packet.dst)
        if peer is None:
            raise DroppedError(
                f"{router.name} has no WireGuard peer whose AllowedIPs include {packet.dst} ({config.source})"
            )
        site = peer[0]
        packet.hops.append(f"{router.name}: WireGuard peer {site} (AllowedIPs {peer[1]})")
        self.arrive_at_site(site, router, packet, target, depth)

    def arrive_at_site(self, site: str, hub: RecordedResource, packet: _Packet, target: Host, depth: int) -> None:
        fabric = self.fabric
        if site not in fabric.sites:
            raise DroppedError(f"the hub's WireGuard peer {site} is not a site of the stack")
        config = fabric.site_wireguard(site)
        if config is None:
            raise DroppedError(f"no WireGuard config of site {site} is recorded")
        accepted = config.peer_for(packet.src)
        if accepted is None:
            raise DroppedError(
                f"site {site} drops {packet.text} from the tunnel: its source is in no AllowedIPs of its "
                f"peers ({config.source})"
            )
        packet.hops.append(f"site {site} accepts it from the tunnel (AllowedIPs {accepted[1]})")
        network = fabric.site_network(site)
        if network is None:  # external site: its own LAN is not modelled
            cidr = fabric.site_cidr(site)
            if cidr is None or not packet.dst.subnet_of(cidr) or target.site != site:
                raise DroppedError(
                    f"{packet.dst} is not inside external site {site} ({cidr}); it routes nothing onwards"
                )
            packet.hops.append(f"delivered to {target.label} (the external site's own network is not modelled)")
            return
        gateway = fabric.gcp_gateway(network, None)
        if gateway is None or not gateway.inputs.get("canIpForward"):
            raise DroppedError(f"site {site} has no gateway with canIpForward to put tunnel traffic on its network")
        self.route_gcp(network, packet, target, depth + 1, gateway.name)

    # --- GCP ------------------------------------------------------------------------------------------
    def route_gcp(self, network: str, packet: _Packet, target: Host, depth: int, where: str) -> None:
        fabric = self.fabric
        if depth > MAX_HOPS:
            raise DroppedError(f"{packet.text}: forwarding loop")
        net_name = network.removesuffix("-id")
        candidates: list[tuple[int, int, str, RecordedResource | None]] = [
            (range_.prefixlen, 0, "subnet", None)
            for net_id, range_ in fabric.gcp_subnets.values()
            if net_id == network and packet.dst.subnet_of(range_)
        ]
        for custom in fabric.gcp_routes.get(network, []):
            destination = _net(custom.inputs.get("destRange"))
            if destination is not None and packet.dst.subnet_of(destination):
                candidates.append((destination.prefixlen, -int(custom.inputs.get("priority", 1000)), "route", custom))
        if not candidates:
            raise DroppedError(
                f"GCP network {net_name} has no route for {packet.dst} (only the implied default route "
                "to the internet, which does not carry private addresses)"
            )
        _, _, _kind, route = max(candidates, key=lambda c: (c[0], c[1]))
        if route is None:
            packet.hops.append(f"{net_name}: {packet.dst} is a local subnetwork (from {where})")
            if target.network != network or not packet.dst.subnet_of(target.address):
                raise DroppedError(f"{packet.dst} is delivered inside {net_name}, where {target.label} is not")
            self._firewall_admits(network, target.tags, packet, target.label)
            packet.hops.append(f"delivered to {target.label}")
            return
        gateway = self._gcp_next_hop(network, route)
        packet.hops.append(f"{net_name}: route {route.name} -> {gateway.name}")
        if not gateway.inputs.get("canIpForward"):
            raise DroppedError(f"{gateway.name} is the next hop of {route.name} but has canIpForward off")
        tags = tuple(str(t) for t in gateway.inputs.get("tags") or [])
        self._firewall_admits(network, tags, packet, gateway.name)
        site = next((s for s in fabric.sites if fabric.site_network(s) == network), None)
        config = fabric.site_wireguard(site) if site else None
        if site is None or config is None:
            raise DroppedError(f"{gateway.name} forwards, but no WireGuard config of its site is recorded")
        peer = config.peer_for(packet.dst)
        if peer is None:
            raise DroppedError(f"{gateway.name} has no WireGuard peer whose AllowedIPs include {packet.dst}")
        packet.hops.append(f"{gateway.name}: WireGuard peer {peer[0]} (AllowedIPs {peer[1]})")
        self.arrive_at_hub(site, packet, target, depth)

    def _gcp_next_hop(self, network: str, route: RecordedResource) -> RecordedResource:
        fabric = self.fabric
        inputs = route.inputs
        hop = inputs.get("nextHopInstance")
        if hop and hop != "[unknown]":
            for instance in fabric.gcp_instances:
                if str(hop) in (f"{instance.name}-id", instance.name) or str(hop).endswith(f"/{instance.name}"):
                    return instance
            raise DroppedError(f"route {route.name}'s next hop {hop} is no recorded instance")
        if inputs.get("nextHopIp"):
            for instance in fabric.gcp_instances:
                if fabric.gcp_address(instance) == _net(inputs["nextHopIp"]):
                    return instance
            raise DroppedError(f"route {route.name}'s next hop {inputs['nextHopIp']} is no recorded instance")
        if inputs.get("nextHopInstanceZone") or hop == "[unknown]":
            # The self link is computed at deploy time: the forwarding instance of this network in that zone.
            gateway = fabric.gcp_gateway(network, inputs.get("nextHopInstanceZone"))
            if gateway is not None:
                return gateway
            raise DroppedError(
                f"route {route.name}: no single forwarding instance (canIpForward) in its network and zone"
            )
        raise DroppedError(
            f"route {route.name}'s next hop ({', '.join(k for k in inputs if k.startswith('nextHop'))}) is "
            "not modelled (only instances)"
        )

    # --- the hub, from a site -------------------------------------------------------------------------
    def arrive_at_hub(self, site: str, packet: _Packet, target: Host, depth: int) -> None:
        fabric = self.fabric
        hubs = [i for i in fabric.instances if fabric.is_router(i) and fabric.wireguard_of_instance(i)]
        if not hubs:
            raise DroppedError("no WireGuard hub instance is recorded in the main region")
        hub = hubs[0]
        config = fabric.wireguard_of_instance(hub)
        assert config is not None
        allowed = next((nets for name, nets in config.peers if name == site), None)
        if allowed is None:
            raise DroppedError(f"the hub's WireGuard config ({config.source}) has no peer for site {site}")
        if not any(packet.src.subnet_of(n) for n in allowed):
            raise DroppedError(
                f"the hub drops {packet.text} from site {site}'s tunnel: the source is outside the "
                f"site's AllowedIPs ({', '.join(map(str, allowed))})"
            )
        packet.hops.append(f"{hub.name} accepts it from {site}'s tunnel")
        if hub.inputs.get("sourceDestCheck", True) is not False:
            raise DroppedError(f"{hub.name} has source/dest check on: it cannot send packets with a site's source")
        self._groups_admit([str(g) for g in hub.inputs.get("vpcSecurityGroupIds") or []], packet, "egress", hub.name)
        self.route_aws(fabric.instance_subnet(hub), packet, target, depth + 1)

    # --- a walk from a host ---------------------------------------------------------------------------
    def send(self, source: Host, target: Host, packet: _Packet) -> None:
        if source.cloud == "aws":
            assert source.subnet is not None
            self.leave_aws(source.subnet, source.groups, packet, source.label, target)
        elif source.cloud == "gcp":
            assert source.network is not None
            self.route_gcp(source.network, packet, target, 0, source.label)
        else:
            site = str(source.site)
            config = self.fabric.site_wireguard(site)
            if config is None:
                raise DroppedError(f"no WireGuard config of external site {site} is recorded")
            peer = config.peer_for(packet.dst)
            if peer is None:
                raise DroppedError(
                    f"external site {site} routes nothing for {packet.dst} into its tunnel (no AllowedIPs "
                    f"of {config.source} include it)"
                )
            packet.hops.append(f"{site}: WireGuard peer {peer[0]} (AllowedIPs {peer[1]})")
            self.arrive_at_hub(site, packet, target, 0)


def _port_in(spec: Any, port: int) -> bool:
    text = str(spec)
    low, _, high = text.partition("-")
    try:
        return int(low) <= port <= int(high or low)
    except ValueError:
        return False


def _same_machine(a: Host, b: Host) -> bool:
    return a.machine is not None and a.machine == b.machine


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
    walker = _Walker(fabric)
    ways: set[str] = set()
    last: tuple[str, ...] = ()
    for host in hosts:
        for replica in replicas:
            if _same_machine(host, replica):
                ways.add("localhost")
                continue
            for forward in (True, False):
                src, dst = (host, replica) if forward else (replica, host)
                packet = _Packet(src.address, dst.address, port, reply=not forward)
                try:
                    walker.send(src, dst, packet)
                except DroppedError as blocked:
                    direction = "" if forward else "the reply "
                    reason = f"{host.label} -> {replica.label}: {direction}{blocked}"
                    return PathVerdict(source, target, port, False, reason, tuple(packet.hops))
                ways.update(_ways(packet.hops))
                last = tuple(packet.hops)
    summary = ", ".join(sorted(ways)) or "inside the VPC"
    return PathVerdict(
        source,
        target,
        port,
        True,
        f"{len(hosts)} client host(s) x {len(replicas)} replica host(s), both ways: {summary}",
        last,
    )


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


def reachability_from_resources(recording: Recording, exports: Mapping[str, Any] | None = None) -> list[PathVerdict]:
    """A verdict for each path of the ``reachability`` export (``from``, ``to``, ``port``), from resources alone."""
    exports = recording.outputs if exports is None else exports
    fabric = Fabric(recording, exports)
    paths = _plain(exports.get("reachability")) or []
    return [check_path(fabric, str(p["from"]), str(p["to"]), int(p["port"])) for p in paths]
