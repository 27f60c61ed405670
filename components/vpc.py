"""RegionalVpc: one region's VPC with an internet route, one subnet per AZ and a mesh security group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import slug, with_name


class RegionalVpcArgs(TypedDict):
    """Inputs of :class:`RegionalVpc`. The AWS provider for the region comes in ``opts.provider``."""

    cidr_block: str
    """The VPC's IPv4 CIDR (a /16 from the mesh address plan)."""
    subnets: Mapping[str, str]
    """AZ id -> subnet CIDR; resources are named by AZ id so adding an AZ never renames another."""
    tags: Mapping[str, str]
    """Tags for every resource of the VPC (a ``Name`` is added per resource)."""


class RegionalVpc(pulumi.ComponentResource):
    """A VPC with no NAT gateway (instances use public subnets and are closed by security groups).

    Inbound traffic is allowed only from the VPC itself; the peering hub adds rules for peer CIDRs.
    Egress is open so nodes can fetch packages and models.
    """

    vpc_id: pulumi.Output[str]
    cidr_block: pulumi.Output[str]
    route_table_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[dict[str, str]]
    subnets: dict[str, aws.ec2.Subnet]
    """Subnets by AZ id, for components that need one subnet's attributes (its AZ name, say)."""

    def __init__(self, name: str, *, args: RegionalVpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:RegionalVpc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args["cidr_block"],
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=with_name(tags, f"{name}-vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=with_name(tags, f"{name}-igw"), opts=child)
        route_table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=vpc.id, tags=with_name(tags, f"{name}-rt"), opts=child)
        aws.ec2.Route(
            f"{name}-internet",
            route_table_id=route_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        self.subnets = {}
        subnet_ids: dict[str, pulumi.Output[str]] = {}
        for az_id, cidr in sorted(args["subnets"].items()):
            subnet = aws.ec2.Subnet(
                f"{name}-{slug(az_id)}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone_id=az_id,
                map_public_ip_on_launch=True,
                tags=with_name(tags, f"{name}-{az_id}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{slug(az_id)}-rt", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
            )
            subnet_ids[az_id] = subnet.id
            self.subnets[az_id] = subnet

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
            cidr_ipv4=args["cidr_block"],
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

        self.vpc_id = vpc.id
        self.cidr_block = vpc.cidr_block
        self.route_table_id = route_table.id
        self.security_group_id = security_group.id
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
