"""RegionalVpc: one region's VPC with an internet route, one subnet per AZ and a mesh security group, and, where
SkyPilot runs private VMs, one private subnet per AZ behind a NAT gateway."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import slug, with_name


class PeerRoute(TypedDict):
    """The one peer a spoke VPC talks to: the hub VPC's region and CIDR and the peering connection to it."""

    region: str
    """The peer VPC's region (for descriptions)."""
    cidr_block: str
    """The peer VPC's CIDR: routed into the peering and admitted by the security group."""
    vpc_peering_connection_id: pulumi.Input[str]
    """The peering's id, best taken from its accepter so the route waits until the peering is active."""


class RegionalVpcArgs(TypedDict):
    """Inputs of :class:`RegionalVpc`. The AWS provider for the region comes in ``opts.provider``."""

    cidr_block: str
    """The VPC's IPv4 CIDR (a /16 from the mesh address plan)."""
    subnets: Mapping[str, str]
    """AZ id -> subnet CIDR; resources are named by AZ id so adding an AZ never renames another."""
    tags: Mapping[str, str]
    """Tags for every resource of the VPC (a ``Name`` is added per resource)."""
    private_subnets: NotRequired[Mapping[str, str]]
    """AZ id -> private subnet CIDR (SkyPilot's VMs, :func:`lmrun.aws.network.cidr_blocks.private_subnet_cidr`).
    Given: the private subnets, a NAT gateway with its Elastic IP in the first AZ's public subnet, and a private
    route table (internet through the NAT gateway; the same mesh routes as the public table)."""
    peer: NotRequired[PeerRoute]
    """A spoke's one peer (the hub). Given: the VPC is complete and closed — its main route table and its
    security group carry every route and rule inline, and nothing else may add any. Omitted (the hub, or a
    VPC on its own): routes and rules are separate resources, and others add theirs beside them."""


class RegionalVpc(pulumi.ComponentResource):
    """A VPC whose mesh instances use public subnets and are closed by security groups; with ``private_subnets``,
    also private subnets (no public address, internet through one NAT gateway) where SkyPilot's VMs run.

    Inbound traffic is allowed only from the VPC itself (and from ``peer``'s CIDR); the peering hub and the
    WireGuard hub add rules for more CIDRs to a VPC without ``peer``. Egress is open so nodes can fetch
    packages and models.

    Two shapes, because the provider must not manage one table or group both ways: inline routes/rules and
    standalone ``Route`` / ``SecurityGroup*Rule`` resources on it overwrite each other (Pulumi registry notes
    on ``aws.ec2.RouteTable`` and ``aws.ec2.SecurityGroup``):

    - **standalone** (no ``peer``; the hub): a route table with one association per subnet, the internet
      route and the security group's rules as separate resources. Adding a spoke or a site then *adds* a
      route and a rule beside them instead of updating this VPC's resources.
    - **inline** (``peer``; every spoke): the VPC's own main route table is adopted
      (``aws.ec2.DefaultRouteTable``: subnets use it without associations) with the internet route and the
      route to the peer inline, and the security group carries its three rules inline. A spoke's table and
      group depend on nothing but the spoke and the hub's CIDR, so adding or removing a spoke never touches
      another region's resources: 4 + one per AZ resources, where the standalone shape plus the peering
      hub's spoke-side route and rule took 9 + two per AZ.

    The private route table follows the same shape: a spoke's carries the NAT route and the route to the peer
    inline; the hub's gets standalone routes, and the peering hub and the WireGuard hub add each spoke's, site's
    and the tunnel range's route to it beside the public table's (:attr:`private_route_table_id`).

    One NAT gateway per region, in one AZ (Amazon VPC User Guide, "NAT gateway basics": a NAT gateway lives in
    one AZ; when that AZ is down, private subnets of the other AZs lose internet access; it carries 5 Gbps,
    scaling to 100 Gbps). One per AZ would survive an AZ outage at one gateway-hour each; SkyPilot's spot VMs
    already fail over across zones and regions, so the mesh pays for one. Its Elastic IP counts against the
    region's 5 Elastic IPs (Amazon EC2 User Guide, "Elastic IP address quotas"; the WireGuard hub holds another).

    The VPC's default security group is adopted with no rule at all (AWS Foundational Security Best Practices
    EC2.2): nothing in the mesh uses it, and an instance or interface launched into the VPC without a group
    gets no traffic rather than AWS's allow-within-group default. Adopting it removes the rules AWS created;
    the rule lists are given empty, so a rule added by hand shows as drift (pulumi-aws ``DefaultSecurityGroup``
    and ``SecurityGroup``: inline rules are absolute, ``[]`` removes them all). Removing the resource from the
    stack leaves the group as it is; deleting the VPC deletes it.
    """

    vpc_id: pulumi.Output[str]
    account_id: pulumi.Output[str]
    """The AWS account that owns the VPC (for resource policies that must name it; the program makes no lookup)."""
    cidr_block: pulumi.Output[str]
    route_table_id: pulumi.Output[str]
    """The subnets' route table. With ``peer`` its routes are all inline: never add a ``Route`` to it."""
    security_group_id: pulumi.Output[str]
    """The mesh security group. With ``peer`` its rules are all inline: never add a rule resource to it."""
    subnet_ids: pulumi.Output[dict[str, str]]
    subnets: dict[str, aws.ec2.Subnet]
    """Subnets by AZ id, for components that need one subnet's attributes (its AZ name, say)."""
    name_tag: str
    """The VPC's ``Name`` tag (what SkyPilot's ``aws.vpc_names`` finds it by)."""
    private_route_table_id: pulumi.Output[str] | None
    """The private subnets' route table (None: no private subnets). With ``peer`` its routes are all inline."""
    private_subnets: dict[str, aws.ec2.Subnet]
    """Private subnets by AZ id (empty: none)."""
    private_subnet_names: list[str]
    """The private subnets' ``Name`` tags (what SkyPilot's ``aws.subnet_names`` lists), by AZ id."""

    def __init__(self, name: str, *, args: RegionalVpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the VPC, its subnets, security group and closed default group from ``args``
        (:class:`RegionalVpcArgs`); ``opts.provider`` is the region's AWS provider."""
        super().__init__("lmrun:index:RegionalVpc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]
        cidr = args["cidr_block"]
        peer = args.get("peer")

        self.name_tag = f"{name}-vpc"
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=with_name(tags, self.name_tag),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=with_name(tags, f"{name}-igw"), opts=child)
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags=with_name(tags, f"{name}-default-sg"),
            opts=child,
        )

        self.subnets = {
            az_id: aws.ec2.Subnet(
                f"{name}-{slug(az_id)}",
                vpc_id=vpc.id,
                cidr_block=subnet_cidr,
                availability_zone_id=az_id,
                map_public_ip_on_launch=True,
                tags=with_name(tags, f"{name}-{az_id}"),
                opts=child,
            )
            for az_id, subnet_cidr in sorted(args["subnets"].items())
        }

        if peer is None:
            route_table_id, security_group_id = self._standalone(name, vpc, igw, cidr, tags, child)
        else:
            route_table_id, security_group_id = self._inline(name, vpc, igw, cidr, peer, tags, child)
        self.private_subnets = {}
        self.private_subnet_names = []
        self.private_route_table_id = None
        private = args.get("private_subnets")
        if private:
            self.private_route_table_id = self._private(name, vpc, igw, private, peer, tags, child)

        self.vpc_id = vpc.id
        self.account_id = vpc.owner_id
        self.cidr_block = vpc.cidr_block
        self.route_table_id = route_table_id
        self.security_group_id = security_group_id
        subnet_ids = {az_id: subnet.id for az_id, subnet in self.subnets.items()}
        self.subnet_ids = pulumi.Output.all(**subnet_ids) if subnet_ids else pulumi.Output.from_input({})
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "cidr_block": self.cidr_block,
                "route_table_id": self.route_table_id,
                "security_group_id": self.security_group_id,
                "subnet_ids": self.subnet_ids,
            }
        )

    def _private(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        igw: aws.ec2.InternetGateway,
        subnets: Mapping[str, str],
        peer: PeerRoute | None,
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        """Private subnets, the NAT gateway (with its Elastic IP) in the first AZ's public subnet, and their route
        table: inline routes with ``peer`` (a spoke), else a standalone internet route others add beside."""
        address = aws.ec2.Eip(f"{name}-nat-eip", domain="vpc", tags=with_name(tags, f"{name}-nat-eip"), opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,  # an Eip's id is its allocation id
            subnet_id=self.subnets[min(self.subnets)].id,
            connectivity_type="public",
            tags=with_name(tags, f"{name}-nat"),
            # A public NAT gateway needs the VPC's internet gateway attached (Amazon VPC User Guide, "NAT gateways").
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[igw])),
        )
        for az_id, subnet_cidr in sorted(subnets.items()):
            subnet_name = f"{self.name_tag}-private-{az_id}"
            self.private_subnets[az_id] = aws.ec2.Subnet(
                f"{name}-private-{slug(az_id)}",
                vpc_id=vpc.id,
                cidr_block=subnet_cidr,
                availability_zone_id=az_id,
                map_public_ip_on_launch=False,
                tags=with_name(tags, subnet_name),
                opts=child,
            )
            self.private_subnet_names.append(subnet_name)
        routes = None
        if peer is not None:
            routes = [
                aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id),
                aws.ec2.RouteTableRouteArgs(
                    cidr_block=peer["cidr_block"], vpc_peering_connection_id=peer["vpc_peering_connection_id"]
                ),
            ]
        # Inline routes (a spoke) or none at all here (the hub: standalone routes only), never both on one table.
        table = aws.ec2.RouteTable(
            f"{name}-private-rt", vpc_id=vpc.id, routes=routes, tags=with_name(tags, f"{name}-private-rt"), opts=child
        )
        if peer is None:
            aws.ec2.Route(
                f"{name}-private-internet",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
                opts=child,
            )
        for az_id, subnet in self.private_subnets.items():
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{slug(az_id)}-rt", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )
        return table.id

    def _standalone(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        igw: aws.ec2.InternetGateway,
        cidr: str,
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """Route table and security group whose routes and rules are separate resources (the hub's)."""
        route_table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=vpc.id, tags=with_name(tags, f"{name}-rt"), opts=child)
        aws.ec2.Route(
            f"{name}-internet",
            route_table_id=route_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        for az_id, subnet in self.subnets.items():
            aws.ec2.RouteTableAssociation(
                f"{name}-{slug(az_id)}-rt", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
            )

        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc.id,
            description=f"lmrun mesh nodes in {name}: inbound from mesh CIDRs only",
            tags=with_name(tags, f"{name}-sg"),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-sg-from-vpc",
            security_group_id=security_group.id,
            ip_protocol="-1",
            cidr_ipv4=cidr,
            description="all traffic from inside this VPC",
            tags=with_name(tags, f"{name}-sg-from-vpc"),
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-sg-egress",
            security_group_id=security_group.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="egress for packages, images and models",
            tags=with_name(tags, f"{name}-sg-egress"),
            opts=child,
        )
        return route_table.id, security_group.id

    def _inline(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        igw: aws.ec2.InternetGateway,
        cidr: str,
        peer: PeerRoute,
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The VPC's main route table and a security group, each carrying all its routes/rules inline."""
        # Adopting the default table clears whatever routes it has and keeps exactly these (and `local`).
        route_table = aws.ec2.DefaultRouteTable(
            f"{name}-rt",
            default_route_table_id=vpc.default_route_table_id,
            routes=[
                aws.ec2.DefaultRouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id),
                aws.ec2.DefaultRouteTableRouteArgs(
                    cidr_block=peer["cidr_block"], vpc_peering_connection_id=peer["vpc_peering_connection_id"]
                ),
            ],
            tags=with_name(tags, f"{name}-rt"),
            # Implied by the id, but explicit: offline readers find the table's VPC among its dependencies
            # even where the id is not known (a mock engine that does not compute it).
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[vpc])),
        )
        # One CIDR per inline rule, each with its description (the provider's advice for inline rules).
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc.id,
            description=f"lmrun mesh nodes in {name}: inbound from mesh CIDRs only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=[cidr],
                    description="all traffic from inside this VPC",
                ),
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=[peer["cidr_block"]],
                    description=f"all traffic from main region {peer['region']}",
                ),
            ],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                    description="egress for packages, images and models",
                )
            ],
            tags=with_name(tags, f"{name}-sg"),
            opts=child,
        )
        return route_table.id, security_group.id
