"""NodePorts: publishes VM processes on mesh-wide node ports through the K3s API.

The manifests come from :mod:`lmrun.render.kubernetes` (a NodePort Service per service, a hostNetwork
readiness proxy per replica node); this component only turns them into Kubernetes resources behind an
explicit provider built from the server's kubeconfig, which a readiness gate delivers once the API serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from lmrun.render.kubernetes import (
    MeshService,
    check_node_ports,
    namespace_manifest,
    readiness_proxy_manifest,
    service_manifest,
)


class NodePortsArgs(TypedDict):
    """Inputs of :class:`NodePorts`."""

    services: Sequence[MeshService]
    """Services with their node ports and replica nodes."""
    kubeconfig: pulumi.Input[str]
    """Admin kubeconfig of the cluster (a secret)."""
    cluster_identifier: NotRequired[pulumi.Input[str]]
    """What names the cluster (e.g. the server's state volume id): the Kubernetes provider, and every object
    behind it, is replaced only when this changes, never because a new kubeconfig is being read."""


def _resource(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    kind = manifest["kind"]
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=manifest["metadata"], opts=opts)
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=manifest["metadata"], spec=manifest["spec"], opts=opts)
    if kind == "Deployment":
        return k8s.apps.v1.Deployment(name, metadata=manifest["metadata"], spec=manifest["spec"], opts=opts)
    raise ValueError(f"no resource mapping for kind {kind!r}")


class NodePorts(pulumi.ComponentResource):
    """Namespace, Services and readiness proxies, named after their Kubernetes names (stable keys)."""

    node_ports: pulumi.Output[dict[str, int]]

    def __init__(self, name: str, *, args: NodePortsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:NodePorts", name, None, opts)
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(args["kubeconfig"]),
            enable_server_side_apply=True,
            cluster_identifier=args.get("cluster_identifier"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        services = sorted(args["services"], key=lambda s: s.name)
        check_node_ports(services)
        namespaces = {
            namespace: _resource(
                f"{name}-ns-{namespace}",
                namespace_manifest(namespace),
                pulumi.ResourceOptions(parent=self, provider=provider),
            )
            for namespace in sorted({s.namespace for s in services})
        }
        for service in services:
            in_namespace = pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[namespaces[service.namespace]]
            )
            _resource(f"{name}-svc-{service.name}", service_manifest(service), in_namespace)
            for node in sorted(service.nodes):
                _resource(f"{name}-ready-{service.name}-{node}", readiness_proxy_manifest(service, node), in_namespace)

        self.node_ports = pulumi.Output.from_input({svc.name: svc.node_port for svc in args["services"]})
        self.register_outputs({"node_ports": self.node_ports})
