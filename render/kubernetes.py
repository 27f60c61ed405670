"""Kubernetes manifests that publish a VM process on a mesh-wide node port.

A mesh service is a process on the VMs themselves (vLLM, Phoenix, anything listening on ``app_port``), not
a pod. To publish it on a NodePort, and to send traffic only to replicas whose process is ready, each
replica node gets a tiny **readiness proxy**: a ``pause`` pod with ``hostNetwork: true``, pinned to the node
by ``lmrun.io/node``, whose readinessProbe checks the VM process (``GET /v1/models`` for vLLM, which only
answers once the model is loaded; a TCP connect for generic services).

Why this routes to the VM process directly: a hostNetwork pod's IP *is* its node's IP. The Service selects
these pods, so the EndpointSlice holds ``<nodeIP>:<targetPort>`` = ``<nodeIP>:<app_port>``, i.e. the VM
process itself; kube-proxy DNATs the node port there, on every node (``externalTrafficPolicy: Cluster``),
including ``localhost:<nodePort>``. Only ready pods are endpoints, so a replica whose vLLM is down or still
loading drops out of rotation, and comes back when it answers. The pause container serves nothing itself.
It is plain L4 (TCP), so gRPC passes. Consequence for security groups: every node must reach
``app_port`` on every replica node (DNATed traffic arrives there from the forwarding node's IP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from lmrun.domain.names import LABEL_NODE
from lmrun.domain.ports import NODE_PORT_MAX, NODE_PORT_MIN, NODE_PORT_RANGE

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
"""Pinned image of the readiness proxies (does nothing; ~300 kB)."""

NAMESPACE = "lmrun"
MANAGED_BY = {"app.kubernetes.io/managed-by": "lmrun"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([a-z0-9\-]*[a-z0-9])?$")
_SERVICE_PREFIX = "lmrun-svc-"


@dataclass(frozen=True)
class MeshService:
    """One VM process published on a mesh-wide node port."""

    name: str
    """Stable service key (DNS label); the Service is ``lmrun-svc-<name>``."""
    app_port: int
    """Port the process listens on, on each replica VM."""
    node_port: int
    """Mesh-wide node port (30000-32767)."""
    nodes: tuple[str, ...]
    """Replica node names (``lmrun.io/node`` values)."""
    probe: Literal["vllm", "http", "tcp"] = "vllm"
    """``vllm``: ready when ``GET /v1/models`` succeeds (the model is loaded); ``http``: when ``GET probe_path``
    succeeds; ``tcp``: when the port accepts connections."""
    probe_path: str = "/"
    """Path of the ``http`` probe."""
    namespace: str = NAMESPACE

    def __post_init__(self) -> None:
        if not _DNS_1035.match(self.name) or len(_SERVICE_PREFIX + self.name) > 63:
            raise ValueError(
                f"name: {self.name!r} must be a lowercase DNS label starting with a letter, "
                f"at most {63 - len(_SERVICE_PREFIX)} characters"
            )
        if not 1 <= self.app_port <= 65535:
            raise ValueError(f"app_port: {self.app_port} is outside 1-65535")
        if self.node_port not in NODE_PORT_RANGE:
            raise ValueError(f"node_port: {self.node_port} is outside {NODE_PORT_MIN}-{NODE_PORT_MAX}")
        if not self.nodes:
            raise ValueError("nodes: a service needs at least one replica node")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes: duplicate replica nodes in {list(self.nodes)}")
        for node in self.nodes:
            if not _DNS_LABEL.match(node) or len(proxy_name(self.name, node)) > 253:
                raise ValueError(f"nodes: {node!r} must be a lowercase DNS label")
        if self.probe not in ("vllm", "http", "tcp"):
            raise ValueError(f"probe: {self.probe!r} is not 'vllm', 'http' or 'tcp'")
        if not self.probe_path.startswith("/"):
            raise ValueError(f"probe_path: {self.probe_path!r} must start with '/'")
        if not _DNS_LABEL.match(self.namespace) or len(self.namespace) > 63:
            raise ValueError(f"namespace: {self.namespace!r} is not a DNS label")

    @property
    def service_name(self) -> str:
        return _SERVICE_PREFIX + self.name


def proxy_name(service: str, node: str) -> str:
    """Name of the readiness proxy of ``service`` on ``node`` (stable: keyed by names, not positions)."""
    return f"{_SERVICE_PREFIX}{service}-{node}"


def namespace_manifest(namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": dict(MANAGED_BY)}}


def service_manifest(svc: MeshService) -> dict[str, Any]:
    """The NodePort Service selecting the service's readiness proxies."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": svc.service_name,
            "namespace": svc.namespace,
            "labels": {**MANAGED_BY, "lmrun.io/service": svc.name},
        },
        "spec": {
            "type": "NodePort",
            "selector": {"app": svc.service_name},
            "ports": [
                {
                    "name": "app",
                    "protocol": "TCP",
                    "port": svc.app_port,
                    "targetPort": svc.app_port,
                    "nodePort": svc.node_port,
                }
            ],
            # Every node forwards to every ready replica, so localhost:<nodePort> works mesh-wide.
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "publishNotReadyAddresses": False,
            "sessionAffinity": "None",
        },
    }


def _probe(svc: MeshService) -> dict[str, Any]:
    check: dict[str, Any]
    if svc.probe in ("vllm", "http"):
        path = "/v1/models" if svc.probe == "vllm" else svc.probe_path
        check = {"httpGet": {"path": path, "port": svc.app_port, "scheme": "HTTP"}}
    else:
        check = {"tcpSocket": {"port": svc.app_port}}
    return {**check, "periodSeconds": 5, "timeoutSeconds": 3, "successThreshold": 1, "failureThreshold": 2}


def readiness_proxy_manifest(svc: MeshService, node: str, *, image: str = PAUSE_IMAGE) -> dict[str, Any]:
    """A one-replica Deployment of a hostNetwork pause pod pinned to ``node``, ready iff the VM process is."""
    pod_labels = {"app": svc.service_name, LABEL_NODE: node, **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": proxy_name(svc.name, node),
            "namespace": svc.namespace,
            "labels": {**MANAGED_BY, "lmrun.io/service": svc.name, LABEL_NODE: node},
        },
        "spec": {
            "replicas": 1,
            # Recreate: never two proxies on one node; nothing to drain, the VM process keeps serving.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": svc.service_name, LABEL_NODE: node}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {LABEL_NODE: node},
                    # Reflect the VM process whatever taints the node carries (like a DaemonSet would).
                    "tolerations": [{"operator": "Exists"}],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 0,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65535,
                        "runAsGroup": 65535,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "readiness",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            # No `ports`: declaring one on a hostNetwork pod reserves the host port and
                            # would clash with the VM process; the Service's numeric targetPort suffices.
                            "readinessProbe": _probe(svc),
                            "resources": {
                                "requests": {"cpu": "1m", "memory": "8Mi"},
                                "limits": {"memory": "16Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def mesh_service_manifests(svc: MeshService, *, image: str = PAUSE_IMAGE) -> list[dict[str, Any]]:
    """The Service plus one readiness proxy per replica node, in node-name order (stable)."""
    return [service_manifest(svc), *(readiness_proxy_manifest(svc, n, image=image) for n in sorted(svc.nodes))]


def check_node_ports(services: Iterable[MeshService]) -> None:
    """Raise ValueError if two services share a node port or a name."""
    by_port: dict[int, str] = {}
    names: set[str] = set()
    for svc in services:
        if svc.name in names:
            raise ValueError(f"services: duplicate service name {svc.name!r}")
        names.add(svc.name)
        if svc.node_port in by_port:
            other = by_port[svc.node_port]
            raise ValueError(f"services.{svc.name}.node_port: {svc.node_port} is already used by {other!r}")
        by_port[svc.node_port] = svc.name


def mesh_manifests(services: Sequence[MeshService], *, image: str = PAUSE_IMAGE) -> list[dict[str, Any]]:
    """Namespace(s) first, then every service's objects, services in name order."""
    check_node_ports(services)
    namespaces = sorted({s.namespace for s in services})
    out: list[dict[str, Any]] = [namespace_manifest(ns) for ns in namespaces]
    for svc in sorted(services, key=lambda s: s.name):
        out.extend(mesh_service_manifests(svc, image=image))
    return out


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML (``---`` separated), keys in the order written."""
    return yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False, default_flow_style=False)
