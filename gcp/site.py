"""GcpSite: a GCP site of the mesh — its own VPC, a WireGuard gateway tunnelling to the hub, and GPU nodes.

Everything uses the site's own explicit ``gcp.Provider`` (project and region of the site). The site is a
custom-mode network with one subnetwork (the site CIDR) and only three ingress rules: WireGuard from the
hub's Elastic IP to the gateway, everything from the AWS ranges the site routes into the tunnel, and
everything from inside the site. GCP denies all other ingress implicitly; no rule has a 0.0.0.0/0 source,
and there is no SSH rule (OS Login is on; add an IAP rule yourself if you need a shell).

Routing: one ``gcp.compute.Route`` per ``aws_routes`` CIDR with the gateway as next hop
(``can_ip_forward``), so node traffic to the K3s server and the main region enters the tunnel there; the
hub routes the site's CIDR back. The network MTU is the tunnel MTU plus WireGuard's 60 bytes (1500 for the
default 1440 tunnel, not GCP's default 1460, which would fragment every full-size tunnel packet), and the
gateway clamps TCP MSS to the tunnel's MTU.

Secrets: the gateway's wg-quick config (the site private key inside), the K3s agent token (never the server
token: it joins agents only), the Hugging
Face token and (with Phoenix) the Phoenix ingest key are Secret Manager secrets (replicated in the site's
region only) whose values stay Pulumi secrets. VMs read them by secret id with an access token from the
metadata server and ``curl`` (:mod:`lmrun.gcp.secret_store`); no secret is in instance metadata. Two service
accounts keep the blast radius small: the gateway's may read only the WireGuard config, the nodes' only the
K3s agent token, the Hugging Face token and the ingest key (which vLLM's OTLP exporter sends to Phoenix; a timer
re-reads it, so a key the stack re-delivers reaches vLLM without a new VM; the Hugging Face token secret always
exists and vLLM reads it at every start, so setting the token replaces no VM either),
each through a secret-level ``roles/secretmanager.secretAccessor`` binding (no project-level role at all:
nothing here ships logs or metrics through an agent that would need ``roles/logging.logWriter``).

Images: every VM boots an exact image pinned in the stack config (``lmrun:sites[].images``), never a family:
a family moves with every release, and a new image would recreate the gateway (the site's tunnel down) and
every node's template. The gateway runs Ubuntu 24.04 LTS, the GPU nodes the Deep Learning VM images with the
NVIDIA 570 driver and CUDA 12.8 (Ubuntu 22.04); :data:`lmrun.gcp.catalog.IMAGE_FAMILIES` names the families
the pins come from and the ``gcloud`` command that prints the current image. Both are Ubuntu, so both take
``#cloud-config`` through the ``user-data`` metadata key (cloud-init's GCE datasource) — the very same K3s
agent + vLLM bootstrap as AWS nodes, with the secret fetch switched to Secret Manager.

Egress costs money, so note it: GPU nodes have no external IP, yet need the internet (apt, the K3s
installer, pip for vLLM, model weights from Hugging Face). A site with nodes therefore gets a Cloud Router
and Cloud NAT (the standard way; per the GCP price list roughly $0.0014 per VM-hour, about $1/month per
node, capped near $32/month from 32 VMs up, plus ~$0.045 per GB processed — a 15 GB model download is
about $0.70 — and its auto-allocated external IP). Private Google Access is on, so Secret Manager traffic
skips the NAT. A site without nodes gets no router and no NAT.

GPU nodes are zonal managed instance groups of size one (as on AWS, where each node is an auto-scaling group
of one), so a spot node survives an interruption without a config change. The instance template sets
provisioning model SPOT with termination action DELETE: a preempted VM is deleted (with its boot disk, so
the model is downloaded again) and the group recreates it from the same template as soon as Compute Engine
has spot capacity in the zone again. The new VM has a new instance name (the group's base name plus a random
suffix), so it joins K3s as a new host carrying the same ``lmrun.io/node`` label; the old K3s node stays
NotReady until someone deletes it. ``pulumi up`` does not wait for the VM (``wait_for_instances`` off): a
GPU shortage must not hang a deployment, the group keeps trying. GPUs cannot live-migrate, so every node
sets ``on_host_maintenance=TERMINATE`` (on-demand nodes restart automatically after a host event). No
autohealing health check: it would need a firewall rule for Google's prober ranges and an initial delay
longer than the slowest model download; the group already recreates a VM that is deleted, preempted or
fails.

Instance templates are immutable. A template gets a ``name_prefix`` keyed by the node name (the provider
appends a timestamp), so any change to a node's VM (machine type, disk, user data, ...) replaces the
template create-before-delete: Pulumi creates the new template, updates the group's version to it in
place, and deletes the old template last, once nothing uses it. The group's update policy (PROACTIVE,
minimal action REPLACE, max surge 0, max unavailable 1) then deletes the node's VM and creates a new one
from the new template: a GPU node is briefly down, but never needs a second GPU's worth of quota.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_gcp as gcp

from lmrun.components.naming import IDENTITY_TAG_KEYS, slug
from lmrun.components.site_cloud import SiteArgs, SiteCloud
from lmrun.domain.access import GPU_NODE, GPU_POOL, SITE_GATEWAY
from lmrun.domain.secrets import (
    HF_TOKEN_UNSET,
    SITE_HF_TOKEN,
    SITE_K3S_AGENT_TOKEN,
    SITE_PHOENIX_INGEST_KEY,
    SITE_WIREGUARD,
    site_secret_id,
)
from lmrun.domain.tunnels import underlay_mtu
from lmrun.gcp import NAME, catalog
from lmrun.gcp.secret_store import SecretManagerStore
from lmrun.plan.cluster import NodePlan
from lmrun.plan.flow_logs import FlowLogsPlan
from lmrun.plan.sites import SitePlan
from lmrun.render.gateways import render_gateway_user_data
from lmrun.render.gpu_pool import pool_agent, render_pool_node_user_data
from lmrun.render.k3s import K3sAgentConfig
from lmrun.render.phoenix import PhoenixClientConfig
from lmrun.render.vllm import UNIT_NAME as VLLM_UNIT
from lmrun.render.vllm import VllmConfig, render_gpu_node_user_data
from lmrun.render.wireguard import render_wg_quick, site_config

GATEWAY_TAG = "lmrun-wireguard-gateway"
"""Network tag of the gateway: the only target of the WireGuard ingress rule."""
NODE_TAG = "lmrun-gpu-node"
"""Network tag of the GPU nodes."""
GATEWAY_DISK_GB = 10
ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""With this scope the VM's access is governed by IAM alone (Google's recommendation)."""
MSS_CLAMP = "iptables -t mangle {op} FORWARD -o %i -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
"""wg-quick PostUp/PostDown: TCP through the tunnel never relies on ICMP-based path MTU discovery."""

_ACCOUNT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


def gcp_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """Mesh tags as GCP labels: lowercase keys and values of ``[a-z0-9_-]`` (other characters become ``_``),
    keys starting with a letter, at most 63 characters. Idempotent, so already-valid labels pass unchanged."""
    labels: dict[str, str] = {}
    for key, value in tags.items():
        k = _LABEL_BAD.sub("_", key.lower())
        if not k or not k[0].isalpha():
            k = f"l{k}"
        labels[k[:63]] = _LABEL_BAD.sub("_", value.lower())[:63]
    return labels


NODE_LABEL_KEYS = frozenset({*gcp_labels(dict.fromkeys(IDENTITY_TAG_KEYS, "")), "lmrun_site"})
"""The labels of a GPU node's instance template and boot disk, and of the gateway's boot disk (its creation
parameters): the mesh's identity tags (mesh, role, region,
node, site), which never change. An instance template is immutable, and the group replaces the VM for any
template change; ``lmrun:tags`` labels every other resource of the site but not these, so adding a tag replaces
no GPU VM. (The group's all-instances configuration would not help: with the update policy's minimal action
REPLACE, which user-data changes need, the group applies a label change to it by replacing the VM too.)"""


def node_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The :data:`NODE_LABEL_KEYS` of ``labels``."""
    return {key: value for key, value in labels.items() if key in NODE_LABEL_KEYS}


def account_id(name: str, role: str) -> str:
    """A service-account id (6-30 of ``[a-z0-9-]``, starting with a letter) from the component name and a
    role; names too long keep a readable head plus a short hash, so the id stays stable and unique."""
    full = f"{slug(name)}-{role}"
    if _ACCOUNT_ID.match(full):
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    head = slug(name)[: 30 - len(role) - len(digest) - 3].strip("-") or "lmrun"
    candidate = f"{head}-{digest}-{role}"
    return candidate if candidate[0].isalpha() else f"l{candidate}"[:30]


def _bounded(full: str, limit: int) -> str:
    """``full`` if it fits in ``limit`` characters and starts with a letter, else a readable head plus a short
    hash of ``full`` (stable, and distinct for distinct inputs)."""
    if len(full) <= limit and full[:1].isalpha():
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    head = full[: limit - len(digest) - 1].strip("-")
    candidate = f"{head}-{digest}" if head else digest
    return candidate if candidate[0].isalpha() else f"l{candidate}"[:limit]


TEMPLATE_PREFIX_MAX = 37
"""Longest ``name_prefix`` for which the provider appends a timestamp plus counter (26 characters: 63 in all);
longer prefixes get a shorter random suffix, more prone to collisions."""


def template_name_prefix(name: str, node_name: str) -> str:
    """The ``name_prefix`` of a node's instance template: component and node name, at most 37 characters,
    ending in ``-`` so the provider's timestamp reads apart."""
    return f"{_bounded(f'{slug(name)}-{slug(node_name)}', TEMPLATE_PREFIX_MAX - 1)}-"


def base_instance_name(node_name: str) -> str:
    """The group's base instance name (RFC 1035, at most 58 characters: the group appends ``-xxxx``)."""
    return _bounded(slug(node_name), 58)


class GcpSiteArgs(TypedDict):
    """Inputs of :class:`GcpSite`. No provider comes in: the site creates its own for ``site.project``."""

    site: SitePlan
    """The site (kind ``gcp``): project, region, zone, CIDR, gateway IP, tunnel address, MTU, keepalive."""
    private_key: pulumi.Input[str]
    """The site's WireGuard private key (base64), a Pulumi secret; it only reaches Secret Manager."""
    hub_public_key: pulumi.Input[str]
    """The hub's WireGuard public key."""
    hub_endpoint: pulumi.Input[str]
    """The hub's Elastic IP (an IPv4 address): the only source the WireGuard rule admits."""
    hub_port: int
    """The hub's WireGuard UDP port; the gateway listens on the same port."""
    hub_tunnel_address: str
    """The hub's address in the tunnel range."""
    aws_routes: Sequence[str]
    """CIDRs the site routes into the tunnel (main region + tunnel range); also admitted by the firewall."""
    k3s_agent_token: pulumi.Input[str]
    """K3s agent token (a Pulumi secret), stored in Secret Manager for the nodes (never the server token)."""
    k3s_server_ip: str
    """The K3s server's private IP, reached through the tunnel."""
    k3s_version: str
    """Pinned K3s release for the nodes."""
    nodes: Sequence[NodePlan]
    """This site's GPU nodes (cloud ``gcp``); keyed by name, order does not matter."""
    hugging_face_token: pulumi.Input[str] | None
    """Hugging Face token (a Pulumi secret) or None for public models."""
    labels: Mapping[str, str]
    """Labels for every labelled resource (passed through :func:`gcp_labels`, so mesh tags work too)."""
    phoenix_ingest_key: NotRequired[pulumi.Input[str] | None]
    """Phoenix ingest key (a Pulumi secret) when Phoenix is enabled: stored in Secret Manager so the nodes'
    vLLM can authenticate its OTLP export (they cannot read the SSM parameter the Phoenix node publishes to).
    Absent or None: the nodes export no traces."""
    phoenix_grpc_node_port: NotRequired[int | None]
    """Phoenix's OTLP/gRPC node port (the nodes export to ``localhost:<port>``); required with the key."""


FLOW_LOG_INTERVALS = {60: "INTERVAL_1_MIN", 600: "INTERVAL_10_MIN"}
"""The mesh's aggregation intervals as GCP names them (``log_config.aggregation_interval``)."""


def flow_log_config(flow_logs: FlowLogsPlan | None) -> gcp.compute.SubnetworkLogConfigArgsDict | None:
    """The subnetwork's ``log_config`` (None: no flow logs). Flow logs go to Cloud Logging, priced by volume;
    all metadata (VM names, zones) is kept so a record names its VM without a second lookup. The block's
    presence switches logging on (GoogleCloudPlatform/magic-modules#2597) and any change to it updates the
    subnetwork in place (hashicorp/terraform-provider-google#4179): no VM in the site is touched."""
    if flow_logs is None:
        return None
    return {
        "aggregation_interval": FLOW_LOG_INTERVALS[flow_logs.aggregation_interval_seconds],
        "flow_sampling": flow_logs.sampling,
        "metadata": "INCLUDE_ALL_METADATA",
    }


def pinned_image(what: str, image: str | None) -> str:
    """``image`` when it is one exact GCP image (never a family); ValueError naming ``what`` otherwise."""
    if not image:
        raise ValueError(f"{what}: no image pinned (a site's VMs boot pinned images only)")
    problem = catalog.image_issue(image)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")
    return image


def _check_args(args: GcpSiteArgs) -> SitePlan:
    site = args["site"]
    if site.kind != NAME:
        raise ValueError(f"site: {site.name!r} is a {site.kind!r} site, not {NAME!r}")
    for field_name in ("project", "region", "zone"):
        if not getattr(site, field_name):
            raise ValueError(f"site.{field_name}: GCP site {site.name!r} needs a {field_name}")
    if isinstance(args["aws_routes"], str) or not args["aws_routes"]:
        raise ValueError("aws_routes: need at least one CIDR (a sequence, not one string)")
    for cidr in args["aws_routes"]:
        try:
            ipaddress.IPv4Network(cidr)
        except ValueError as exc:
            raise ValueError(f"aws_routes: {cidr!r} is not an IPv4 CIDR ({exc})") from None
    names = [node.name for node in args["nodes"]]
    if len(names) != len(set(names)):
        raise ValueError(f"nodes: duplicate node names {sorted({n for n in names if names.count(n) > 1})}")
    pinned_image("site.gateway_image", site.gateway_image)
    for node in args["nodes"]:
        if node.cloud != NAME:
            raise ValueError(f"nodes[{node.name}].cloud: {node.cloud!r} is not {NAME!r}")
        if node.site != site.name:
            raise ValueError(f"nodes[{node.name}].site: {node.site!r} is not this site ({site.name!r})")
        pinned_image(f"nodes[{node.name}].image", node.image)
    if (args.get("phoenix_ingest_key") is None) != (args.get("phoenix_grpc_node_port") is None):
        raise ValueError("phoenix_grpc_node_port: give it together with phoenix_ingest_key (or neither)")
    return site


def _hub_source_range(address: str) -> str:
    try:
        return f"{ipaddress.IPv4Address(address)}/32"
    except ValueError:
        raise ValueError(f"hub_endpoint: {address!r} is not an IPv4 address (the hub's Elastic IP)") from None


class GcpSite(pulumi.ComponentResource):
    """Provider, network, firewall, gateway with routes, secrets, service accounts, NAT and GPU nodes."""

    gateway_external_ip: pulumi.Output[str]
    network_id: pulumi.Output[str]
    node_names: pulumi.Output[dict[str, str]]
    """Mesh node name -> name of the managed instance group (of size one) that runs the node's VM."""

    def __init__(self, name: str, *, args: GcpSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the site from ``args`` (:class:`GcpSiteArgs`) under a GCP provider it creates for the
        site's project; ``opts`` needs no provider."""
        super().__init__("lmrun:index:GcpSite", name, None, opts)
        site = _check_args(args)
        project, region, zone = str(site.project), str(site.region), str(site.zone)
        labels = {**gcp_labels(args["labels"]), "lmrun_site": gcp_labels({"s": site.name})["s"]}
        aws_routes = sorted(set(args["aws_routes"]), key=lambda c: ipaddress.IPv4Network(c))
        nodes = sorted(args["nodes"], key=lambda n: n.name)

        provider = gcp.Provider(
            f"{name}-gcp", project=project, region=region, zone=zone, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        # --- network -----------------------------------------------------------------------------------
        network = gcp.compute.Network(
            f"{name}-network",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            mtu=min(1500, max(1300, underlay_mtu(site.mtu))),
            description=f"lmrun site {site.name}",
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            network=network.id,
            region=region,
            ip_cidr_range=site.cidr,
            private_ip_google_access=True,
            log_config=flow_log_config(site.flow_logs),
            description=f"lmrun site {site.name}",
            opts=child,
        )
        gcp.compute.Firewall(
            f"{name}-allow-wireguard",
            network=network.id,
            direction="INGRESS",
            allows=[{"protocol": "udp", "ports": [str(args["hub_port"])]}],
            source_ranges=[pulumi.Output.from_input(args["hub_endpoint"]).apply(_hub_source_range)],
            target_tags=[GATEWAY_TAG],
            description="WireGuard from the hub's Elastic IP only, to the site gateway only",
            opts=child,
        )
        gcp.compute.Firewall(
            f"{name}-allow-mesh",
            network=network.id,
            direction="INGRESS",
            allows=[{"protocol": "all"}],
            source_ranges=aws_routes,
            description="The AWS mesh ranges routed through the tunnel (main region, tunnel addresses)",
            opts=child,
        )
        gcp.compute.Firewall(
            f"{name}-allow-internal",
            network=network.id,
            direction="INGRESS",
            allows=[{"protocol": "all"}],
            source_ranges=[site.cidr],
            description="Inside the site (nodes <-> gateway, node <-> node)",
            opts=child,
        )

        # --- gateway identity and secret -------------------------------------------------------------
        gateway_account = gcp.serviceaccount.Account(
            f"{name}-gateway-sa",
            account_id=account_id(name, "gw"),
            display_name=f"lmrun site {site.name} WireGuard gateway",
            description="Reads the site's WireGuard config secret, nothing else",
            opts=child,
        )
        config_secret = site_secret_id(slug(name), SITE_WIREGUARD)
        gateway_config: pulumi.Output[str] = pulumi.Output.all(
            args["private_key"], args["hub_public_key"], args["hub_endpoint"]
        ).apply(lambda values: self._render_config(site, args, aws_routes, values))
        wg_version, wg_grants = self._secret(
            f"{name}-wireguard",
            secret_id=config_secret,
            data=gateway_config,
            readers={"gateway": gateway_account},
            region=region,
            labels=labels,
            opts=child,
        )

        # --- gateway ---------------------------------------------------------------------------------
        external = gcp.compute.Address(
            f"{name}-gateway-ip",
            region=region,
            address_type="EXTERNAL",
            network_tier="PREMIUM",
            description=f"lmrun site {site.name} WireGuard gateway (the hub's peer endpoint)",
            labels=labels,
            opts=child,
        )
        internal = gcp.compute.Address(
            f"{name}-gateway-internal-ip",
            region=region,
            address_type="INTERNAL",
            subnetwork=subnet.id,
            address=site.gateway_ip,
            description="Reserved so no node takes the gateway's address while the gateway is replaced",
            opts=child,
        )
        gateway = gcp.compute.Instance(
            f"{name}-gateway",
            machine_type=site.gateway_machine_type,
            zone=zone,
            can_ip_forward=True,
            boot_disk={
                "auto_delete": True,
                "initialize_params": {
                    "image": pinned_image("site.gateway_image", site.gateway_image),
                    "size": GATEWAY_DISK_GB,
                    "type": "pd-balanced",
                    # Creation-time parameters: providers before the fix in GoogleCloudPlatform/magic-modules#15081
                    # replace the instance when they change (the tunnel down); identity labels never change.
                    "labels": node_labels(labels),
                },
            },
            network_interfaces=[
                {
                    "subnetwork": subnet.id,
                    "network_ip": internal.address,
                    "access_configs": [{"nat_ip": external.address, "network_tier": "PREMIUM"}],
                }
            ],
            service_account={"email": gateway_account.email, "scopes": [CLOUD_PLATFORM_SCOPE]},
            shielded_instance_config={
                "enable_secure_boot": True,
                "enable_vtpm": True,
                "enable_integrity_monitoring": True,
            },
            scheduling={"automatic_restart": True, "on_host_maintenance": "MIGRATE", "provisioning_model": "STANDARD"},
            metadata={
                "enable-oslogin": "TRUE",
                "block-project-ssh-keys": "TRUE",
                "user-data": render_gateway_user_data(
                    store=SecretManagerStore(project),
                    config_secret=config_secret,
                    description="WireGuard GCP site gateway",
                ),
            },
            tags=[GATEWAY_TAG],
            labels={**labels, "lmrun_role": SITE_GATEWAY},
            allow_stopping_for_update=True,
            description=f"lmrun site {site.name}: WireGuard gateway to the hub",
            # The reserved internal and external addresses can only move once the old VM is gone.
            opts=pulumi.ResourceOptions(
                parent=self, provider=provider, delete_before_replace=True, depends_on=[wg_version, *wg_grants]
            ),
        )
        for cidr in aws_routes:
            gcp.compute.Route(
                f"{name}-route-{slug(cidr)}",
                network=network.id,
                dest_range=cidr,
                next_hop_instance=gateway.self_link,
                next_hop_instance_zone=zone,
                priority=100,
                description=f"{cidr} through the WireGuard gateway",
                opts=child,
            )

        # --- GPU nodes -------------------------------------------------------------------------------
        groups: dict[str, gcp.compute.InstanceGroupManager] = {}
        vllm_nodes = [node for node in nodes if node.pool is None]
        pool_nodes = [node for node in nodes if node.pool is not None]
        if nodes:
            self._nat(name, network, subnet, region, child)
            ingest_key = args.get("phoenix_ingest_key")
            token_readers: dict[str, gcp.serviceaccount.Account] = {}
            if vllm_nodes:
                token_readers["nodes"] = gcp.serviceaccount.Account(
                    f"{name}-nodes-sa",
                    account_id=account_id(name, "nodes"),
                    display_name=f"lmrun site {site.name} GPU nodes",
                    description=(
                        "Reads the K3s agent token and the Hugging Face token secrets, nothing else"
                        if ingest_key is None
                        else "Reads the K3s agent token, Hugging Face token and Phoenix ingest key secrets, "
                        "nothing else"
                    ),
                    opts=child,
                )
            if pool_nodes:  # GPU pool nodes only join K3s: their own account reads the agent token alone
                token_readers["pool"] = gcp.serviceaccount.Account(
                    f"{name}-pool-sa",
                    account_id=account_id(name, "pool"),
                    display_name=f"lmrun site {site.name} GPU pool nodes",
                    description="Reads the K3s agent token secret, nothing else",
                    opts=child,
                )
            token_secret = site_secret_id(slug(name), SITE_K3S_AGENT_TOKEN)
            token_version, token_grants = self._secret(
                f"{name}-{SITE_K3S_AGENT_TOKEN}",
                secret_id=token_secret,
                data=args["k3s_agent_token"],
                readers=token_readers,
                region=region,
                labels=labels,
                opts=child,
            )
            boot_deps: list[pulumi.Resource] = [token_version, *token_grants]
            node_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=boot_deps)
            if vllm_nodes:
                nodes_account = token_readers["nodes"]
                # Always there (HF_TOKEN_UNSET until a token is set) and read at every vLLM start: setting the
                # token adds a secret version and changes no instance template.
                hf_secret = site_secret_id(slug(name), SITE_HF_TOKEN)
                token = args["hugging_face_token"]
                hf_version, hf_grants = self._secret(
                    f"{name}-hf-token",
                    secret_id=hf_secret,
                    data=token if token is not None else HF_TOKEN_UNSET,
                    readers={"nodes": nodes_account},
                    region=region,
                    labels=labels,
                    opts=child,
                )
                vllm_deps = [*boot_deps, hf_version, *hf_grants]
                tracing: PhoenixClientConfig | None = None
                grpc_node_port = args.get("phoenix_grpc_node_port")
                if ingest_key is not None and grpc_node_port is not None:
                    ingest_secret = site_secret_id(slug(name), SITE_PHOENIX_INGEST_KEY)
                    # Not a boot dependency: vLLM serves without it, and the refresher retries until it is readable.
                    self._secret(
                        f"{name}-phoenix-ingest-key",
                        secret_id=ingest_secret,
                        data=ingest_key,
                        readers={"nodes": nodes_account},
                        region=region,
                        labels=labels,
                        opts=child,
                    )
                    tracing = PhoenixClientConfig(
                        store=SecretManagerStore(project),
                        ingest_key_parameter=ingest_secret,
                        grpc_node_port=grpc_node_port,
                        restart_units=(VLLM_UNIT,),
                    )
                for node in vllm_nodes:
                    groups[node.name] = self._node(
                        name,
                        node,
                        site=site,
                        args=args,
                        subnet=subnet,
                        account=nodes_account,
                        token_secret=token_secret,
                        hf_secret=hf_secret,
                        tracing=tracing,
                        labels=node_labels(labels),
                        opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=vllm_deps),
                    )
            for node in pool_nodes:
                groups[node.name] = self._pool_node(
                    name,
                    node,
                    site=site,
                    args=args,
                    subnet=subnet,
                    account=token_readers["pool"],
                    token_secret=token_secret,
                    labels=node_labels(labels),
                    opts=node_opts,
                )

        self.gateway_external_ip = external.address
        self.network_id = network.id
        self.node_names = (
            pulumi.Output.all(**{key: group.name for key, group in groups.items()}).apply(dict)
            if groups
            else pulumi.Output.from_input({})
        )
        self.register_outputs(
            {
                "gateway_external_ip": self.gateway_external_ip,
                "network_id": self.network_id,
                "node_names": self.node_names,
            }
        )

    @staticmethod
    def _render_config(site: SitePlan, args: GcpSiteArgs, aws_routes: Sequence[str], values: list[Any]) -> str:
        private, hub_public, hub_ip = values
        config = site_config(
            private_key=private,
            tunnel_address=site.tunnel_address,
            hub_public_key=hub_public,
            hub_endpoint_host=hub_ip,
            hub_tunnel_address=args["hub_tunnel_address"],
            mesh_cidrs=aws_routes,
            mtu=site.mtu,
            hub_listen_port=args["hub_port"],
            # The same port as the hub's, so the one firewall rule also admits a hub-initiated handshake.
            listen_port=args["hub_port"],
            behind_nat=site.persistent_keepalive is not None,
            post_up=(f"command -v iptables >/dev/null && {MSS_CLAMP.format(op='-A')} || true",),
            post_down=(f"command -v iptables >/dev/null && {MSS_CLAMP.format(op='-D')} || true",),
        )
        return render_wg_quick(config)

    @staticmethod
    def _secret(
        name: str,
        *,
        secret_id: str,
        data: pulumi.Input[str],
        readers: Mapping[str, gcp.serviceaccount.Account],
        region: str,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> tuple[gcp.secretmanager.SecretVersion, list[gcp.secretmanager.SecretIamMember]]:
        """A secret kept in the site's region, its value (always a Pulumi secret) and one accessor binding
        per reader, on this secret only."""
        secret = gcp.secretmanager.Secret(
            name,
            secret_id=secret_id,
            replication={"user_managed": {"replicas": [{"location": region}]}},
            labels=dict(labels),
            opts=opts,
        )
        version = gcp.secretmanager.SecretVersion(
            f"{name}-version", secret=secret.id, secret_data=pulumi.Output.secret(data), opts=opts
        )
        grants = [
            gcp.secretmanager.SecretIamMember(
                f"{name}-reader-{who}",
                secret_id=secret.secret_id,
                role=ACCESSOR_ROLE,
                member=account.email.apply(lambda email: f"serviceAccount:{email}"),
                opts=opts,
            )
            for who, account in sorted(readers.items())
        ]
        return version, grants

    @staticmethod
    def _nat(
        name: str,
        network: gcp.compute.Network,
        subnet: gcp.compute.Subnetwork,
        region: str,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """Cloud Router + NAT for the node subnet (the gateway has its own external IP)."""
        router = gcp.compute.Router(f"{name}-router", network=network.id, region=region, opts=opts)
        gcp.compute.RouterNat(
            f"{name}-nat",
            router=router.name,
            region=region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[{"name": subnet.id, "source_ip_ranges_to_nats": ["PRIMARY_IP_RANGE"]}],
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=opts,
        )

    @staticmethod
    def _agent(node: NodePlan, *, site: SitePlan, args: GcpSiteArgs, token_secret: str) -> K3sAgentConfig:
        """A site node's K3s agent: the agent token from the site's Secret Manager; a vLLM node serves its service."""
        return K3sAgentConfig(
            server_ip=args["k3s_server_ip"],
            store=SecretManagerStore(str(site.project)),
            token_parameter=token_secret,
            node_name=node.name,
            region=node.region or str(site.region),
            gpu=node.gpu,
            serves=(node.service,) if node.pool is None else (),
            k3s_version=args["k3s_version"],
        )

    @staticmethod
    def _node(
        name: str,
        node: NodePlan,
        *,
        site: SitePlan,
        args: GcpSiteArgs,
        subnet: gcp.compute.Subnetwork,
        account: gcp.serviceaccount.Account,
        token_secret: str,
        hf_secret: str | None,
        tracing: PhoenixClientConfig | None,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> gcp.compute.InstanceGroupManager:
        """The node's instance template and the zonal managed instance group of one that runs it."""
        agent = GcpSite._agent(node, site=site, args=args, token_secret=token_secret)
        store = agent.store
        vllm = VllmConfig(
            model=node.model,
            revision=node.model_revision,
            served_model_name=node.service,
            app_port=node.app_port,
            extra_args=node.vllm_args,
            tensor_parallel_size=node.gpu_count,
            hf_token_parameter=hf_secret,
            store=store,
            otlp_traces_endpoint=tracing.endpoint if tracing is not None else None,
            otlp_env_file=tracing.env_file if tracing is not None else None,
        )
        return GcpSite._vm(
            name,
            node,
            site=site,
            subnet=subnet,
            account=account,
            user_data=render_gpu_node_user_data(agent, vllm, tracing),
            role=GPU_NODE,
            description=f"lmrun GPU node {node.name} ({node.gpu_count}x {node.gpu}, {node.model})",
            labels=labels,
            opts=opts,
        )

    @staticmethod
    def _pool_node(
        name: str,
        node: NodePlan,
        *,
        site: SitePlan,
        args: GcpSiteArgs,
        subnet: gcp.compute.Subnetwork,
        account: gcp.serviceaccount.Account,
        token_secret: str,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> gcp.compute.InstanceGroupManager:
        """A GPU pool node: the NVIDIA runtime and the K3s agent with the pool's labels and taint, no vLLM."""
        agent = pool_agent(GcpSite._agent(node, site=site, args=args, token_secret=token_secret), pool=node.pool or "")
        return GcpSite._vm(
            name,
            node,
            site=site,
            subnet=subnet,
            account=account,
            user_data=render_pool_node_user_data(agent),
            role=GPU_POOL,
            description=f"lmrun GPU pool node {node.name} ({node.gpu_count}x {node.gpu}, pool {node.pool})",
            labels=labels,
            opts=opts,
        )

    @staticmethod
    def _vm(
        name: str,
        node: NodePlan,
        *,
        site: SitePlan,
        subnet: gcp.compute.Subnetwork,
        account: gcp.serviceaccount.Account,
        user_data: str,
        role: str,
        description: str,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> gcp.compute.InstanceGroupManager:
        """A GPU VM's instance template (``user_data``, its identity ``account``, its ``role`` label) and the zonal
        managed instance group of one that runs it."""
        scheduling: gcp.compute.InstanceTemplateSchedulingArgsDict
        if node.spot:
            # DELETE: the group recreates the VM from the template once spot capacity is back (a STOPped VM
            # would sit in the group holding its billed disk instead).
            scheduling = {
                "provisioning_model": "SPOT",
                "preemptible": True,
                "automatic_restart": False,
                "on_host_maintenance": "TERMINATE",
                "instance_termination_action": "DELETE",
            }
        else:
            scheduling = {
                "provisioning_model": "STANDARD",
                "automatic_restart": True,
                "on_host_maintenance": "TERMINATE",
            }
        accelerators: list[gcp.compute.InstanceTemplateGuestAcceleratorArgsDict] | None = None
        if node.accelerator is not None:  # N1 machines; G2/A2/A3 have their GPUs built in
            accelerators = [{"type": node.accelerator, "count": node.gpu_count}]
        key = slug(node.name)
        template = gcp.compute.InstanceTemplate(
            f"{name}-node-{key}-template",
            # Immutable: every change is a replacement, created before the old template is deleted; the
            # prefix (the provider appends a timestamp) gives the replacement a fresh, non-clashing name.
            name_prefix=template_name_prefix(name, node.name),
            machine_type=node.instance_type,
            guest_accelerators=accelerators,
            scheduling=scheduling,
            disks=[
                {
                    "boot": True,
                    "auto_delete": True,
                    "source_image": node.image,
                    "disk_size_gb": node.disk_size_gb,
                    "disk_type": "pd-balanced",
                    "labels": dict(labels),
                }
            ],
            # No access_configs: no external IP; egress goes through the site's Cloud NAT.
            network_interfaces=[{"subnetwork": subnet.id}],
            service_account={"email": account.email, "scopes": [CLOUD_PLATFORM_SCOPE]},
            # Secure Boot would refuse the image's unsigned NVIDIA kernel modules; vTPM and integrity stay on.
            shielded_instance_config={
                "enable_secure_boot": False,
                "enable_vtpm": True,
                "enable_integrity_monitoring": True,
            },
            metadata={
                "enable-oslogin": "TRUE",
                "block-project-ssh-keys": "TRUE",
                "install-nvidia-driver": "True",
                "user-data": user_data,
            },
            tags=[NODE_TAG],
            labels={**labels, "lmrun_role": role, "lmrun_node": gcp_labels({"n": node.name})["n"]},
            description=description,
            opts=opts,
        )
        return gcp.compute.InstanceGroupManager(
            f"{name}-node-{key}",
            zone=node.zone or site.zone,
            base_instance_name=base_instance_name(node.name),
            target_size=1,
            versions=[{"name": "node", "instance_template": template.self_link_unique}],
            # A new template replaces the VM: delete first, then create (no second GPU's worth of quota).
            update_policy={
                "type": "PROACTIVE",
                "minimal_action": "REPLACE",
                "max_surge_fixed": 0,
                "max_unavailable_fixed": 1,
            },
            # Never block `pulumi up` on GPU capacity; the group keeps trying to create the VM.
            wait_for_instances=False,
            description=f"lmrun GPU node {node.name}: a group of one that recreates a preempted or lost VM",
            opts=opts,
        )


class GcpSites:
    """GCP as a site cloud: one :class:`GcpSite` per site, mesh tags as GCP labels."""

    def build_site(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions) -> pulumi.ComponentResource:
        site_args: GcpSiteArgs = {
            "site": args["site"],
            "private_key": args["private_key"],
            "hub_public_key": args["hub_public_key"],
            "hub_endpoint": args["hub_endpoint"],
            "hub_port": args["hub_port"],
            "hub_tunnel_address": args["hub_tunnel_address"],
            "aws_routes": args["aws_routes"],
            "k3s_agent_token": args["k3s_agent_token"],
            "k3s_server_ip": args["k3s_server_ip"],
            "k3s_version": args["k3s_version"],
            "nodes": args["nodes"],
            "hugging_face_token": args["hugging_face_token"],
            "labels": gcp_labels(args["tags"]),
            "phoenix_ingest_key": args.get("phoenix_ingest_key"),
            "phoenix_grpc_node_port": args.get("phoenix_grpc_node_port"),
        }
        return GcpSite(name, args=site_args, opts=opts)


SITES: SiteCloud = GcpSites()
