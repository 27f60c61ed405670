"""NodePorts: publishes VM processes on mesh-wide node ports through the K3s API.

The manifests come from :mod:`lmrun.render.kubernetes` (per service a NodePort Service and a DaemonSet of
hostNetwork readiness proxies on its replica nodes; per elastic service a NodePort Service without selector, whose
EndpointSlice the K3s server keeps); this component only turns them into Kubernetes resources behind an explicit
provider built from the **deployer** kubeconfig the K3s server publishes (a ServiceAccount that may only manage
Services and DaemonSets in the mesh's namespace, which the server creates). Every object carries
``pulumi.com/skipAwait``: ``pulumi up`` never waits for a model to load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from lmrun.render.kubernetes import (
    ElasticNodePort,
    MeshService,
    check_node_ports,
    elastic_service_manifest,
    readiness_proxy_manifest,
    service_manifest,
)


class NodePortsArgs(TypedDict):
    """Inputs of :class:`NodePorts`."""

    services: Sequence[MeshService]
    """Services with their node ports and replicas."""
    elastic: NotRequired[Sequence[ElasticNodePort]]
    """Elastic services: a Service without selector each (the K3s server keeps its EndpointSlice pointed at
    SkyServe's load balancer; the deployer needs no more than Services for them)."""
    kubeconfig: pulumi.Input[str]
    """The deployer's kubeconfig (a secret)."""
    cluster_identifier: NotRequired[pulumi.Input[str]]
    """What names the cluster (e.g. the server's state volume id): the Kubernetes provider, and every object
    behind it, is replaced only when this changes, never because a new kubeconfig is being read."""


def _resource(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    kind = manifest["kind"]
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=manifest["metadata"], spec=manifest["spec"], opts=opts)
    if kind == "DaemonSet":
        return k8s.apps.v1.DaemonSet(name, metadata=manifest["metadata"], spec=manifest["spec"], opts=opts)
    raise ValueError(f"no resource mapping for kind {kind!r}")


class NodePorts(pulumi.ComponentResource):
    """A Service and a readiness-proxy DaemonSet per service, named after the service (a stable key)."""

    node_ports: pulumi.Output[dict[str, int]]

    def __init__(self, name: str, *, args: NodePortsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the Services and readiness proxies of ``args`` (:class:`NodePortsArgs`) behind a Kubernetes
        provider it builds from ``args["kubeconfig"]``; ``opts`` needs no provider."""
        super().__init__("lmrun:index:NodePorts", name, None, opts)
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(args["kubeconfig"]),
            enable_server_side_apply=True,
            cluster_identifier=args.get("cluster_identifier"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        services = sorted(args["services"], key=lambda s: s.name)
        elastic = sorted(args.get("elastic", ()), key=lambda s: s.name)
        check_node_ports([*services, *elastic])
        on_cluster = pulumi.ResourceOptions(parent=self, provider=provider)
        for service in services:
            _resource(f"{name}-svc-{service.name}", service_manifest(service), on_cluster)
            _resource(f"{name}-proxy-{service.name}", readiness_proxy_manifest(service), on_cluster)
        for bridged in elastic:
            _resource(f"{name}-svc-{bridged.name}", elastic_service_manifest(bridged), on_cluster)

        ports = {svc.name: svc.node_port for svc in services} | {svc.name: svc.node_port for svc in elastic}
        self.node_ports = pulumi.Output.from_input(ports)
        self.register_outputs({"node_ports": self.node_ports})
