"""Mesh: the whole stack from a :class:`MeshPlan` — providers, VPCs and the peering hub (the fabric), the
K3s cluster with GPU nodes, node ports and Phoenix, and the WireGuard sites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_random as random

from lmrun.components.cluster import Cluster
from lmrun.components.flow_logs import FlowLogs
from lmrun.components.naming import slug
from lmrun.components.peering import PeeringHub, SpokeVpc
from lmrun.components.sites import Sites
from lmrun.components.skypilot import SkyPilotInfra, sky_facts
from lmrun.components.skyserve import ServeControllerIdentity
from lmrun.components.vpc import RegionalVpc, RegionalVpcArgs
from lmrun.domain.names import TAG_REGION, TAG_ROLE
from lmrun.domain.secrets import SecretPaths
from lmrun.domain.skypilot import joining_credential_path
from lmrun.plan.mesh import MeshPlan, RegionPlan
from lmrun.render.kubernetes import ElasticNodePort


class MeshArgs(TypedDict):
    """Inputs of :class:`Mesh`."""

    plan: MeshPlan
    """The decided mesh (see :func:`lmrun.plan.plan_mesh`); the component adds no decisions of its own."""
    hugging_face_token: pulumi.Input[str] | None
    """Hugging Face token (secret) for gated models, or None."""
    k3s_api_server: NotRequired[str | None]
    """Where the machine running `pulumi up` reaches the K3s API (e.g. ``https://localhost:6443`` through an SSM
    port forward), for the Kubernetes provider; None or absent: the address the server published."""


class Mesh(pulumi.ComponentResource):
    """One explicit AWS provider per region, a :class:`RegionalVpc` per region, the peering hub, and the
    K3s cluster with its GPU nodes and node ports."""

    providers: dict[str, aws.Provider]
    vpcs: dict[str, RegionalVpc]
    cluster: Cluster
    vpc_ids: pulumi.Output[dict[str, str]]
    peering_connection_ids: pulumi.Output[dict[str, str]]
    kubeconfig: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    node_ports: pulumi.Output[dict[str, int]]
    sites: Sites | None
    join_bundles: pulumi.Output[dict[str, dict[str, str]]]
    skypilot: dict[str, Any] | None
    """What ``lmrun sky render`` needs (:class:`lmrun.render.skypilot.SkyPilotMesh`, plain), or None."""

    def __init__(self, name: str, *, args: MeshArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the whole mesh from ``args`` (:class:`MeshArgs`: the plan); it creates every provider it
        needs, so ``opts`` needs none."""
        super().__init__("lmrun:index:Mesh", name, None, opts)
        plan = args["plan"]
        self.providers = {
            region: aws.Provider(f"{name}-aws-{slug(region)}", region=region, opts=pulumi.ResourceOptions(parent=self))
            for region in plan.regions
        }
        # Each spoke's route table carries its route into the peering inline, but the peering needs the
        # spoke's VPC first: a deferred output per spoke breaks that cycle and is resolved from the hub below.
        peering_ids: dict[str, tuple[pulumi.Output[str], Callable[[pulumi.Output[str]], None]]] = {
            spoke.name: pulumi.deferred_output() for spoke in plan.spokes
        }
        private = plan.skypilot.private_subnets if plan.skypilot is not None else {}
        self.vpcs = {}
        for region in plan.regions.values():
            vpc_args: RegionalVpcArgs = {
                "cidr_block": region.cidr,
                "subnets": {subnet.az_id: subnet.cidr for subnet in region.subnets},
                "tags": {**plan.tags, TAG_REGION: region.name, TAG_ROLE: region.role},
            }
            if region.name in private:
                vpc_args["private_subnets"] = private[region.name]
            if region.name in peering_ids:
                vpc_args["peer"] = {
                    "region": plan.main.name,
                    "cidr_block": plan.main.cidr,
                    "vpc_peering_connection_id": peering_ids[region.name][0],
                }
            self.vpcs[region.name] = RegionalVpc(
                f"{name}-{slug(region.name)}",
                args=vpc_args,
                opts=pulumi.ResourceOptions(parent=self, provider=self.providers[region.name]),
            )
        main_vpc = self.vpcs[plan.main.name]
        hub = PeeringHub(
            f"{name}-peering",
            args={
                "main": {
                    **self._side(plan.main),
                    "route_table_id": main_vpc.route_table_id,
                    "security_group_id": main_vpc.security_group_id,
                    "private_route_table_id": main_vpc.private_route_table_id,
                },
                "spokes": {spoke.name: self._side(spoke) for spoke in plan.spokes},
                "tags": plan.tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        for spoke_name, (_, resolve) in peering_ids.items():
            resolve(hub.connection_ids[spoke_name])
        if plan.flow_logs is not None:
            FlowLogs(
                f"{name}-flow-logs",
                args={
                    "plan": plan.flow_logs,
                    "vpcs": {
                        region.name: {
                            "vpc_id": self.vpcs[region.name].vpc_id,
                            "provider": self.providers[region.name],
                            "tags": {**plan.tags, TAG_REGION: region.name, TAG_ROLE: "flow-logs"},
                        }
                        for region in plan.regions.values()
                    },
                    "account_id": main_vpc.account_id,
                    "tags": {**plan.tags, TAG_REGION: plan.main.name, TAG_ROLE: "flow-logs"},
                },
                opts=pulumi.ResourceOptions(parent=self, provider=self.providers[plan.main.name]),
            )

        # Explicit providers for the non-cloud packages too: stacks disable every default provider.
        utility_providers: list[pulumi.ProviderResource] = [
            random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self)),
            command.Provider(f"{name}-command", opts=pulumi.ResourceOptions(parent=self)),
        ]
        self.cluster = Cluster(
            f"{name}-cluster",
            args={
                "plan": plan.cluster,
                "parameter_prefix": SecretPaths.for_mesh(plan.mesh).prefix,
                "providers": self.providers,
                "vpcs": self.vpcs,
                "hugging_face_token": args["hugging_face_token"],
                "k3s_api_server": args.get("k3s_api_server"),
                "tags": plan.tags,
                "elastic": [
                    ElasticNodePort(service.name, service.node_port)
                    for service in (plan.skypilot.elastic if plan.skypilot is not None else ())
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, providers=utility_providers),
        )

        self.sites = None
        if plan.wireguard.sites:
            self.sites = Sites(
                f"{name}-sites",
                args={
                    "plan": plan.wireguard,
                    "main_vpc": self.vpcs[plan.main.name],
                    "main_subnet_az": plan.main.subnets[0].az_id,
                    "parameter_prefix": SecretPaths.for_mesh(plan.mesh).prefix,
                    "k3s_agent_token": self.cluster.server.agent_token,
                    "k3s_server_ip": plan.cluster.server.private_ip,
                    "k3s_version": plan.cluster.server.k3s_version,
                    "nodes": [node for node in plan.cluster.nodes.values() if node.site is not None],
                    "hugging_face_token": args["hugging_face_token"],
                    "tags": plan.tags,
                    "phoenix_ingest_key": self.cluster.phoenix_ingest_key,
                    "phoenix_grpc_node_port": (
                        plan.cluster.phoenix.grpc_node_port
                        if plan.cluster.phoenix is not None and self.cluster.phoenix_ingest_key is not None
                        else None
                    ),
                },
                opts=pulumi.ResourceOptions(
                    parent=self, providers=[self.providers[plan.main.name], *utility_providers]
                ),
            )
        self.skypilot = None
        if plan.skypilot is not None:
            paths = SecretPaths.for_mesh(plan.mesh)
            arns = {joining_credential_path(paths): self.cluster.server.agent_token_parameter_arn}
            if self.cluster.ingest_key_parameter_arn is not None:
                arns[paths.phoenix("ingest-key")] = self.cluster.ingest_key_parameter_arn
            SkyPilotInfra(
                f"{name}-skypilot",
                args={
                    "plan": plan.skypilot,
                    "main_region": plan.main.name,
                    "vpc_ids": {region: vpc.vpc_id for region, vpc in self.vpcs.items()},
                    "mesh_security_group_ids": {region: vpc.security_group_id for region, vpc in self.vpcs.items()},
                    "providers": self.providers,
                    "reads": arns,
                    "tags": plan.tags,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            controller = plan.skypilot.controller
            if controller is not None:
                ServeControllerIdentity(
                    f"{name}-skyserve",
                    args={
                        "plan": controller,
                        "replica_identity": plan.skypilot.name,
                        "account_id": self.vpcs[plan.main.name].account_id,
                        # It launches replicas into the private regions only (the proxy's regions, too).
                        "vpcs": {region: self.vpcs[region].vpc_id for region in plan.skypilot.private_regions},
                        "reads": {path: arns[path] for path in controller.reads},
                        "session_manager": plan.skypilot.use_ssm,
                        "main_region": plan.main.name,
                        "tags": plan.tags,
                    },
                    opts=pulumi.ResourceOptions(parent=self, provider=self.providers[plan.main.name]),
                )
            facts = sky_facts(
                plan,
                {region: vpc.name_tag for region, vpc in self.vpcs.items()},
                [name for vpc in self.vpcs.values() for name in vpc.private_subnet_names],
            )
            self.skypilot = facts.to_json()
        self.join_bundles = self.sites.join_bundles if self.sites is not None else pulumi.Output.secret({})

        self.vpc_ids = pulumi.Output.all(**{region: vpc.vpc_id for region, vpc in self.vpcs.items()})
        self.peering_connection_ids = hub.peering_connection_ids
        self.kubeconfig = self.cluster.kubeconfig
        self.api_endpoint = self.cluster.api_endpoint
        self.node_ports = self.cluster.node_ports
        self.register_outputs(
            {
                "vpc_ids": self.vpc_ids,
                "peering_connection_ids": self.peering_connection_ids,
                "kubeconfig": self.kubeconfig,
                "api_endpoint": self.api_endpoint,
                "node_ports": self.node_ports,
                "join_bundles": self.join_bundles,
            }
        )

    def _side(self, region: RegionPlan) -> SpokeVpc:
        return {
            "region": region.name,
            "cidr_block": region.cidr,
            "vpc_id": self.vpcs[region.name].vpc_id,
            "provider": self.providers[region.name],
        }
