"""Spec -> cluster plan: the K3s server's place, each GPU node's instance type and price, the node-port map.

Pure decisions, like the fabric plan: everything a reviewer wants to predict (which instance type a node
gets, what it costs per hour, which port a service lands on) is known here, before any resource exists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from lmrun.clouds import HUB_CLOUD
from lmrun.domain.names import IMAGE_GPU, IMAGE_SERVER, PHOENIX_NODE, SERVER_NODE
from lmrun.domain.ports import PHOENIX_GRPC_PORT as GRPC_PORT
from lmrun.domain.ports import PHOENIX_HTTP_PORT as HTTP_PORT
from lmrun.plan.images import ImagePlan
from lmrun.plan.placement import cloud_placement
from lmrun.spec.model import MeshSpec
from lmrun.spec.nodes import NodeSpec

if TYPE_CHECKING:
    from lmrun.plan.mesh import RegionPlan

SERVER_HOST_OFFSET = 10
"""The server takes the 10th address of the main region's first subnet (AWS reserves the first four)."""


ProbeKind = Literal["vllm", "http", "tcp"]


@dataclass(frozen=True)
class ServerPlan:
    """Where the K3s server lives and how it is reached."""

    region: str
    az_id: str
    private_ip: str
    instance_type: str
    k3s_version: str
    operator_cidrs: tuple[str, ...]
    image: str
    """Pinned AMI of the main region's Amazon Linux VMs (the server, and the Phoenix node beside it)."""


@dataclass(frozen=True)
class NodePlan:
    """One GPU node: the instance type chosen for it, its price, and what it serves."""

    name: str
    region: str
    gpu: str
    gpu_count: int
    instance_type: str
    vcpus: int
    spot: bool
    hourly_usd: float
    disk_size_gb: int
    model: str
    model_revision: str
    vllm_args: tuple[str, ...]
    app_port: int
    service: str
    image: str
    """Pinned image the node boots: its region's GPU AMI, or its site's GPU image."""
    cloud: str = HUB_CLOUD
    """The node's cloud (:mod:`lmrun.clouds`)."""
    site: str | None = None
    """The site of a node in a site cloud (its ``region`` is then that cloud's region); None in AWS."""
    zone: str | None = None
    """Zone of a site node (the site cloud's)."""
    accelerator: str | None = None
    """Accelerator type the site cloud attaches to the machine (None when the machine has GPUs built in)."""
    alternative_instance_types: tuple[str, ...] = ()
    """Other machine types with the same GPUs the node may run on (a spot node's other capacity pools), cheapest
    first; ``instance_type`` (the cheapest) prices the node."""
    pool: str | None = None
    """The GPU pool (``lmrun:gpuPool``) of a node whose GPUs Kubernetes offers to SkyPilot: it runs no vLLM, so its
    workload fields (model, revision, vLLM arguments, app port, service) are empty. None: a vLLM node."""
    offering_source: str = "catalog"
    """What decided that the node's location offers its machine: ``recorded`` (the account's offerings recorded in
    the stack, ``lmrun:offerings``) or ``catalog`` (the cloud's built-in catalog)."""

    @property
    def location(self) -> str:
        """Where the node runs in the mesh topology: its AWS region or its site."""
        return self.site or self.region


@dataclass(frozen=True)
class EndpointPlan:
    """A service on a mesh-wide node port, backed by one or more replica VMs."""

    name: str
    node_port: int
    app_port: int
    replicas: tuple[str, ...]
    """Node names (the ``lmrun.io/node`` label) running the process, sorted."""
    probe: ProbeKind
    probe_path: str
    labelled: bool = False
    """True when the replicas register the service's ``serves.lmrun.io/<name>`` label at join (vLLM nodes, whose
    service is part of what they are); False when the service is declared on existing nodes (``lmrun:services``,
    Phoenix) and its proxies find them by ``lmrun.io/node`` name, so adding it changes no node's user data."""


@dataclass(frozen=True)
class PhoenixPlan:
    """The Phoenix observability node: where it runs, how long it keeps data, its node ports."""

    placement: Literal["node", "server"]
    node_name: str
    """The ``lmrun.io/node`` label of the VM running Phoenix (its own node, or the K3s server)."""
    instance_type: str
    volume_gb: int
    retention_days: int
    backup_interval_minutes: int
    backup_retention_days: int
    ui_node_port: int
    grpc_node_port: int


@dataclass(frozen=True)
class GpuPoolPlan:
    """What the K3s server offers SkyPilot (with ``lmrun:skypilot`` on, pool or not, so adding a pool adds nodes
    only): the pool's cluster objects and a kubeconfig of the scoped ``lmrun-skypilot`` ServiceAccount."""

    context: str
    """The kubeconfig's context name, ``lmrun-<stack>`` (what SkyPilot's ``kubernetes.allowed_contexts`` names)."""
    pools: tuple[str, ...] = ()
    """The pools' names (their nodes are among the cluster's, with ``pool`` set)."""


@dataclass(frozen=True)
class ClusterPlan:
    """Server, nodes, endpoints and Phoenix, keyed by their stable names."""

    server: ServerPlan
    nodes: dict[str, NodePlan]
    endpoints: dict[str, EndpointPlan]
    phoenix: PhoenixPlan | None = None
    gpu_pool: GpuPoolPlan | None = None
    """The server's SkyPilot objects and kubeconfig; None without ``lmrun:skypilot``."""

    @property
    def node_ports(self) -> dict[str, int]:
        return {name: endpoint.node_port for name, endpoint in self.endpoints.items()}

    def fleet_hourly_usd(self, *, spot: bool | None = None) -> float:
        """Estimated hourly cost of the GPU nodes (all of them, or only spot / only on-demand)."""
        return round(sum(n.hourly_usd for n in self.nodes.values() if spot is None or n.spot == spot), 4)


def plan_server(spec: MeshSpec, main: RegionPlan, images: ImagePlan) -> ServerPlan:
    subnet = main.subnets[0]
    ip = ipaddress.IPv4Network(subnet.cidr).network_address + SERVER_HOST_OFFSET
    return ServerPlan(
        region=main.name,
        az_id=subnet.az_id,
        private_ip=str(ip),
        instance_type=spec.server_instance_type,
        k3s_version=spec.k3s_version,
        operator_cidrs=tuple(str(cidr) for cidr in spec.operator_cidrs),
        image=images.region(main.name, IMAGE_SERVER),
    )


def plan_nodes(spec: MeshSpec, images: ImagePlan) -> dict[str, NodePlan]:
    """Every GPU node by name, with the cheapest machine its cloud offers for its GPUs, on its pinned image."""
    return {
        node.name: cloud_placement(node.cloud).place_node(
            node,
            spec,
            image=images.site(node.site, IMAGE_GPU) if node.site else images.region(node.region or "", IMAGE_GPU),
        )
        for node in sorted(spec.nodes, key=lambda n: n.name)
    }


def plan_pool_nodes(spec: MeshSpec, images: ImagePlan, nodes: Sequence[tuple[str, NodeSpec]]) -> dict[str, NodePlan]:
    """Every GPU pool node by name, ``(pool, node)`` pairs from the placement: the machine its cloud gives its GPUs
    (priced and drawing on quotas like any node), with no workload."""
    placed = {}
    for pool, node in sorted(nodes, key=lambda pair: pair[1].name):
        image = images.site(node.site, IMAGE_GPU) if node.site else images.region(node.region or "", IMAGE_GPU)
        machine = cloud_placement(node.cloud).place_node(node, spec, image=image)
        placed[node.name] = replace(machine, service="", app_port=0, pool=pool)
    return placed


def plan_gpu_pool(spec: MeshSpec, mesh: str) -> GpuPoolPlan | None:
    if not spec.skypilot.enabled:
        return None
    return GpuPoolPlan(context=f"lmrun-{mesh}", pools=tuple(sorted(p.name for p in spec.gpu_pool)))


def plan_phoenix(spec: MeshSpec) -> PhoenixPlan | None:
    phoenix = spec.phoenix
    if not phoenix.enabled:
        return None
    return PhoenixPlan(
        placement=phoenix.placement,
        node_name=SERVER_NODE if phoenix.placement == "server" else PHOENIX_NODE,
        instance_type=phoenix.instance_type,
        volume_gb=phoenix.volume_size,
        retention_days=phoenix.retention_days,
        backup_interval_minutes=phoenix.backup_interval_minutes,
        backup_retention_days=phoenix.backup_retention_days,
        ui_node_port=phoenix.ui_node_port,
        grpc_node_port=phoenix.grpc_node_port,
    )


def _phoenix_endpoints(phoenix: PhoenixPlan | None) -> dict[str, EndpointPlan]:
    if phoenix is None:
        return {}
    replicas = (phoenix.node_name,)
    return {
        "phoenix-ui": EndpointPlan("phoenix-ui", phoenix.ui_node_port, HTTP_PORT, replicas, "http", "/healthz"),
        "phoenix-grpc": EndpointPlan("phoenix-grpc", phoenix.grpc_node_port, GRPC_PORT, replicas, "tcp", "/"),
    }


def plan_endpoints(spec: MeshSpec, phoenix: PhoenixPlan | None = None) -> dict[str, EndpointPlan]:
    """Every service on a node port: vLLM nodes (grouped by service), generic services, Phoenix."""
    replicas: dict[str, list[str]] = {}
    first: dict[str, EndpointPlan] = {}
    for node in spec.nodes:
        replicas.setdefault(node.service_name, []).append(node.name)
        first.setdefault(
            node.service_name,
            EndpointPlan(node.service_name, node.node_port, node.app_port, (), "vllm", "/v1/models", labelled=True),
        )
    for service in spec.services:
        replicas.setdefault(service.name, []).append(service.node)
        first.setdefault(
            service.name,
            EndpointPlan(service.name, service.node_port, service.app_port, (), service.health, service.health_path),
        )
    endpoints = {name: replace(e, replicas=tuple(sorted(replicas[name]))) for name, e in first.items()}
    endpoints.update(_phoenix_endpoints(phoenix))
    return dict(sorted(endpoints.items()))


def plan_cluster(
    spec: MeshSpec,
    main: RegionPlan,
    images: ImagePlan,
    *,
    mesh: str = "",
    pool_nodes: Sequence[tuple[str, NodeSpec]] = (),
) -> ClusterPlan:
    """The cluster of ``mesh`` (the stack); ``pool_nodes`` are the GPU pools' nodes as placed."""
    phoenix = plan_phoenix(spec)
    return ClusterPlan(
        server=plan_server(spec, main, images),
        nodes=dict(sorted({**plan_nodes(spec, images), **plan_pool_nodes(spec, images, pool_nodes)}.items())),
        endpoints=plan_endpoints(spec, phoenix),
        phoenix=phoenix,
        gpu_pool=plan_gpu_pool(spec, mesh),
    )
