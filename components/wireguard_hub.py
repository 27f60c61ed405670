"""WireGuardHub: the main region's gateway that non-AWS sites tunnel into.

A small instance with an Elastic IP and one UDP port open to the world (the only world-open ingress of the
mesh), source/destination check off and forwarding on. The main VPC routes every site's CIDR and the tunnel
range to it (from its private route table too, when SkyPilot's private subnets are there), and its security
group admits them. Its config — private key and one peer per site — is a SecureString in SSM; the instance
fetches it by name and re-applies it when it changes, so adding a site or rotating a site's key updates the
hub's peer entry without replacing the hub.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.components.instance_role import InstanceRole
from lmrun.components.instances import mesh_instance
from lmrun.components.naming import slug, with_name
from lmrun.domain.addresses import TUNNEL_POOL
from lmrun.domain.secrets import SecretPaths
from lmrun.render.gateways import render_gateway_user_data
from lmrun.render.wireguard import (
    SitePeer,
    hub_config,
    private_key_from_bytes,
    public_key,
    render_wg_quick,
)

HUB_CONFIG_TIER = "Intelligent-Tiering"
"""SSM tier of the hub's config parameter: up to 8 KB (Advanced) once it outgrows Standard's 4 KB."""


@dataclass(frozen=True)
class WireGuardKey:
    """A WireGuard key pair generated in the stack: the private half stays a Pulumi secret."""

    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]


def wireguard_key(name: str, *, epoch: int, opts: pulumi.ResourceOptions) -> WireGuardKey:
    """32 random bytes (replaced when ``epoch`` changes), clamped like ``wg genkey``; public key derived."""
    raw = random.RandomBytes(name, length=32, keepers={"keyEpoch": str(epoch)}, opts=opts)

    def clamp(b64: str) -> str:
        return private_key_from_bytes(base64.b64decode(b64))

    private: pulumi.Output[str] = pulumi.Output.secret(raw.base64.apply(clamp))
    # The public half is not secret; unwrap it so it can appear in plans and peer entries.
    public = pulumi.Output.unsecret(private.apply(public_key))
    return WireGuardKey(private, public)


class HubSite(TypedDict):
    """One site as the hub sees it."""

    name: str
    """Site name (the peer's name)."""
    cidr: str
    """The site's network."""
    tunnel_address: str
    """The site's address in the tunnel range."""
    public_key: pulumi.Input[str]
    """The site's WireGuard public key."""


class WireGuardHubArgs(TypedDict):
    """Inputs of :class:`WireGuardHub`. The main region's AWS provider comes in ``opts.provider``."""

    region: str
    """Main region (also where the config parameter lives)."""
    private_ip: str
    """Fixed private IP in ``subnet_id``."""
    instance_type: str
    """Gateway instance type."""
    port: int
    """UDP listen port."""
    tunnel_address: str
    """The hub's address in the tunnel range."""
    mtu: int
    """Tunnel MTU of the hub interface (the smallest of the sites')."""
    ami_id: pulumi.Input[str]
    """Amazon Linux 2023 (AWS CLI, SSM agent, WireGuard in the kernel)."""
    subnet_id: pulumi.Input[str]
    """Public subnet of the main VPC."""
    vpc_id: pulumi.Input[str]
    """The main VPC."""
    mesh_security_group_id: pulumi.Input[str]
    """The main VPC's mesh security group: the hub joins it, and it admits the sites' CIDRs."""
    route_table_id: pulumi.Input[str]
    """The main VPC's route table: every site CIDR and the tunnel range route to the hub."""
    private_route_table_id: NotRequired[pulumi.Input[str] | None]
    """The main VPC's private route table (SkyPilot's VMs), which gets the same routes; None: none."""
    sites: Sequence[HubSite]
    """Every site, keyed by name (adding one only adds its routes and rules)."""
    parameter_prefix: str
    """SSM path prefix of the mesh."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""


class WireGuardHub(pulumi.ComponentResource):
    """Gateway instance, Elastic IP, config in SSM, routes and rules for the sites."""

    public_ip: pulumi.Output[str]
    public_key: pulumi.Output[str]
    config_parameter_name: pulumi.Output[str]

    def __init__(self, name: str, *, args: WireGuardHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the gateway, its key and its routes and rules from ``args`` (:class:`WireGuardHubArgs`);
        ``opts`` carries the main region's AWS provider and the random provider."""
        super().__init__("lmrun:index:WireGuardHub", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]
        sites = sorted(args["sites"], key=lambda s: s["name"])
        key = wireguard_key(f"{name}-key", epoch=0, opts=child)

        def render(values: list[Any]) -> str:
            private, *site_keys = values
            peers = [
                SitePeer(name=s["name"], cidr=s["cidr"], tunnel_address=s["tunnel_address"], public_key=k)
                for s, k in zip(sites, site_keys, strict=True)
            ]
            config = hub_config(
                private_key=private,
                tunnel_address=args["tunnel_address"],
                sites=peers,
                mtu=args["mtu"],
                listen_port=args["port"],
            )
            return render_wg_quick(config)

        config_name = SecretPaths(args["parameter_prefix"]).wireguard_hub
        rendered: pulumi.Output[str] = pulumi.Output.all(key.private_key, *(s["public_key"] for s in sites)).apply(
            render
        )
        secret_config: pulumi.Output[str] = pulumi.Output.secret(rendered)
        config = aws.ssm.Parameter(
            f"{name}-config",
            name=config_name,
            type="SecureString",
            # ~140 bytes per site: a Standard parameter (4,096 characters) is full at ~28 sites. Intelligent-
            # Tiering stores it as Standard while it fits and as Advanced (8 KB) beyond, the ~48 sites the main
            # route table allows (AWS Systems Manager User Guide, "Managing parameter tiers").
            tier=HUB_CONFIG_TIER,
            value=secret_config,
            description="WireGuard hub config (private key, one peer per site); read by the hub at boot",
            tags=with_name(tags, f"{name}-config"),
            opts=child,
        )
        identity = InstanceRole(
            f"{name}-identity", args={"reads": [config.arn], "writes": [], "tags": tags}, opts=child
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args["vpc_id"],
            description=f"WireGuard hub: UDP {args['port']} from anywhere (sites behind NAT connect in)",
            tags=with_name(tags, f"{name}-sg"),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-sg-wireguard",
            security_group_id=group.id,
            ip_protocol="udp",
            from_port=args["port"],
            to_port=args["port"],
            cidr_ipv4="0.0.0.0/0",
            description="WireGuard handshakes and tunnel traffic (authenticated by keys)",
            tags=with_name(tags, f"{name}-sg-wireguard"),
            opts=child,
        )
        address = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags=with_name(tags, f"{name}-eip"), opts=child)
        instance = mesh_instance(
            f"{name}-instance",
            ami=args["ami_id"],
            instance_type=args["instance_type"],
            subnet_id=args["subnet_id"],
            private_ip=args["private_ip"],
            source_dest_check=False,  # it forwards between the tunnel and the VPC
            security_group_ids=[args["mesh_security_group_id"], group.id],
            instance_profile=identity.instance_profile_name,
            user_data=render_gateway_user_data(
                store=SsmParameterStore(args["region"]),
                config_secret=config_name,
                description="WireGuard hub gateway",
            ),
            root_gb=10,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config]),
        )
        aws.ec2.EipAssociation(f"{name}-eip-association", allocation_id=address.id, instance_id=instance.id, opts=child)

        private_table = args.get("private_route_table_id")
        for destination, key_name in [(s["cidr"], s["name"]) for s in sites] + [(str(TUNNEL_POOL), "tunnels")]:
            aws.ec2.Route(
                f"{name}-route-{slug(key_name)}",
                route_table_id=args["route_table_id"],
                destination_cidr_block=destination,
                network_interface_id=instance.primary_network_interface_id,
                opts=child,
            )
            if private_table is not None:
                aws.ec2.Route(
                    f"{name}-route-private-{slug(key_name)}",
                    route_table_id=private_table,
                    destination_cidr_block=destination,
                    network_interface_id=instance.primary_network_interface_id,
                    opts=child,
                )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-{slug(key_name)}",
                security_group_id=args["mesh_security_group_id"],
                ip_protocol="-1",
                cidr_ipv4=destination,
                description=f"all traffic from {key_name} through the WireGuard hub",
                tags=with_name(tags, f"{name}-from-{key_name}"),
                opts=child,
            )

        self.public_ip = address.public_ip
        self.public_key = key.public_key
        self.config_parameter_name = config.name
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "public_key": self.public_key,
                "config_parameter_name": self.config_parameter_name,
            }
        )
