"""Pulumi ComponentResources of the mesh, reusable from other projects.

Components take typed args and explicit providers and never read stack config. ``Mesh`` builds the whole
stack from a plan; the others are its parts and can be used on their own (a ``GpuNode`` with
``gpu_node_user_data`` and a GPU image pinned with ``gpu_image_id``).
"""

from lmrun.components.cluster import Cluster, ClusterArgs
from lmrun.components.flow_logs import FlowLogs, FlowLogsArgs, FlowLogVpc
from lmrun.components.gpu_node import GpuNode, GpuNodeArgs
from lmrun.components.gpu_node_inputs import (
    GPU_IMAGE,
    JoinCluster,
    gpu_image_id,
    gpu_image_pin_command,
    gpu_node_user_data,
)
from lmrun.components.instance_role import InstanceRole, InstanceRoleArgs
from lmrun.components.k3s_server import K3sServer, K3sServerArgs, ServerAddon
from lmrun.components.mesh import Mesh, MeshArgs
from lmrun.components.node_ports import NodePorts, NodePortsArgs
from lmrun.components.peering import PeeringHub, PeeringHubArgs, PeerVpc
from lmrun.components.phoenix import PhoenixNode, PhoenixNodeArgs, PhoenixStore, PhoenixStoreArgs
from lmrun.components.site_cloud import SiteArgs, SiteCloud
from lmrun.components.sites import Sites, SitesArgs
from lmrun.components.vpc import RegionalVpc, RegionalVpcArgs
from lmrun.components.wireguard_hub import HubSite, WireGuardHub, WireGuardHubArgs

__all__ = [
    "GPU_IMAGE",
    "Cluster",
    "ClusterArgs",
    "FlowLogVpc",
    "FlowLogs",
    "FlowLogsArgs",
    "GpuNode",
    "GpuNodeArgs",
    "HubSite",
    "InstanceRole",
    "InstanceRoleArgs",
    "JoinCluster",
    "K3sServer",
    "K3sServerArgs",
    "Mesh",
    "MeshArgs",
    "NodePorts",
    "NodePortsArgs",
    "PeerVpc",
    "PeeringHub",
    "PeeringHubArgs",
    "PhoenixNode",
    "PhoenixNodeArgs",
    "PhoenixStore",
    "PhoenixStoreArgs",
    "RegionalVpc",
    "RegionalVpcArgs",
    "ServerAddon",
    "SiteArgs",
    "SiteCloud",
    "Sites",
    "SitesArgs",
    "WireGuardHub",
    "WireGuardHubArgs",
    "gpu_image_id",
    "gpu_image_pin_command",
    "gpu_node_user_data",
]
