"""Ports the whole mesh agrees on: the Kubernetes node-port range, the ports the mesh reserves in it, and
the well-known ports of its own services."""

from __future__ import annotations

NODE_PORT_MIN = 30000
NODE_PORT_MAX = 32767
NODE_PORT_RANGE = range(NODE_PORT_MIN, NODE_PORT_MAX + 1)
"""Kubernetes' default ``--service-node-port-range`` (K3s keeps it)."""

K3S_API_PORT = 6443

SKYSERVE_LB_PORTS = range(30001, 30021)
"""Where SkyServe's load balancers listen on the serve controller (SkyPilot 0.14.1
``sky/serve/constants.py`` ``LOAD_BALANCER_PORT_RANGE = '30001-30020'``; each service takes the first free one).
The controller VM joins K3s, whose kube-proxy intercepts every NodePort on the host, so the mesh reserves these:
no mesh service may publish a node port in this range."""

PHOENIX_HTTP_PORT = 6006
"""Phoenix UI and OTLP/HTTP on the Phoenix VM."""
PHOENIX_GRPC_PORT = 4317
"""Phoenix OTLP/gRPC on the Phoenix VM."""
PHOENIX_UI_NODE_PORT = 30200
"""Default mesh-wide node port of the Phoenix UI (and OTLP/HTTP)."""
PHOENIX_GRPC_NODE_PORT = 30201
"""Default mesh-wide node port of Phoenix's OTLP/gRPC."""

WIREGUARD_PORT = 51820
"""WireGuard's conventional UDP port; the hub's is the only world-open ingress of the mesh."""


def in_node_port_range(port: int) -> bool:
    return NODE_PORT_MIN <= port <= NODE_PORT_MAX
