"""Names the layers share: K3s node labels, the mesh's own node names, resource tag keys."""

from __future__ import annotations

LABEL_NODE = "lmrun.io/node"
"""Every mesh VM registers with this label: the name services select their replicas by."""
LABEL_GPU = "lmrun.io/gpu"
LABEL_REGION = "lmrun.io/region"
LABEL_GPU_POOL = "lmrun.io/gpu-pool"
"""A GPU pool node's pool (``lmrun:gpuPool``): the NVIDIA device plugin runs where this label is."""
SERVES_LABEL_PREFIX = "serves.lmrun.io/"
"""A node registering ``serves.lmrun.io/<service>=true`` is a replica of the declared service ``<service>``: the
service's readiness proxy (a DaemonSet) runs there. A label naming no declared service selects nothing."""
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
"""Set by K3s on the server's own Node."""


def serves_label(service: str) -> str:
    """The node label key that makes a node a replica of ``service``."""
    return SERVES_LABEL_PREFIX + service


SERVER_NODE = "k3s-server"
"""The ``lmrun.io/node`` label of the K3s server."""
PHOENIX_NODE = "phoenix"
"""The ``lmrun.io/node`` label of the Phoenix VM."""

TAG_REGION = "lmrun:region"
TAG_ROLE = "lmrun:role"
TAG_NODE = "lmrun:node"
TAG_HOSTS = "lmrun:hosts"
"""On a machine that also runs another role's workload (the K3s server hosting Phoenix): that role. The access
check then holds the machine to both roles' lines of :data:`lmrun.domain.access.ACCESS_MATRIX`."""

VLLM_MANAGED_FLAGS = ("--port", "--host", "--served-model-name", "--revision", "--otlp-traces-endpoint")
"""vLLM flags lmrun sets itself; a node's extra arguments may not repeat them."""

IMAGE_SERVER = "server"
"""Image role of the main region's Amazon Linux VMs: the K3s server, the Phoenix node, the WireGuard hub."""
IMAGE_GPU = "gpu"
"""Image role of GPU nodes (per AWS region with nodes, per site with nodes)."""
IMAGE_GATEWAY = "gateway"
"""Image role of a site cloud's WireGuard gateway VM."""
