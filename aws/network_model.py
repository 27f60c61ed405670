"""AWS's part of the reachability walk: how an IPv4 packet crosses the VPCs a stack declares.

Why here: route tables, VPC peering and security groups are AWS knowledge; the cloud-neutral walk
(:mod:`lmrun.verify.reachability`) calls this model through :class:`lmrun.verify.network.NetworkModel`.

- **Route tables**: the subnet's associated table; without one, the VPC's main table (an adopted
  ``DefaultRouteTable`` or a ``MainRouteTableAssociation``; neither declared: only the implicit ``local``
  route). Longest prefix wins; the VPC's ``local`` route is implicit. Routes are standalone ``Route``
  resources or inline ``routes`` of a ``RouteTable``/``DefaultRouteTable``. Targets: ``local``, VPC
  peering, an instance's network interface; an internet gateway or a NAT gateway never carries private
  addresses (they are a subnet's way to the internet: :meth:`AwsNetwork.internet_egress`); other targets
  (transit gateway, ...) are reported as not modelled. A private subnet (SkyPilot's, behind a NAT gateway) is
  walked like a public one: its own route table carries the mesh routes.
- **VPC peering** (inter-region needs its accepter): carries a packet only when its source lies in the VPC it
  leaves and its destination in the peer VPC — so no transit to a third VPC or to a site.
- **Security groups** (stateful): the sender's egress rules and the receiver's ingress rules must admit the
  packet by IPv4 CIDR, protocol and port, on every network interface it crosses (a forwarding instance
  included). Rules are standalone (``vpc.SecurityGroupIngressRule``/``EgressRule``, ``ec2.SecurityGroupRule``)
  or inline ``ingress``/``egress`` of a ``SecurityGroup``/``DefaultSecurityGroup``. Rules that name a
  security group or prefix list are not evaluated (none exist in the mesh).
- **Forwarding instances** (the WireGuard hub): source/dest check off; its config is the SSM parameter its
  user data fetches (the parameter's name appears there).

Every resource is indexed once (by URN, with references resolved by :meth:`Snapshot.refs`), so a hop is a
dictionary lookup and a route lookup at most 33.
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
    UndecidableError,
    Walk,
    WireGuardConfig,
    net,
    parse_wireguard,
    protocol_admits_tcp,
)
from lmrun.verify.resources import Resource, flag, get, integer, is_unknown, items, plain
from lmrun.verify.user_data import user_data_text

if TYPE_CHECKING:
    from lmrun.verify.reachability import Fabric

CLOUD: Final = "aws"
GROUP_TYPES = (tokens.SECURITY_GROUP, tokens.DEFAULT_SECURITY_GROUP)
TABLE_TYPES = (tokens.ROUTE_TABLE, tokens.DEFAULT_ROUTE_TABLE)
LAUNCH_TEMPLATE_PATHS: tuple[tuple[str, ...], ...] = (
    ("mixedInstancesPolicy", "launchTemplate", "launchTemplateSpecification", "launchTemplateId"),
    ("launchTemplate", "id"),
)
INTERNET: Final = Net("0.0.0.0/0")
ROUTE_TARGETS = ("vpcPeeringConnectionId", "networkInterfaceId", "instanceId", "gatewayId")


@dataclass(frozen=True)
class Attachment:
    """Where an AWS host sits (:attr:`Host.where`): its subnet, that subnet's VPC, its security groups."""

    subnet: str
    vpc: str
    groups: tuple[str, ...]


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
    """``local``, ``peering``, ``interface``, ``internet``, ``nat`` or ``other``."""
    target: str


def _tag(resource: Resource, key: str) -> str | None:
    """A tag's value: ``tags`` is a map on most types and a list of {key, value} on auto scaling groups."""
    tags = get(resource.inputs, "tags")
    if isinstance(tags, Mapping):
        value = plain(tags.get(key))
        return str(value) if value is not None else None
    for tag in items(tags):
        if isinstance(tag, Mapping) and tag.get("key") == key:
            return str(plain(tag.get("value")))
    return None


class AwsNetwork(NetworkModel):
    """The VPCs, route tables, peerings, security groups and machines of a snapshot, indexed once."""

    cloud = CLOUD

    def __init__(self, fabric: Fabric) -> None:
        super().__init__(fabric)
        snapshot = self.snapshot
        provider_region = {r.urn: str(r.get("region") or "") for r in snapshot.resources if r.is_provider}

        self.vpcs: dict[str, Net] = {}
        self.region_vpc: dict[str, str] = {}
        for vpc in snapshot.of_type(tokens.VPC):
            cidr = net(vpc.get("cidrBlock"))
            if cidr is not None:
                self.vpcs[vpc.urn] = cidr
                region = provider_region.get(vpc.provider_urn)
                if region:
                    self.region_vpc[region] = vpc.urn
        self.default_group: dict[str, str] = {}
        for group in snapshot.of_type(tokens.DEFAULT_SECURITY_GROUP):
            owner = self._key(group, ("vpcId",), (tokens.VPC,))
            if owner:
                self.default_group[owner] = group.urn
        self.main_table: dict[str, str] = {}
        for table in snapshot.of_type(tokens.DEFAULT_ROUTE_TABLE):
            owner = self._key(table, ("defaultRouteTableId",), (tokens.VPC,))
            if owner:
                self.main_table[owner] = table.urn
        for association in snapshot.of_type(tokens.MAIN_ROUTE_TABLE_ASSOCIATION):
            owner = self._key(association, ("vpcId",), (tokens.VPC,))
            table_key = self._table(association, ("routeTableId",))
            if owner and table_key:
                self.main_table[owner] = table_key

        self.subnets: dict[str, tuple[str, Net]] = {}
        self.subnets_of_vpc: dict[str, list[str]] = defaultdict(list)
        for subnet in snapshot.of_type(tokens.SUBNET):
            cidr = net(subnet.get("cidrBlock"))
            owner = self._key(subnet, ("vpcId",), (tokens.VPC,))
            if cidr is not None and owner is not None:
                self.subnets[subnet.urn] = (owner, cidr)
                self.subnets_of_vpc[owner].append(subnet.urn)
        self.subnet_table: dict[str, str] = {}
        for association in snapshot.of_type(tokens.ROUTE_TABLE_ASSOCIATION):
            subnet_key = self._key(association, ("subnetId",), (tokens.SUBNET,))
            table_key = self._table(association, ("routeTableId",))
            if subnet_key and table_key:
                self.subnet_table[subnet_key] = table_key

        accepted = {
            self._key(a, ("vpcPeeringConnectionId",), (tokens.PEERING,))
            for a in snapshot.of_type(tokens.PEERING_ACCEPTER)
        }
        self.peerings: dict[str, tuple[str, str, bool]] = {}
        self.peerings_of_vpc: dict[str, list[str]] = defaultdict(list)
        for peering in snapshot.of_type(tokens.PEERING):
            auto = flag(peering.get("autoAccept")) is True and not peering.get("peerRegion")
            left = self._key(peering, ("vpcId",), (tokens.VPC,)) or "?"
            right = self._key(peering, ("peerVpcId",), (tokens.VPC,)) or "?"
            self.peerings[peering.urn] = (left, right, peering.urn in accepted or auto)
            self.peerings_of_vpc[left].append(peering.urn)
            self.peerings_of_vpc[right].append(peering.urn)

        self.instances = snapshot.of_type(tokens.INSTANCE)
        self.instance_subnet = {i.urn: self._key(i, ("subnetId",), (tokens.SUBNET,)) or "" for i in self.instances}
        self.instance_groups = {i.urn: self._groups(i, ("vpcSecurityGroupIds",)) for i in self.instances}
        self.instances_of_vpc: dict[str, list[Resource]] = defaultdict(list)
        self.instances_by_tag: dict[str, list[Resource]] = defaultdict(list)
        for instance in self.instances:
            placed = self.subnets.get(self.instance_subnet[instance.urn])
            if placed is not None:
                self.instances_of_vpc[placed[0]].append(instance)
            for key in ("lmrun:node", "lmrun:role"):
                value = _tag(instance, key)
                if value is not None and instance not in self.instances_by_tag[value]:
                    self.instances_by_tag[value].append(instance)

        self.routes: dict[str, PrefixTable[_Route]] = defaultdict(PrefixTable)
        for route in snapshot.of_type(tokens.ROUTE):
            destination = net(route.get("destinationCidrBlock"))
            table_key = self._table(route, ("routeTableId",))
            if destination is not None and table_key:
                self.routes[table_key].add(destination, self._route(route, (), route.name, destination, table_key))
        for table in snapshot.of_type(*TABLE_TYPES):
            for index, entry in enumerate(items(table.inputs.get("routes"))):
                destination = net(get(entry, "cidrBlock"))
                if destination is not None and isinstance(entry, Mapping):
                    name = f"{table.name}.routes[{index}]"
                    self.routes[table.urn].add(
                        destination, self._route(table, ("routes", index), name, destination, table.urn)
                    )
        self.routers = {r.target for table in self.routes.values() for _, r in table if r.kind == "interface"}

        self.ingress: dict[str, list[_Rule]] = defaultdict(list)
        self.egress: dict[str, list[_Rule]] = defaultdict(list)
        self._index_rules()
        self.groups_of_vpc: dict[str, list[str]] = defaultdict(list)
        for group in snapshot.of_type(*GROUP_TYPES):
            owner = self._key(group, ("vpcId",), (tokens.VPC,))
            if owner:
                self.groups_of_vpc[owner].append(group.urn)

        self.asgs = snapshot.of_type(tokens.AUTOSCALING_GROUP)
        self.asgs_by_node: dict[str, list[Resource]] = defaultdict(list)
        self.asgs_of_vpc: dict[str, list[Resource]] = defaultdict(list)
        self._asg_parts = {group.urn: self._asg_parts_of(group) for group in self.asgs}
        for asg in self.asgs:
            node = _tag(asg, "lmrun:node")
            if node is not None:
                self.asgs_by_node[node].append(asg)
            for vpc_key in dict.fromkeys(self.subnets[s][0] for s in self._asg_parts[asg.urn][0] if s in self.subnets):
                self.asgs_of_vpc[vpc_key].append(asg)

        self._parameters = [
            (str(get(p.inputs, "name") or ""), p.name, plain(p.inputs.get("value")))
            for p in snapshot.of_type(tokens.SSM_PARAMETER)
        ]
        self._wireguard: dict[str, tuple[WireGuardConfig | None, bool]] = {}

    # --- references ---------------------------------------------------------------------------------------
    def _key(self, resource: Resource, path: Sequence[str | int], types: Sequence[str]) -> str | None:
        """The URN the reference at ``path`` resolves to (or its id, outside this stack); None when unknown."""
        key = self.snapshot.ref_key(resource, path, types)
        if key is None and _unknown_at(resource, path):
            self.unresolved.append(f"{resource.name}.{'.'.join(map(str, path))}")
        return key

    def _table(self, resource: Resource, path: Sequence[str | int]) -> str | None:
        """A route table reference; the VPC's main table when it reads the VPC's ``defaultRouteTableId``."""
        found = self.snapshot.ref(resource, path, (*TABLE_TYPES, tokens.VPC))
        if found is not None:
            return self.main_table.get(found.urn) if found.type == tokens.VPC else found.urn
        return self._key(resource, path, TABLE_TYPES)

    def _groups(self, resource: Resource, path: Sequence[str | int]) -> tuple[str, ...]:
        """Security groups of a list input, in order; a VPC's ``defaultSecurityGroupId`` is its default group."""
        keys: list[str] = []
        for found in self.snapshot.refs(resource, path, (*GROUP_TYPES, tokens.VPC)):
            key = self.default_group.get(found.urn) if found.type == tokens.VPC else found.urn
            if key and key not in keys:
                keys.append(key)
        for value in items(get(resource.inputs, *path)):
            if isinstance(value, str) and not self.snapshot.with_id(value) and value not in keys:
                keys.append(value)  # a group outside this stack: it holds no rule the walk can see
        return tuple(keys)

    def _route(self, owner: Resource, prefix: tuple[str | int, ...], name: str, destination: Net, table: str) -> _Route:
        entry = get(owner.inputs, *prefix) if prefix else owner.inputs

        def present(key: str) -> bool:
            value = plain(entry.get(key)) if isinstance(entry, Mapping) else None
            return value not in (None, "") or bool(owner.property_dependencies.get(key) and not prefix)

        if present("vpcPeeringConnectionId"):
            return _Route(
                name,
                destination,
                "peering",
                self._peering(owner, (*prefix, "vpcPeeringConnectionId"), destination, table),
            )
        for key in ("networkInterfaceId", "instanceId"):
            if present(key):
                return _Route(name, destination, "interface", self._interface_owner(owner, (*prefix, key), table))
        if present("natGatewayId"):
            nat = self._key(owner, (*prefix, "natGatewayId"), (tokens.NAT_GATEWAY,))
            return _Route(name, destination, "nat", nat or str(plain(get(entry, "natGatewayId"))))
        gateway = get(entry, "gatewayId")
        if gateway == "local":
            return _Route(name, destination, "local", "local")
        if gateway or is_unknown(plain(entry.get("gatewayId")) if isinstance(entry, Mapping) else None):
            return _Route(name, destination, "internet", str(gateway))
        skip = ("routeTableId", "defaultRouteTableId")
        target = next((f"{k}={plain(v)}" for k, v in (entry or {}).items() if k.endswith("Id") and k not in skip), "?")
        return _Route(name, destination, "other", target)

    def _table_vpc(self, table: str) -> str | None:
        resource = self.snapshot.by_urn.get(table)
        if resource is None:
            return None
        if resource.type == tokens.DEFAULT_ROUTE_TABLE:
            return next((vpc for vpc, main in self.main_table.items() if main == table), None)
        return self.snapshot.ref_key(resource, ("vpcId",), (tokens.VPC,))

    def _peering(self, owner: Resource, path: tuple[str | int, ...], destination: Net, table: str) -> str:
        """The peering a route targets. An inline route whose id a preview cannot know has the dependencies
        of the whole ``routes`` list: the peering is the one that joins the table's VPC to the destination's."""
        found = self.snapshot.refs(owner, path, (tokens.PEERING,))
        if len(found) > 1:
            vpc = self._table_vpc(table)
            found = [p for p in found if self._joins(p.urn, vpc, destination)]
        if len(found) == 1:
            return found[0].urn
        value = get(owner.inputs, *path)
        if value is not None:
            return str(value)
        self.unresolved.append(f"{owner.name}.{'.'.join(map(str, path))}")
        return "?"

    def _joins(self, peering: str, vpc: str | None, destination: Net) -> bool:
        left, right, _ = self.peerings.get(peering, ("", "", False))
        other = right if vpc == left else left if vpc == right else None
        there = self.vpcs.get(other) if other else None
        return there is not None and destination.subnet_of(there)

    def _interface_owner(self, owner: Resource, path: tuple[str | int, ...], table: str) -> str:
        """The instance behind a route's network interface: the ENI's id is the instance's output, so the
        route's property depends on it (or the ENI is a declared NetworkInterface resource)."""
        found = self.snapshot.refs(owner, path, (tokens.INSTANCE, tokens.NETWORK_INTERFACE))
        if len(found) > 1:
            vpc = self._table_vpc(table)
            found = [i for i in found if self.subnets.get(self.instance_subnet.get(i.urn, ""), ("",))[0] == vpc]
        if len(found) == 1:
            return found[0].urn
        value = get(owner.inputs, *path)
        if value is None:
            self.unresolved.append(f"{owner.name}.{'.'.join(map(str, path))}")
        return str(value)

    def _index_rules(self) -> None:
        snapshot = self.snapshot
        for rule in snapshot.of_type(tokens.SG_INGRESS_RULE, tokens.SG_EGRESS_RULE):
            group = self._group(rule)
            if group:
                rules = self.ingress if rule.type == tokens.SG_INGRESS_RULE else self.egress
                cidr = net(rule.get("cidrIpv4")) if "cidrIpv4" in rule.inputs else None
                protocol = str(rule.get("ipProtocol") or "-1")
                rules[group].append(
                    _Rule(rule.name, cidr, protocol, integer(rule.get("fromPort")), integer(rule.get("toPort")))
                )
        for rule in snapshot.of_type(tokens.SECURITY_GROUP_RULE):
            group = self._group(rule)
            direction = str(rule.get("type") or "").lower()
            if group and direction in ("ingress", "egress"):
                rules = self.ingress if direction == "ingress" else self.egress
                rules[group] += self._permission(rule.name, rule.inputs)
        for owner in snapshot.of_type(*GROUP_TYPES):
            for key, rules in (("ingress", self.ingress), ("egress", self.egress)):
                for index, entry in enumerate(items(owner.inputs.get(key))):
                    if isinstance(entry, Mapping):
                        rules[owner.urn] += self._permission(f"{owner.name}.{key}[{index}]", entry)

    def _group(self, rule: Resource) -> str | None:
        found = self.snapshot.ref(rule, ("securityGroupId",), (*GROUP_TYPES, tokens.VPC))
        if found is not None:
            return self.default_group.get(found.urn) if found.type == tokens.VPC else found.urn
        return self._key(rule, ("securityGroupId",), GROUP_TYPES)

    @staticmethod
    def _permission(name: str, inputs: Mapping[str, Any]) -> list[_Rule]:
        """The rules of one ``ec2.SecurityGroupRule`` or inline ingress/egress entry: one per IPv4 CIDR, and
        one that admits nothing for a group, self or prefix-list source (not evaluated)."""
        protocol = str(get(inputs, "protocol") or "-1")
        low, high = integer(get(inputs, "fromPort")), integer(get(inputs, "toPort"))
        rules = [_Rule(name, net(cidr), protocol, low, high) for cidr in items(inputs.get("cidrBlocks"))]
        if get(inputs, "sourceSecurityGroupId") or items(inputs.get("securityGroups")) or flag(get(inputs, "self")):
            rules.append(_Rule(name, None, protocol, low, high))
        return rules

    def _asg_parts_of(self, group: Resource) -> tuple[list[str], tuple[str, ...]]:
        """An auto scaling group's subnets and its launch template's security groups."""
        template = next(
            (t for path in LAUNCH_TEMPLATE_PATHS if (t := self.snapshot.ref(group, path, (tokens.LAUNCH_TEMPLATE,)))),
            None,
        )
        groups: tuple[str, ...] = ()
        if template is not None:
            groups = self._groups(template, ("vpcSecurityGroupIds",))
            for index, _ in enumerate(items(template.inputs.get("networkInterfaces"))):
                groups += tuple(
                    g for g in self._groups(template, ("networkInterfaces", index, "securityGroups")) if g not in groups
                )
        subnets = [s.urn for s in self.snapshot.refs(group, ("vpcZoneIdentifiers",), (tokens.SUBNET,))]
        return subnets, groups

    # --- hosts --------------------------------------------------------------------------------------------
    def _instance_hosts(self, instance: Resource, location: str, label: str) -> list[Host]:
        subnet = self.instance_subnet.get(instance.urn, "")
        if subnet not in self.subnets:
            return []
        vpc, cidr = self.subnets[subnet]
        address = net(instance.get("privateIp")) or cidr  # no fixed (or a computed) IP: the subnet
        where = Attachment(subnet, vpc, self.instance_groups[instance.urn])
        return [Host(label, location, address, CLOUD, where, machine=instance.name)]

    def _asg_hosts(self, group: Resource, location: str, label: str) -> list[Host]:
        subnets, groups = self._asg_parts[group.urn]
        hosts = []
        for subnet in subnets:
            if subnet in self.subnets:
                vpc, cidr = self.subnets[subnet]
                where = Attachment(subnet, vpc, groups)
                hosts.append(Host(f"{label} in {self.name(subnet)}", location, cidr, CLOUD, where, machine=label))
        return hosts

    def is_router(self, instance: Resource) -> bool:
        """An instance some route sends traffic to (the WireGuard hub): a forwarder, not a client."""
        return instance.urn in self.routers

    def location_hosts(self, location: str) -> list[Host] | None:
        vpc = self.region_vpc.get(location)
        if vpc is None:
            return None
        hosts: list[Host] = []
        for instance in self.instances_of_vpc.get(vpc, ()):
            if not self.is_router(instance):
                hosts += self._instance_hosts(instance, location, instance.name)
        for group in self.asgs_of_vpc.get(vpc, ()):
            node = _tag(group, "lmrun:node") or group.name
            hosts += [
                h
                for h in self._asg_hosts(group, location, f"node {node}")
                if isinstance(h.where, Attachment) and h.where.vpc == vpc
            ]
        if hosts:
            return hosts
        groups = tuple(self.groups_of_vpc.get(vpc, []))
        return [
            Host(
                f"a host of {location} in {self.name(sid)}",
                location,
                self.subnets[sid][1],
                CLOUD,
                Attachment(sid, vpc, groups),
            )
            for sid in self.subnets_of_vpc.get(vpc, ())
        ]

    def node_hosts(self, node: str, info: Mapping[str, Any]) -> list[Host] | None:
        """A node's hosts by its ``lmrun:node`` tag (GPU nodes: auto scaling group and launch template) or
        its ``lmrun:role`` (Phoenix, the K3s server)."""
        if info.get("site") or info.get("cloud") not in (None, CLOUD):
            return None
        location = str(info.get("region") or "")
        hosts: list[Host] = []
        for group in self.asgs_by_node.get(node, ()):
            hosts += self._asg_hosts(group, location or str(_tag(group, "lmrun:region")), f"node {node}")
        for instance in self.instances_by_tag.get(node, ()):
            hosts += self._instance_hosts(instance, location or str(_tag(instance, "lmrun:region")), instance.name)
        return hosts

    def role_hosts(self, role: str) -> list[Host]:
        return [
            host
            for instance in self.instances_by_tag.get(role, ())
            if _tag(instance, "lmrun:role") == role
            for host in self._instance_hosts(instance, str(_tag(instance, "lmrun:region")), instance.name)
        ]

    # --- SkyPilot's VMs and the internet -------------------------------------------------------------------
    def _table_of(self, subnet: str) -> str | None:
        """The route table a subnet uses: its association's, else its VPC's main table."""
        return self.subnet_table.get(subnet) or self.main_table.get(self.subnets[subnet][0])

    def _default_route(self, subnet: str) -> _Route | None:
        table = self._table_of(subnet)
        found = [r for _, r in self.routes[table].covering(INTERNET)] if table else []
        return found[0] if found else None

    def is_public(self, subnet: str) -> bool:
        """SkyPilot's test of a public subnet (sky/provision/aws/config.py ``_is_subnet_public``): its route table
        sends something to an internet gateway."""
        table = self._table_of(subnet)
        return table is not None and any(route.kind == "internet" for _, route in self.routes[table])

    def internet_egress(self, subnet: str) -> str:
        """How a VM of ``subnet`` reaches the internet, in words; raises :class:`DroppedError` when it cannot:
        through an internet gateway (a public subnet), or through a NAT gateway that sits in a subnet whose own
        default route is an internet gateway (a private subnet)."""
        name = self.name(subnet)
        route = self._default_route(subnet)
        if route is None:
            raise DroppedError(f"{name}'s route table has no default route (0.0.0.0/0): no internet")
        if route.kind == "internet":
            return f"{name}: internet gateway ({route.name})"
        if route.kind != "nat":
            raise DroppedError(f"{name}'s default route {route.name} goes to {route.kind} {route.target}, not out")
        nat = self.snapshot.by_urn.get(route.target)
        if nat is None:
            raise DroppedError(f"{name}'s default route {route.name} names NAT gateway {route.target}, not recorded")
        placed = self._key(nat, ("subnetId",), (tokens.SUBNET,))
        if placed not in self.subnets or self.subnets[placed][0] != self.subnets[subnet][0]:
            raise DroppedError(f"NAT gateway {nat.name} is not in a subnet of {name}'s VPC")
        onward = self._default_route(placed)
        if onward is None or onward.kind != "internet":
            raise DroppedError(
                f"NAT gateway {nat.name} sits in {self.name(placed)}, which has no default route to an internet "
                "gateway (a public NAT gateway needs a public subnet)"
            )
        return f"{name}: NAT gateway {nat.name} in {self.name(placed)}, then internet gateway ({onward.name})"

    def skypilot_hosts(self, region: str, *, private: bool = True) -> list[Host]:
        """Where SkyPilot launches a VM in ``region``, with the security group it names (the ``skypilot`` export's
        ``name``), one host per subnet it may pick: with ``private``, the subnets the export's
        ``private_subnet_names`` lists that SkyPilot takes for private (no internet gateway route, no public
        address on launch); else the public ones. Empty when the region has no such subnet or group."""
        exported = self.fabric.exports.get("skypilot")
        vpc = self.region_vpc.get(region)
        if not isinstance(exported, Mapping) or vpc is None:
            return []
        names = set(exported.get("private_subnet_names") or ())
        groups = tuple(
            g.urn
            for g in self.snapshot.of_type(tokens.SECURITY_GROUP)
            if get(g.inputs, "name") == exported.get("name") and g.urn in self.groups_of_vpc.get(vpc, ())
        )
        if not groups:
            return []
        hosts = []
        for subnet in self.subnets_of_vpc.get(vpc, ()):
            resource = self.snapshot.by_urn[subnet]
            public = self.is_public(subnet)
            if private:
                if public or flag(resource.get("mapPublicIpOnLaunch")) or _tag(resource, "Name") not in names:
                    continue
            elif not public:
                continue
            where = Attachment(subnet, vpc, groups)
            label = f"a SkyPilot VM of {region} in {self.name(subnet)}"
            hosts.append(Host(label, region, self.subnets[subnet][1], CLOUD, where, machine=label))
        return hosts

    # --- WireGuard ----------------------------------------------------------------------------------------
    def wireguard_of(self, instance: Resource) -> WireGuardConfig | None:
        """The config of a forwarding instance: the SSM parameter its user data fetches. Raises
        :class:`UndecidableError` when that parameter's value is not in the source (a secret in a preview)."""
        if instance.urn not in self._wireguard:
            user_data = user_data_text(instance) or ""
            found: WireGuardConfig | None = None
            unknown = False
            for name, resource_name, text in self._parameters:
                if not name or name not in user_data:
                    continue
                if isinstance(text, str) and not is_unknown(text) and "[Interface]" in text:
                    found = parse_wireguard(text, resource_name)
                    break
                unknown = unknown or text is None or is_unknown(text)
            self._wireguard[instance.urn] = (found, unknown and found is None)
        config, unknown = self._wireguard[instance.urn]
        if unknown:
            raise UndecidableError(
                f"{instance.name}'s WireGuard config (an SSM parameter) is not in this "
                f"{self.snapshot.source} (a secret)"
            )
        return config

    def hubs(self) -> list[Hub]:
        hubs = []
        for instance in self.instances:
            if not self.is_router(instance):
                continue
            try:
                config = self.wireguard_of(instance)
            except UndecidableError:
                hubs.append(Hub(instance.name, None, self, instance.urn))
                continue
            if config is not None:
                hubs.append(Hub(instance.name, config, self, instance.urn))
        return hubs

    def wireguard_texts(self) -> Iterable[tuple[str, Any]]:
        return ()

    def holds_site(self, site: str) -> bool:
        return False

    def from_site_tunnel(self, walk: Walk, site: str, packet: Packet, target: Host, depth: int) -> None:
        raise DroppedError(f"site {site} has no network in AWS")

    # --- walking ------------------------------------------------------------------------------------------
    def _groups_admit(self, groups: Iterable[str], packet: Packet, direction: str, where: str) -> None:
        if packet.reply:
            return
        rules = self.ingress if direction == "ingress" else self.egress
        peer = packet.src if direction == "ingress" else packet.dst
        groups = list(groups)
        for group in groups:
            for rule in rules.get(group, []):
                if rule.cidr is None or not peer.subnet_of(rule.cidr) or not protocol_admits_tcp(rule.protocol):
                    continue
                if str(rule.protocol) in ("-1", "all") or (
                    rule.from_port is not None
                    and rule.to_port is not None
                    and rule.from_port <= packet.port <= rule.to_port
                ):
                    packet.hops.append(f"{direction} {rule.name} admits it at {where}")
                    return
        names = ", ".join(self.name(g) for g in groups) or "none"
        side = "from" if direction == "ingress" else "to"
        raise DroppedError(
            f"no {direction} rule of the security groups of {where} ({names}) admits tcp/{packet.port} {side} {peer}"
        )

    def send(self, walk: Walk, source: Host, packet: Packet, target: Host) -> None:
        where = source.where
        assert isinstance(where, Attachment)
        self._groups_admit(where.groups, packet, "egress", source.label)
        self.route(walk, where.subnet, packet, target, depth=0)

    def route(self, walk: Walk, subnet: str, packet: Packet, target: Host, depth: int) -> None:
        if depth > MAX_HOPS:
            raise DroppedError(f"{packet.text}: forwarding loop")
        vpc, _ = self.subnets[subnet]
        table = self.subnet_table.get(subnet) or self.main_table.get(vpc)
        table_name = self.name(table) if table else f"the main route table of {self.name(vpc)}"
        covering = [r for _, r in self.routes[table].covering(packet.dst)] if table else []
        route = covering[0] if covering else None
        here = self.vpcs.get(vpc)
        if (
            here is not None
            and packet.dst.subnet_of(here)
            and (route is None or here.prefixlen >= route.destination.prefixlen)
        ):
            route = _Route("local", here, "local", "local")
        if route is None or route.kind in ("internet", "nat"):
            gateway = "the internet gateway" if route is None or route.kind == "internet" else "a NAT gateway"
            default = f" (only {route.name} to {gateway}, which does not carry private addresses)" if route else ""
            raise DroppedError(
                f"route table {table_name} has no route for {packet.dst}"
                + default
                + self._missing_route_hint(vpc, packet)
            )
        target_name = self.name(route.target) if route.kind in ("peering", "interface") else route.target
        packet.hops.append(f"{table_name}: {route.destination} -> {route.kind} {target_name}")
        if route.kind == "local":
            self.deliver(vpc, packet, target)
        elif route.kind == "peering":
            self.cross_peering(walk, route, vpc, packet, target)
        elif route.kind == "interface":
            self.enter_router(walk, route.target, packet, target, depth)
        else:
            raise DroppedError(f"route {route.name} targets {route.target}: not modelled")

    def _missing_route_hint(self, vpc: str, packet: Packet) -> str:
        """What a route could have used: a peering or a WireGuard hub of this VPC, and whether it would carry
        the packet at all."""
        would, could_not = [], []
        for peering in sorted(self.peerings_of_vpc.get(vpc, ()), key=self.name):
            left, right, _ = self.peerings[peering]
            other = right if vpc == left else left
            there = self.vpcs.get(other)
            if there is not None and packet.dst.subnet_of(there):
                would.append(f"peering {self.name(peering)} to {self.name(other)} ({there})")
            else:
                could_not.append((self.name(peering), self.name(other), there))
        for instance in self.instances_of_vpc.get(vpc, ()):
            if flag(instance.get("sourceDestCheck")) is not False:
                continue
            try:
                config = self.wireguard_of(instance)
            except UndecidableError:
                continue
            hub_peer = config.peer_for(packet.dst) if config is not None else None
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

    def cross_peering(self, walk: Walk, route: _Route, vpc: str, packet: Packet, target: Host) -> None:
        peering = self.peerings.get(route.target)
        name = self.name(route.target)
        if peering is None:
            raise DroppedError(f"route {route.name} names peering {name}, which is not recorded")
        left, right, accepted = peering
        if not accepted:
            raise DroppedError(f"peering {name} is never accepted (no accepter in the peer region)")
        if vpc not in (left, right):
            raise DroppedError(f"peering {name} does not connect {self.name(vpc)}")
        peer = right if vpc == left else left
        here, there = self.vpcs.get(vpc), self.vpcs.get(peer)
        if here is None or not packet.src.subnet_of(here):
            raise DroppedError(
                f"peering {name} drops {packet.text}: its source is outside {self.name(vpc)} "
                f"({here}); a peering only carries traffic between its two VPCs (not transitive)"
            )
        if there is None or not packet.dst.subnet_of(there):
            raise DroppedError(
                f"peering {name} drops {packet.text}: its destination is outside the peer VPC "
                f"{self.name(peer)} ({there}); peering is not transitive"
            )
        packet.hops.append(f"peering {name} carries it into {self.name(peer)}")
        self.deliver(peer, packet, target)

    def deliver(self, vpc: str, packet: Packet, target: Host) -> None:
        where = target.where
        if not isinstance(where, Attachment) or where.vpc != vpc or not packet.dst.subnet_of(target.address):
            raise DroppedError(f"{packet.dst} is delivered inside {self.name(vpc)}, where {target.label} is not")
        self._groups_admit(where.groups, packet, "ingress", target.label)
        packet.hops.append(f"delivered to {target.label}")

    def enter_router(self, walk: Walk, instance_key: str, packet: Packet, target: Host, depth: int) -> None:
        router = self.snapshot.by_urn.get(instance_key)
        if router is None or router.type != tokens.INSTANCE:
            raise DroppedError(f"the route's network interface {instance_key} belongs to no recorded instance")
        if flag(router.get("sourceDestCheck")) is not False:
            raise DroppedError(f"{router.name} has source/dest check on: it drops packets not addressed to itself")
        self._groups_admit(self.instance_groups[router.urn], packet, "ingress", router.name)
        config = self.wireguard_of(router)
        if config is None:
            raise DroppedError(
                f"{router.name} forwards, but no WireGuard config of it is recorded (nothing routes "
                f"{packet.dst} onwards)"
            )
        walk.into_tunnel(router.name, config, packet, target, depth)

    def from_hub_tunnel(self, walk: Walk, hub: Hub, packet: Packet, target: Host, depth: int) -> None:
        instance = self.snapshot.by_urn[str(hub.handle)]
        if flag(instance.get("sourceDestCheck")) is not False:
            raise DroppedError(f"{hub.name} has source/dest check on: it cannot send packets with a site's source")
        self._groups_admit(self.instance_groups[instance.urn], packet, "egress", hub.name)
        self.route(walk, self.instance_subnet[instance.urn], packet, target, depth + 1)


def _unknown_at(resource: Resource, path: Sequence[str | int]) -> bool:
    """Whether the input at ``path`` is present but not known (a reference a preview cannot resolve)."""
    value: Any = resource.inputs
    for step in path:
        value = plain(value)
        if is_unknown(value):
            return True
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, Mapping) else None
    return is_unknown(plain(value)) or (value is None and bool(resource.property_dependencies.get(str(path[0]))))


MODEL = AwsNetwork
"""This cloud's network model (:func:`lmrun.verify.network_models.network_models` loads it by name)."""


def skypilot_endpoints(fabric: Fabric, region: str, *, private: bool = True) -> list[Host]:
    """Virtual SkyPilot VMs of ``region`` for the reachability walk: one host per subnet SkyPilot may launch into
    (private by default: the ``use_internal_ips`` subnets behind the NAT gateway), carrying the SkyPilot security
    group. Walk them with :func:`lmrun.verify.reachability.walk_hosts` (a replica, the SkyServe load balancer...)."""
    model = fabric.by_cloud.get(CLOUD)
    return model.skypilot_hosts(region, private=private) if isinstance(model, AwsNetwork) else []
