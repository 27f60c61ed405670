"""Cluster: the K3s server, the GPU nodes and the node-port services, on top of the fabric's VPCs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_command as command

from lmrun.aws.network.mtu import PEERING_ROUTES
from lmrun.aws.secret_store import SsmParameterStore
from lmrun.components.gpu_node import GpuNode
from lmrun.components.k3s_server import K3sServer, K3sServerArgs, ServerAddon
from lmrun.components.naming import slug, with_name
from lmrun.components.node_ports import NodePorts
from lmrun.components.phoenix import PhoenixNode, PhoenixStore
from lmrun.components.vpc import RegionalVpc
from lmrun.domain.access import GPU_NODE, GPU_POOL, K3S_SERVER, PHOENIX
from lmrun.domain.names import TAG_HOSTS, TAG_NODE, TAG_REGION, TAG_ROLE
from lmrun.domain.secrets import HF_TOKEN_UNSET, SecretPaths
from lmrun.plan.cluster import ClusterPlan, NodePlan
from lmrun.render.cloudinit import WriteFile
from lmrun.render.gpu_pool import pool_agent, render_pool_node_user_data
from lmrun.render.k3s import STATE_MOUNT, K3sAgentConfig
from lmrun.render.kubeconfig import with_api_server
from lmrun.render.kubernetes import ElasticNodePort, MeshService
from lmrun.render.phoenix import PhoenixClientConfig, phoenix_files, phoenix_runcmd
from lmrun.render.readiness import ingest_key_gate_script
from lmrun.render.routes import RouteMtu
from lmrun.render.serve_endpoints import ServeEndpointsConfig, serve_endpoint_files, serve_endpoint_runcmd
from lmrun.render.vllm import UNIT_NAME as VLLM_UNIT
from lmrun.render.vllm import VllmConfig, render_gpu_node_user_data

SERVER_STATE_VOLUME_GB = 20


class ClusterArgs(TypedDict):
    """Inputs of :class:`Cluster`."""

    plan: ClusterPlan
    """Server placement, nodes and endpoints, decided by :func:`lmrun.plan.plan_mesh`."""
    parameter_prefix: str
    """SSM path prefix for the mesh's parameters, e.g. ``/lmrun/dev``."""
    providers: Mapping[str, aws.Provider]
    """Explicit AWS provider per region of the mesh."""
    vpcs: Mapping[str, RegionalVpc]
    """The fabric's VPC per region."""
    hugging_face_token: pulumi.Input[str] | None
    """Hugging Face token (a secret), stored as an SSM SecureString for the nodes; None for public models."""
    k3s_api_server: NotRequired[str | None]
    """Where the Kubernetes provider reaches the API (``https://localhost:6443`` through a port forward), TLS
    still checked against the published address; None or absent: the published address."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""
    elastic: NotRequired[Sequence[ElasticNodePort]]
    """Elastic services' node ports: a Service without selector each, whose EndpointSlice the K3s server keeps
    pointed at SkyServe's load balancer (:mod:`lmrun.render.serve_endpoints`)."""


def _with_serve_endpoints(
    addon: ServerAddon | None, region: str, vpc_cidr: pulumi.Output[str], prefix: str
) -> ServerAddon:
    """``addon`` plus the timer that keeps the elastic services' EndpointSlices. Every server runs it, whatever
    elastic services exist (it lists them in the cluster), so adding one never changes the server's user data."""

    def files(cidr: str) -> list[WriteFile]:
        return serve_endpoint_files(ServeEndpointsConfig(region, cidr, prefix))

    own = vpc_cidr.apply(files)
    if addon is None:
        return {"files": own, "runcmd": serve_endpoint_runcmd(), "reads": [], "writes": [], "statements": []}
    merged = pulumi.Output.all(addon["files"], own).apply(lambda both: [*both[0], *both[1]])
    return {**addon, "files": merged, "runcmd": [*addon["runcmd"], *serve_endpoint_runcmd()]}


class Cluster(pulumi.ComponentResource):
    """K3s server in the main region, one :class:`GpuNode` per node, :class:`NodePorts` for the services.

    Every VM boots the image its plan pins (``lmrun:images``); the component looks nothing up.
    """

    server: K3sServer
    nodes: dict[str, GpuNode]
    kubeconfig: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    node_ports: pulumi.Output[dict[str, int]]
    phoenix: pulumi.Output[dict[str, Any] | None]
    """Phoenix facts for the plan (node ports, storage, backup bucket, retention), or None when disabled."""
    phoenix_ingest_key: pulumi.Output[str] | None
    ingest_key_parameter_arn: pulumi.Output[str] | None
    """ARN of the Phoenix ingest-key parameter (trace producers read it); None without Phoenix."""
    """The ingest key the Phoenix node published (a secret), for trace producers that cannot read SSM (GPU
    nodes in GCP sites); None unless Phoenix is enabled and the plan has such nodes (no gate otherwise)."""

    def __init__(self, name: str, *, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the K3s server, the GPU nodes and the node-port services from ``args`` (:class:`ClusterArgs`:
        the plan, the fabric's VPCs and one AWS provider per region); ``opts`` must carry the random and command
        providers (the stacks disable default providers)."""
        super().__init__("lmrun:index:Cluster", name, None, opts)
        plan = args["plan"]
        server_plan = plan.server
        main_vpc = args["vpcs"][server_plan.region]
        main_provider = args["providers"][server_plan.region]
        paths = SecretPaths(args["parameter_prefix"])
        prefix = paths.prefix
        tags = args["tags"]
        server_subnet = main_vpc.subnets[server_plan.az_id]
        on_main = pulumi.ResourceOptions(parent=self, providers=[main_provider])

        phoenix = plan.phoenix
        store: PhoenixStore | None = None
        addon: ServerAddon | None = None
        if phoenix is not None:
            store = PhoenixStore(
                f"{name}-phoenix-store",
                args={
                    "parameter_prefix": prefix,
                    "backup_retention_days": phoenix.backup_retention_days,
                    "tags": {**tags, TAG_REGION: server_plan.region},
                },
                opts=on_main,
            )
            if phoenix.placement == "server":
                config = store.config(
                    region=server_plan.region,
                    data_dir=f"{STATE_MOUNT}/phoenix",
                    retention_days=phoenix.retention_days,
                    backup_interval_minutes=phoenix.backup_interval_minutes,
                )
                addon = {
                    "files": config.apply(phoenix_files),
                    "runcmd": phoenix_runcmd(),
                    "reads": [*store.secret_parameter_arns, store.ingest_key_parameter_arn],
                    "writes": [store.ingest_key_parameter_arn],
                    "statements": store.backup_statements(),
                }

        elastic = sorted(args.get("elastic", ()), key=lambda e: e.name)
        hosts_phoenix = addon is not None
        server_addon = _with_serve_endpoints(addon, server_plan.region, main_vpc.cidr_block, prefix)
        server_args: K3sServerArgs = {
            "region": server_plan.region,
            "private_ip": server_plan.private_ip,
            "instance_type": server_plan.instance_type,
            "k3s_version": server_plan.k3s_version,
            "ami_id": server_plan.image,
            "subnet_id": server_subnet.id,
            "availability_zone": server_subnet.availability_zone,
            "vpc_id": main_vpc.vpc_id,
            "security_group_ids": [main_vpc.security_group_id],
            "operator_cidrs": server_plan.operator_cidrs,
            "parameter_prefix": prefix,
            "state_volume_gb": SERVER_STATE_VOLUME_GB,
            "tags": {
                **tags,
                TAG_REGION: server_plan.region,
                TAG_ROLE: K3S_SERVER,
                **({TAG_HOSTS: PHOENIX} if hosts_phoenix else {}),
            },
        }
        server_args["addon"] = server_addon
        # Not created by the stack (`lmrun sky bind` writes them): the server reads this path and no other new one.
        server_args["read_names"] = [paths.serve_endpoints]
        if plan.gpu_pool is not None:
            server_args["skypilot_context"] = plan.gpu_pool.context
        # The parent's random/command providers are inherited; AWS is the main region's.
        self.server = K3sServer(f"{name}-k3s", args=server_args, opts=on_main)

        phoenix_node: PhoenixNode | None = None
        if store is not None and phoenix is not None and phoenix.placement == "node":
            phoenix_node = PhoenixNode(
                f"{name}-phoenix",
                args={
                    "store": store,
                    "region": server_plan.region,
                    "instance_type": phoenix.instance_type,
                    "volume_gb": phoenix.volume_gb,
                    "retention_days": phoenix.retention_days,
                    "backup_interval_minutes": phoenix.backup_interval_minutes,
                    "ami_id": server_plan.image,
                    "subnet_id": server_subnet.id,
                    "availability_zone": server_subnet.availability_zone,
                    "security_group_ids": [main_vpc.security_group_id],
                    "agent": K3sAgentConfig(
                        server_ip=server_plan.private_ip,
                        store=SsmParameterStore(server_plan.region),
                        token_parameter=paths.k3s_agent_token,
                        node_name=phoenix.node_name,
                        region=server_plan.region,
                        k3s_version=server_plan.k3s_version,
                    ),
                    "token_parameter_arn": self.server.agent_token_parameter_arn,
                    "tags": {**tags, TAG_REGION: server_plan.region, TAG_ROLE: PHOENIX},
                },
                opts=on_main,
            )
        tracing = (
            PhoenixClientConfig(
                store=SsmParameterStore(server_plan.region),
                ingest_key_parameter=store.parameter_names["ingest-key"],
                grpc_node_port=phoenix.grpc_node_port,
                restart_units=(VLLM_UNIT,),
            )
            if store is not None and phoenix is not None
            else None
        )
        self.ingest_key_parameter_arn = store.ingest_key_parameter_arn if store is not None else None
        self.phoenix_ingest_key = None
        if store is not None and any(node.site is not None for node in plan.nodes.values()):
            # The key lives in Phoenix's database: a new data volume (or server state volume) may mean a new key.
            volume_id = phoenix_node.data_volume_id if phoenix_node is not None else self.server.state_volume_id
            gate = command.local.Command(
                f"{name}-phoenix-ingest-key-gate",
                create=ingest_key_gate_script(region=server_plan.region, parameter=store.parameter_names["ingest-key"]),
                interpreter=["/bin/sh", "-c"],
                logging=command.local.Logging.NONE,
                triggers=[store.ingest_key_parameter_arn, volume_id],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    additional_secret_outputs=["stdout"],
                    depends_on=[phoenix_node if phoenix_node is not None else self.server],
                ),
            )
            self.phoenix_ingest_key = pulumi.Output.secret(gate.stdout)

        aws_nodes = [node for node in plan.nodes.values() if node.site is None]  # site nodes live in their site
        hf_parameter: aws.ssm.Parameter | None = None
        if any(node.pool is None for node in aws_nodes):
            # Always there (HF_TOKEN_UNSET until a token is set) and read by every node at each vLLM start:
            # setting or rotating the token changes this value only, never a node's user data or IAM policy.
            token = args["hugging_face_token"]
            hf_parameter = aws.ssm.Parameter(
                f"{name}-hf-token",
                name=paths.huggingface_token,
                type="SecureString",
                value=pulumi.Output.secret(token if token is not None else HF_TOKEN_UNSET),
                description="Hugging Face token for gated models (read by GPU nodes at every vLLM start)",
                tags=with_name({**tags, TAG_REGION: server_plan.region}, f"{name}-hf-token"),
                opts=pulumi.ResourceOptions(parent=self, provider=main_provider),
            )

        self.nodes = {}
        for node in aws_nodes:
            vpc = args["vpcs"][node.region]
            reads = [self.server.agent_token_parameter_arn]
            if node.pool is None:  # a pool node only joins K3s: no model to fetch, no traces of its own
                reads += [hf_parameter.arn] if hf_parameter is not None else []
                reads += [store.ingest_key_parameter_arn] if store is not None else []
            user_data = (
                self._pool_user_data(node, server_plan.private_ip, server_plan.region, server_plan.k3s_version, paths)
                if node.pool is not None
                else self._user_data(
                    node,
                    server_plan.private_ip,
                    server_plan.region,
                    server_plan.k3s_version,
                    paths,
                    hf_parameter,
                    tracing,
                )
            )
            self.nodes[node.name] = GpuNode(
                f"{name}-node-{slug(node.name)}",
                args={
                    "instance_type": node.instance_type,
                    "alternative_instance_types": node.alternative_instance_types,
                    "spot": node.spot,
                    "disk_size_gb": node.disk_size_gb,
                    "ami_id": node.image,
                    "subnet_ids": [subnet.id for _, subnet in sorted(vpc.subnets.items())],
                    "security_group_ids": [vpc.security_group_id],
                    "user_data": user_data,
                    "parameter_arns": reads,
                    "tags": {
                        **tags,
                        TAG_REGION: node.region,
                        TAG_ROLE: GPU_NODE if node.pool is None else GPU_POOL,
                        TAG_NODE: node.name,
                    },
                },
                opts=pulumi.ResourceOptions(parent=self, provider=args["providers"][node.region]),
            )

        services = [
            MeshService(
                name=e.name,
                app_port=e.app_port,
                node_port=e.node_port,
                # Labelled replicas are found by their serves.lmrun.io label, the others by their node name.
                pinned_nodes=() if e.labelled else e.replicas,
                probe=e.probe,
                probe_path=e.probe_path,
            )
            for e in plan.endpoints.values()
        ]
        if services or elastic:
            provider_kubeconfig: pulumi.Output[str] = self.server.kubeconfig
            server = args.get("k3s_api_server")
            if server:
                rewritten: pulumi.Output[str] = self.server.kubeconfig.apply(partial(with_api_server, server=server))
                provider_kubeconfig = pulumi.Output.secret(rewritten)
            ports = NodePorts(
                f"{name}-ports",
                args={
                    "services": services,
                    "elastic": elastic,
                    "kubeconfig": provider_kubeconfig,
                    # The cluster lives on the server's state volume: a new kubeconfig is the same cluster.
                    "cluster_identifier": self.server.state_volume_id,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.node_ports = ports.node_ports
        else:
            self.node_ports = pulumi.Output.from_input({})

        self.kubeconfig = self.server.kubeconfig
        self.api_endpoint = self.server.api_endpoint
        self.phoenix = (
            store.bucket_name.apply(
                lambda bucket: {
                    "placement": phoenix.placement,
                    "ui_node_port": phoenix.ui_node_port,
                    "grpc_node_port": phoenix.grpc_node_port,
                    "storage": "sqlite",
                    "backup_bucket": bucket,
                    "retention_days": phoenix.retention_days,
                }
            )
            if store is not None and phoenix is not None
            else pulumi.Output.from_input(None)
        )
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "api_endpoint": self.api_endpoint,
                "node_ports": self.node_ports,
                "phoenix": self.phoenix,
            }
        )

    @staticmethod
    def _agent(node: NodePlan, server_ip: str, ssm_region: str, k3s_version: str, paths: SecretPaths) -> K3sAgentConfig:
        """An AWS node's K3s agent: the agent token read from SSM; a vLLM node serves its service."""
        return K3sAgentConfig(
            server_ip=server_ip,
            store=SsmParameterStore(ssm_region),
            token_parameter=paths.k3s_agent_token,
            node_name=node.name,
            region=node.region,
            gpu=node.gpu,
            serves=(node.service,) if node.pool is None else (),
            k3s_version=k3s_version,
        )

    @staticmethod
    def _pool_user_data(node: NodePlan, server_ip: str, ssm_region: str, k3s_version: str, paths: SecretPaths) -> str:
        """A GPU pool node: the NVIDIA runtime and the K3s agent with the pool's labels and taint, no vLLM."""
        agent = Cluster._agent(node, server_ip, ssm_region, k3s_version, paths)
        return render_pool_node_user_data(pool_agent(agent, pool=node.pool or ""), Cluster._routes())

    @staticmethod
    def _routes() -> list[RouteMtu]:
        # The inter-region peering carries 8,500-byte packets, not the instance's 9,001 (lmrun.aws.network.mtu).
        return [RouteMtu(destination, mtu) for destination, mtu in PEERING_ROUTES]

    @staticmethod
    def _user_data(
        node: NodePlan,
        server_ip: str,
        ssm_region: str,
        k3s_version: str,
        paths: SecretPaths,
        hf_parameter: aws.ssm.Parameter | None,
        tracing: PhoenixClientConfig | None,
    ) -> str:
        """Plain values only: the agent token and the Hugging Face token are read on the VM by parameter name."""
        agent = Cluster._agent(node, server_ip, ssm_region, k3s_version, paths)
        store = agent.store
        vllm = VllmConfig(
            model=node.model,
            revision=node.model_revision,
            served_model_name=node.service,
            app_port=node.app_port,
            extra_args=node.vllm_args,
            tensor_parallel_size=node.gpu_count,
            hf_token_parameter=paths.huggingface_token if hf_parameter is not None else None,
            store=store,
            otlp_traces_endpoint=tracing.endpoint if tracing is not None else None,
            otlp_env_file=tracing.env_file if tracing is not None else None,
        )
        return render_gpu_node_user_data(agent, vllm, tracing, Cluster._routes())
