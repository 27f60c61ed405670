"""Sites: every non-AWS location of the mesh — keys, the hub gateway, sites of site clouds (built by their
cloud through :mod:`lmrun.components.site_cloud`), external join bundles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NotRequired, TypedDict

import pulumi

from lmrun.clouds import EXTERNAL_SITE
from lmrun.components.naming import slug
from lmrun.components.site_cloud import SiteArgs, site_cloud
from lmrun.components.vpc import RegionalVpc
from lmrun.components.wireguard_hub import WireGuardHub, WireGuardKey, wireguard_key
from lmrun.domain.access import WIREGUARD_HUB
from lmrun.domain.names import TAG_REGION, TAG_ROLE
from lmrun.plan.cluster import NodePlan
from lmrun.plan.sites import SitePlan, WireGuardPlan
from lmrun.render.wireguard import Config, join_bundle, site_config


class SitesArgs(TypedDict):
    """Inputs of :class:`Sites`."""

    plan: WireGuardPlan
    """Hub and sites, decided by :func:`lmrun.plan.sites.plan_wireguard`."""
    main_vpc: RegionalVpc
    """The main region's VPC (the hub lives in its first subnet)."""
    main_subnet_az: str
    """AZ id of the hub's subnet."""
    parameter_prefix: str
    """SSM path prefix of the mesh."""
    k3s_agent_token: pulumi.Input[str]
    """K3s agent token (secret), for the stores of site clouds (never the server token)."""
    k3s_server_ip: str
    """The K3s server's private IP (reached through the tunnel)."""
    k3s_version: str
    """Pinned K3s release for site nodes."""
    nodes: Sequence[NodePlan]
    """GPU nodes placed in sites (each goes to its site's cloud)."""
    hugging_face_token: pulumi.Input[str] | None
    """Hugging Face token (secret) or None."""
    tags: Mapping[str, str]
    """Tags (AWS) / labels (GCP, lower-cased) for every resource."""
    phoenix_ingest_key: NotRequired[pulumi.Input[str] | None]
    """Phoenix ingest key (secret) for GCP sites' Secret Manager, so their nodes' vLLM exports traces; None
    (or absent) when Phoenix is disabled or no GCP site has nodes."""
    phoenix_grpc_node_port: NotRequired[int | None]
    """Phoenix's OTLP/gRPC node port; required with ``phoenix_ingest_key``."""


def _site_config(site: SitePlan, plan: WireGuardPlan, values: list[Any]) -> Config:
    private, hub_public, hub_ip = values
    if plan.hub is None:
        raise ValueError("sites need a hub")
    config = site_config(
        private_key=private,
        tunnel_address=site.tunnel_address,
        hub_public_key=hub_public,
        hub_endpoint_host=hub_ip,
        hub_tunnel_address=plan.hub.tunnel_address,
        mesh_cidrs=plan.aws_routes,
        mtu=site.mtu,
        hub_listen_port=plan.hub.port,
        behind_nat=site.persistent_keepalive is not None,
    )
    return config


def _bundle(site: SitePlan, plan: WireGuardPlan, values: list[Any]) -> dict[str, str]:
    bundle = join_bundle(site.name, _site_config(site, plan, values))
    return {
        "config": bundle.config,
        "bootstrap": bundle.bootstrap,
        "config_filename": bundle.config_filename,
        "script_filename": bundle.script_filename,
    }


class Sites(pulumi.ComponentResource):
    """Site keys (rotated by ``keyEpoch``), the hub, one component per site of a site cloud (built by that
    cloud), join bundles for external sites."""

    hub: WireGuardHub | None
    cloud_sites: dict[str, pulumi.ComponentResource]
    """Site name -> the component its cloud built (sites of a site cloud; external sites have none)."""
    keys: dict[str, WireGuardKey]
    join_bundles: pulumi.Output[dict[str, dict[str, str]]]
    """External site -> ``{config, bootstrap, config_filename, script_filename}`` (a secret)."""

    def __init__(self, name: str, *, args: SitesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the site keys, the WireGuard hub and every site of ``args`` (:class:`SitesArgs`); ``opts``
        carries the main region's AWS provider and the random provider (each site cloud builds its own)."""
        super().__init__("lmrun:index:Sites", name, None, opts)
        plan = args["plan"]
        child = pulumi.ResourceOptions(parent=self)
        self.keys = {
            site.name: wireguard_key(f"{name}-{slug(site.name)}-key", epoch=site.key_epoch, opts=child)
            for site in plan.sites.values()
        }
        self.hub = None
        self.cloud_sites = {}
        bundles: dict[str, pulumi.Output[dict[str, str]]] = {}
        if plan.hub is not None:
            vpc = args["main_vpc"]
            subnet = vpc.subnets[args["main_subnet_az"]]
            self.hub = WireGuardHub(
                f"{name}-hub",
                args={
                    "region": plan.hub.region,
                    "private_ip": plan.hub.private_ip,
                    "instance_type": plan.hub.instance_type,
                    "port": plan.hub.port,
                    "tunnel_address": plan.hub.tunnel_address,
                    "mtu": min(site.mtu for site in plan.sites.values()),
                    "ami_id": plan.hub.image,
                    "subnet_id": subnet.id,
                    "vpc_id": vpc.vpc_id,
                    "mesh_security_group_id": vpc.security_group_id,
                    "route_table_id": vpc.route_table_id,
                    "private_route_table_id": vpc.private_route_table_id,
                    "sites": [
                        {
                            "name": site.name,
                            "cidr": site.cidr,
                            "tunnel_address": site.tunnel_address,
                            "public_key": self.keys[site.name].public_key,
                        }
                        for site in plan.sites.values()
                    ],
                    "parameter_prefix": args["parameter_prefix"],
                    "tags": {**args["tags"], TAG_REGION: plan.hub.region, TAG_ROLE: WIREGUARD_HUB},
                },
                opts=child,
            )
            for site in plan.sites.values():
                if site.kind == EXTERNAL_SITE:
                    values = pulumi.Output.all(
                        self.keys[site.name].private_key, self.hub.public_key, self.hub.public_ip
                    )
                    bundles[site.name] = values.apply(partial(_bundle, site, plan))
                    continue
                site_args: SiteArgs = {
                    "site": site,
                    "private_key": self.keys[site.name].private_key,
                    "hub_public_key": self.hub.public_key,
                    "hub_endpoint": self.hub.public_ip,
                    "hub_port": plan.hub.port,
                    "hub_tunnel_address": plan.hub.tunnel_address,
                    "aws_routes": plan.aws_routes,
                    "k3s_agent_token": args["k3s_agent_token"],
                    "k3s_server_ip": args["k3s_server_ip"],
                    "k3s_version": args["k3s_version"],
                    "nodes": [node for node in args["nodes"] if node.site == site.name],
                    "hugging_face_token": args["hugging_face_token"],
                    "tags": args["tags"],
                    "phoenix_ingest_key": args.get("phoenix_ingest_key"),
                    "phoenix_grpc_node_port": args.get("phoenix_grpc_node_port"),
                }
                self.cloud_sites[site.name] = site_cloud(site.kind).build_site(
                    f"{name}-{slug(site.name)}", site_args, child
                )
        self.join_bundles = pulumi.Output.secret(pulumi.Output.all(**bundles) if bundles else {})
        self.register_outputs({"join_bundles": self.join_bundles})
