"""PeeringHub: peers every spoke VPC with the main VPC, with routes and security-group rules both ways.

Hub-and-spoke only: AWS VPC peering is not transitive (a peering drops packets whose destination is
outside the peer VPC), so spokes reach the main VPC and the main VPC reaches every spoke, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import slug, with_name


class PeerVpc(TypedDict):
    """One side of a peering: a VPC and the explicit provider of its region."""

    region: str
    """AWS region of the VPC."""
    cidr_block: str
    """The VPC's CIDR, known at plan time (routes and rules use it)."""
    vpc_id: pulumi.Input[str]
    """ID of the VPC."""
    route_table_id: pulumi.Input[str]
    """Route table that gets the route to the other side."""
    security_group_id: pulumi.Input[str]
    """Security group that gets an inbound rule for the other side's CIDR."""
    provider: aws.Provider
    """Provider for the VPC's region; every resource on this side uses it."""


class PeeringHubArgs(TypedDict):
    """Inputs of :class:`PeeringHub`."""

    main: PeerVpc
    """The hub VPC; it holds the accepter of every peering."""
    spokes: Mapping[str, PeerVpc]
    """Spoke VPCs by region name; names derive from these keys, never from positions."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""


class PeeringHub(pulumi.ComponentResource):
    """Requester in each spoke, accepter in the main region, routes and inbound rules on both sides."""

    peering_connection_ids: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, *, args: PeeringHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:PeeringHub", name, None, opts)
        main = args["main"]
        tags = args["tags"]
        on_main = pulumi.ResourceOptions(parent=self, provider=main["provider"])

        connection_ids: dict[str, pulumi.Output[str]] = {}
        for key, spoke in sorted(args["spokes"].items()):
            base = f"{name}-{slug(key)}"
            on_spoke = pulumi.ResourceOptions(parent=self, provider=spoke["provider"])
            request = aws.ec2.VpcPeeringConnection(
                base,
                vpc_id=spoke["vpc_id"],
                peer_vpc_id=main["vpc_id"],
                peer_region=main["region"],
                auto_accept=False,  # cross-region: only the accepter in the peer region can accept
                tags=with_name(tags, f"{spoke['region']} <-> {main['region']}"),
                opts=on_spoke,
            )
            accept = aws.ec2.VpcPeeringConnectionAccepter(
                f"{base}-accept",
                vpc_peering_connection_id=request.id,
                auto_accept=True,
                tags=with_name(tags, f"{spoke['region']} <-> {main['region']}"),
                opts=on_main,
            )
            # Routes take the id from the accepter so they wait until the peering is active.
            aws.ec2.Route(
                f"{base}-route-main",
                route_table_id=main["route_table_id"],
                destination_cidr_block=spoke["cidr_block"],
                vpc_peering_connection_id=accept.vpc_peering_connection_id,
                opts=on_main,
            )
            aws.ec2.Route(
                f"{base}-route-spoke",
                route_table_id=spoke["route_table_id"],
                destination_cidr_block=main["cidr_block"],
                vpc_peering_connection_id=accept.vpc_peering_connection_id,
                opts=on_spoke,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{base}-ingress-main",
                security_group_id=main["security_group_id"],
                ip_protocol="-1",
                cidr_ipv4=spoke["cidr_block"],
                description=f"all traffic from spoke {spoke['region']}",
                tags=with_name(tags, f"{base}-ingress-main"),
                opts=on_main,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{base}-ingress-spoke",
                security_group_id=spoke["security_group_id"],
                ip_protocol="-1",
                cidr_ipv4=main["cidr_block"],
                description=f"all traffic from main region {main['region']}",
                tags=with_name(tags, f"{base}-ingress-spoke"),
                opts=on_spoke,
            )
            connection_ids[key] = accept.vpc_peering_connection_id

        self.peering_connection_ids = (
            pulumi.Output.all(**connection_ids) if connection_ids else pulumi.Output.from_input({})
        )
        self.register_outputs({"peering_connection_ids": self.peering_connection_ids})
