"""What the mesh asks of a site cloud: build one site (its network, its gateway into the WireGuard tunnel,
its secrets and its GPU nodes) from cloud-neutral inputs.

Each site cloud's ``<pkg>.site`` module exposes ``SITES`` implementing :class:`SiteCloud`; :class:`Sites`
reaches it by the site's kind through :func:`lmrun.clouds.cloud_module`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NotRequired, Protocol, TypedDict, cast

import pulumi

from lmrun.clouds import cloud_module
from lmrun.plan.cluster import NodePlan
from lmrun.plan.sites import SitePlan


class SiteArgs(TypedDict):
    """Cloud-neutral inputs of one site. No provider comes in: a site cloud creates its own (its account,
    project or subscription is in the site plan)."""

    site: SitePlan
    """The site: its cloud location, CIDR, gateway IP, tunnel address, MTU, keepalive."""
    private_key: pulumi.Input[str]
    """The site's WireGuard private key (base64), a Pulumi secret; it may only reach the cloud's secret store."""
    hub_public_key: pulumi.Input[str]
    """The hub's WireGuard public key."""
    hub_endpoint: pulumi.Input[str]
    """The hub's Elastic IP (an IPv4 address): the only source the site's WireGuard ingress may admit."""
    hub_port: int
    """The hub's WireGuard UDP port; the site gateway listens on the same port."""
    hub_tunnel_address: str
    """The hub's address in the tunnel range."""
    aws_routes: Sequence[str]
    """CIDRs the site routes into the tunnel (main region + tunnel range)."""
    k3s_agent_token: pulumi.Input[str]
    """K3s agent token (a Pulumi secret), for the site's nodes (never the server token)."""
    k3s_server_ip: str
    """The K3s server's private IP, reached through the tunnel."""
    k3s_version: str
    """Pinned K3s release for the nodes."""
    nodes: Sequence[NodePlan]
    """This site's GPU nodes; keyed by name, order does not matter."""
    hugging_face_token: pulumi.Input[str] | None
    """Hugging Face token (a Pulumi secret) or None for public models."""
    tags: Mapping[str, str]
    """Mesh tags; the cloud maps them to its own labels."""
    phoenix_ingest_key: NotRequired[pulumi.Input[str] | None]
    """Phoenix ingest key (a secret) so the nodes' vLLM exports traces; None or absent: no traces."""
    phoenix_grpc_node_port: NotRequired[int | None]
    """Phoenix's OTLP/gRPC node port; required with the key."""


class SiteCloud(Protocol):
    def build_site(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions) -> pulumi.ComponentResource:
        """One site as a component named ``name`` (its children ``f"{name}-<role>"``)."""
        ...


def site_cloud(kind: str) -> SiteCloud:
    return cast(SiteCloud, cloud_module(kind, "site").SITES)
