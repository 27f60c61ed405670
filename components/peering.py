"""PeeringHub: peers every spoke VPC with the main VPC, with the main side's route and rule per spoke.

Hub-and-spoke only: AWS VPC peering is not transitive (a peering drops packets whose destination is
outside the peer VPC), so spokes reach the main VPC and the main VPC reaches every spoke, nothing more.
The spoke side's route and inbound rule are not made here: every spoke VPC carries them inline in its own
route table and security group (:class:`~lmrun.components.vpc.RegionalVpc` with ``peer``), fed with the
ids this component exposes per spoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import slug, with_name


class SpokeVpc(TypedDict):
    """A spoke of the hub: a VPC and the explicit provider of its region."""

    region: str
    """AWS region of the VPC."""
    cidr_block: str
    """The VPC's CIDR, known at plan time (the main side's route and rule use it)."""
    vpc_id: pulumi.Input[str]
    """ID of the VPC."""
    provider: aws.Provider
    """Provider for the VPC's region; the peering request uses it."""


class PeerVpc(SpokeVpc):
    """The hub: a spoke's fields plus the route table and security group that get one route and one inbound
    rule per spoke, as separate resources (so adding a spoke only adds resources)."""

    route_table_id: pulumi.Input[str]
    """Route table that gets the route to each spoke (its routes must all be standalone ``Route``s)."""
    security_group_id: pulumi.Input[str]
    """Security group that gets an inbound rule per spoke CIDR (its rules must all be standalone)."""
    private_route_table_id: NotRequired[pulumi.Input[str] | None]
    """The private subnets' route table (SkyPilot's VMs), which gets the same route per spoke; None: none."""


class PeeringHubArgs(TypedDict):
    """Inputs of :class:`PeeringHub`."""

    main: PeerVpc
    """The hub VPC; it holds the accepter of every peering."""
    spokes: Mapping[str, SpokeVpc]
    """Spoke VPCs by region name; names derive from these keys, never from positions."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""


class PeeringHub(pulumi.ComponentResource):
    """Requester in each spoke, accepter in the main region, and the main side's route and inbound rule."""

    peering_connection_ids: pulumi.Output[dict[str, str]]
    connection_ids: dict[str, pulumi.Output[str]]
    """Spoke key -> the peering's id as the accepter outputs it (resolves once the peering is active):
    what a spoke's route into the peering should use."""

    def __init__(self, name: str, *, args: PeeringHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare a peering per spoke of ``args`` (:class:`PeeringHubArgs`), each VPC on the provider that
        comes with it."""
        super().__init__("lmrun:index:PeeringHub", name, None, opts)
        main = args["main"]
        tags = args["tags"]
        on_main = pulumi.ResourceOptions(parent=self, provider=main["provider"])
        private_table = main.get("private_route_table_id")

        self.connection_ids = {}
        for key, spoke in sorted(args["spokes"].items()):
            base = f"{name}-{slug(key)}"
            request = aws.ec2.VpcPeeringConnection(
                base,
                vpc_id=spoke["vpc_id"],
                peer_vpc_id=main["vpc_id"],
                peer_region=main["region"],
                auto_accept=False,  # cross-region: only the accepter in the peer region can accept
                tags=with_name(tags, f"{spoke['region']} to {main['region']}"),
                opts=pulumi.ResourceOptions(parent=self, provider=spoke["provider"]),
            )
            accept = aws.ec2.VpcPeeringConnectionAccepter(
                f"{base}-accept",
                vpc_peering_connection_id=request.id,
                auto_accept=True,
                tags=with_name(tags, f"{spoke['region']} to {main['region']}"),
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
            if private_table is not None:
                aws.ec2.Route(
                    f"{base}-route-main-private",
                    route_table_id=private_table,
                    destination_cidr_block=spoke["cidr_block"],
                    vpc_peering_connection_id=accept.vpc_peering_connection_id,
                    opts=on_main,
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
            self.connection_ids[key] = accept.vpc_peering_connection_id

        self.peering_connection_ids = (
            pulumi.Output.all(**self.connection_ids) if self.connection_ids else pulumi.Output.from_input({})
        )
        self.register_outputs({"peering_connection_ids": self.peering_connection_ids})
