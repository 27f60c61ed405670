"""Mesh: the whole stack's fabric from a :class:`MeshPlan` (providers, VPCs, peering hub)."""

from __future__ import annotations

from typing import TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import slug
from lmrun.components.peering import PeeringHub, PeerVpc
from lmrun.components.vpc import RegionalVpc
from lmrun.plan.mesh import MeshPlan, RegionPlan


class MeshArgs(TypedDict):
    """Inputs of :class:`Mesh`."""

    plan: MeshPlan
    """The decided mesh (see :func:`lmrun.plan.plan_mesh`); the component adds no decisions of its own."""


class Mesh(pulumi.ComponentResource):
    """One explicit AWS provider per region, a :class:`RegionalVpc` per region, and the peering hub."""

    providers: dict[str, aws.Provider]
    vpcs: dict[str, RegionalVpc]
    vpc_ids: pulumi.Output[dict[str, str]]
    peering_connection_ids: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, *, args: MeshArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:Mesh", name, None, opts)
        plan = args["plan"]
        self.providers = {
            region: aws.Provider(f"{name}-aws-{slug(region)}", region=region, opts=pulumi.ResourceOptions(parent=self))
            for region in plan.regions
        }
        self.vpcs = {
            region.name: RegionalVpc(
                f"{name}-{slug(region.name)}",
                args={
                    "cidr_block": region.cidr,
                    "subnets": {subnet.az_id: subnet.cidr for subnet in region.subnets},
                    "tags": {**plan.tags, "lmrun:region": region.name, "lmrun:role": region.role},
                },
                opts=pulumi.ResourceOptions(parent=self, provider=self.providers[region.name]),
            )
            for region in plan.regions.values()
        }
        hub = PeeringHub(
            f"{name}-peering",
            args={
                "main": self._peer(plan.main),
                "spokes": {spoke.name: self._peer(spoke) for spoke in plan.spokes},
                "tags": plan.tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.vpc_ids = pulumi.Output.all(**{region: vpc.vpc_id for region, vpc in self.vpcs.items()})
        self.peering_connection_ids = hub.peering_connection_ids
        self.register_outputs({"vpc_ids": self.vpc_ids, "peering_connection_ids": self.peering_connection_ids})

    def _peer(self, region: RegionPlan) -> PeerVpc:
        vpc = self.vpcs[region.name]
        return {
            "region": region.name,
            "cidr_block": region.cidr,
            "vpc_id": vpc.vpc_id,
            "route_table_id": vpc.route_table_id,
            "security_group_id": vpc.security_group_id,
            "provider": self.providers[region.name],
        }
