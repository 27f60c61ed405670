"""Kubernetes manifests that publish a VM process on a mesh-wide node port.

A mesh service is a process on the VMs themselves (vLLM, Phoenix, anything listening on ``app_port``), not
a pod. To publish it on a NodePort, and to send traffic only to replicas whose process is ready, every
replica node runs a tiny **readiness proxy**: a ``pause`` pod with ``hostNetwork: true`` whose readinessProbe
checks the VM process (``GET /v1/models`` for vLLM, which only answers once the model is loaded; an HTTP GET
or a TCP connect for generic services).

The proxies of a service are **one DaemonSet** selecting its replica nodes by label, so a proxy follows its
node: a replaced spot VM rejoins (new hostname, same labels) and gets its own proxy, while the proxy of the
dead Node turns NotReady with it (the node controller marks its pods not ready) and leaves the endpoints. A
node is a replica of service ``s`` when it registers ``serves.lmrun.io/s=true`` at join (vLLM replicas do,
and so can a VM joining later) or when its ``lmrun.io/node`` name is among the service's ``pinned_nodes``
(services declared on an existing node: generic services, Phoenix; so adding one never changes a node's
user data). A label naming a service that is not declared selects no DaemonSet and publishes nothing.
The pods carry no toleration at all: the DaemonSet controller adds the standard ones for not-ready,
unreachable and cordoned nodes itself. Their image is pinned by digest, and each container's requests equal
its limits (:data:`PROXY_RESOURCES`).

Why this routes to the VM process directly: a hostNetwork pod's IP *is* its node's IP. The Service selects
the proxy pods, so the EndpointSlice holds ``<nodeIP>:<targetPort>`` = ``<nodeIP>:<app_port>``, i.e. the VM
process itself; kube-proxy DNATs the node port there, on every node (``externalTrafficPolicy: Cluster``),
including ``localhost:<nodePort>``. Only ready pods are endpoints, so a replica whose vLLM is down or still
loading drops out of rotation, and comes back when it answers. The pause container serves nothing itself.
It is plain L4 (TCP), so gRPC passes. Consequence for security groups: every node must reach
``app_port`` on every replica node (DNATed traffic arrives there from the forwarding node's IP).

``pulumi up`` never waits on these objects: each carries ``pulumi.com/skipAwait: "true"`` (a Service's
endpoints and a DaemonSet's pods only become ready once the model is downloaded and loaded, which can take
far longer than the provider's 10-minute await). Pulumi writes them with the **deployer** credential
(:func:`deployer_manifests`): a ServiceAccount that may only manage Services and DaemonSets in the mesh's
namespace, which the K3s server creates and publishes a kubeconfig for.

**Elastic services** (SkyServe) have no replica VMs of the mesh's to select: their node port is a Service
without selector (:func:`elastic_service_manifest`) whose one endpoint, kept by the K3s server in an EndpointSlice
(:func:`endpoint_slice_manifest`, :mod:`lmrun.render.serve_endpoints`), is SkyServe's load balancer; the deployer
creates the Service (no more than its Services permission), the server's admin credential the slice.

**Default deny.** The server creates the namespace together with a NetworkPolicy denying all ingress and
egress to every pod in it (:func:`default_deny_manifest`), applied by the admin credential, so the
deployer can neither lift nor edit it. K3s enforces NetworkPolicies with its embedded kube-router
controller (K3s docs, "Networking Services", Network Policy Controller). The mesh needs no allow rule:
the readiness proxies are hostNetwork pods, which no policy governs (Kubernetes docs, "Network Policies":
"NetworkPolicy behaviour for hostNetwork pods is undefined"; kube-router's controller skips them,
``isNetPolActionable``); the kubelet probes a pod from its own node, which a policy never blocks ("traffic
to and from the node where a Pod is running is always allowed"); and pause resolves no name (no DNS). So
the policy changes nothing for the mesh today: it makes any pod a later change (or a hand-applied
manifest) puts in the namespace start isolated, until an allow names what it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from lmrun.domain.names import LABEL_NODE, serves_label
from lmrun.domain.ports import NODE_PORT_MAX, NODE_PORT_MIN, NODE_PORT_RANGE, SKYSERVE_LB_PORTS

PAUSE_IMAGE = "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
"""Image of the readiness proxies (does nothing; ~300 kB), pinned by the digest of its multi-arch index (so
amd64 and arm64 nodes each pull their own platform's image): a tag can be re-pushed, a digest cannot, and the
runtime refuses content that does not match it. The tag stays for readers; the digest decides."""
PROXY_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
"""A readiness proxy's requests and limits, equal so the pod is of the Guaranteed QoS class: the kubelet evicts
it last under node pressure, and evicting it would take a healthy replica out of its Service. pause sleeps in
``pause(2)`` with well under 1 MiB resident; 16 MiB leaves room for the runtime's ``runc init``, which runs in
the container's cgroup before it execs pause. 10m CPU is the smallest limit the kernel enforces as written:
the kubelet turns a limit into a CFS quota of at least 1 ms per 100 ms period (``MinQuotaPeriod``), i.e. 10m.
The kubelet runs the readiness probe itself, outside the container's cgroup, so the limits never slow it."""

NAMESPACE = "lmrun"
"""The mesh's namespace: created by the K3s server with the deployer's RBAC, never by Pulumi."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "lmrun"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
"""pulumi-kubernetes' annotation that makes ``pulumi up`` return once the API accepted the object, without
waiting for a Service's endpoints or a DaemonSet's ready pods."""
DEPLOYER = "lmrun-deployer"
"""ServiceAccount (and Role, RoleBinding) whose token Pulumi's Kubernetes provider uses."""
DEPLOYER_TOKEN_SECRET = f"{DEPLOYER}-token"
"""The ``kubernetes.io/service-account-token`` Secret holding the deployer's long-lived token."""
DEPLOYER_RULES: tuple[tuple[str, str], ...] = (("", "services"), ("apps", "daemonsets"))
"""(API group, resource) the deployer may manage in :data:`NAMESPACE`, and nothing else."""
_DEPLOYER_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([a-z0-9\-]*[a-z0-9])?$")
SERVICE_PREFIX = "lmrun-svc-"
"""The prefix of every mesh Service's name (``lmrun-svc-<service>``)."""
_SERVICE_PREFIX = SERVICE_PREFIX
_PORT_NAME = "app"
"""The name of a Service's one port (an EndpointSlice's port pairs with it by name)."""


@dataclass(frozen=True)
class MeshService:
    """One VM process published on a mesh-wide node port."""

    name: str
    """Stable service key (DNS label); the Service and the DaemonSet are ``lmrun-svc-<name>``."""
    app_port: int
    """Port the process listens on, on each replica VM."""
    node_port: int
    """Mesh-wide node port (30000-32767)."""
    pinned_nodes: tuple[str, ...] = ()
    """Nodes (``lmrun.io/node`` names) that are replicas without registering the service's label: services
    declared on an existing node (generic services, Phoenix). Every node registering
    ``serves.lmrun.io/<name>=true`` is a replica too."""
    probe: Literal["vllm", "http", "tcp"] = "vllm"
    """``vllm``: ready when ``GET /v1/models`` succeeds (the model is loaded); ``http``: when ``GET probe_path``
    succeeds; ``tcp``: when the port accepts connections."""
    probe_path: str = "/"
    """Path of the ``http`` probe."""

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
        if len(set(self.pinned_nodes)) != len(self.pinned_nodes):
            raise ValueError(f"pinned_nodes: duplicate nodes in {list(self.pinned_nodes)}")
        for node in self.pinned_nodes:
            if not _DNS_LABEL.match(node) or len(node) > 63:
                raise ValueError(f"pinned_nodes: {node!r} must be a lowercase DNS label")
        if self.probe not in ("vllm", "http", "tcp"):
            raise ValueError(f"probe: {self.probe!r} is not 'vllm', 'http' or 'tcp'")
        if not self.probe_path.startswith("/"):
            raise ValueError(f"probe_path: {self.probe_path!r} must start with '/'")

    @property
    def service_name(self) -> str:
        return _SERVICE_PREFIX + self.name

    @property
    def label(self) -> str:
        """The node label (value ``"true"``) that makes a node a replica: ``serves.lmrun.io/<name>``."""
        return serves_label(self.name)


def _metadata(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": dict(labels)}


def namespace_manifest() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(MANAGED_BY)}}


DEFAULT_DENY = "default-deny"
"""The NetworkPolicy in every namespace the mesh creates that isolates all its pods in both directions."""


def default_deny_manifest(namespace: str = NAMESPACE) -> dict[str, Any]:
    """A NetworkPolicy selecting every pod of ``namespace`` (empty ``podSelector``) for ingress and egress with
    no rule: nothing in or out but what another policy allows (see the module's docstring for why the mesh
    needs no allow)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": DEFAULT_DENY, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def _node_port_service(
    name: str, labels: Mapping[str, str], *, port: int, node_port: int, selector: Mapping[str, str] | None
) -> dict[str, Any]:
    """A NodePort Service ``name`` on ``node_port`` (port and targetPort ``port``, named ``app``); without a
    ``selector`` no controller gives it endpoints."""
    spec: dict[str, Any] = {"type": "NodePort"}
    if selector is not None:
        spec["selector"] = dict(selector)
    spec["ports"] = [{"name": _PORT_NAME, "protocol": "TCP", "port": port, "targetPort": port, "nodePort": node_port}]
    # Every node forwards to every ready endpoint, so localhost:<nodePort> works mesh-wide.
    spec |= {
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "publishNotReadyAddresses": False,
        "sessionAffinity": "None",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_metadata(name, labels), "annotations": dict(SKIP_AWAIT)},
        "spec": spec,
    }


def service_manifest(svc: MeshService) -> dict[str, Any]:
    """The NodePort Service selecting the service's readiness proxies."""
    labels = {**MANAGED_BY, "lmrun.io/service": svc.name}
    selector = {"app": svc.service_name}
    return _node_port_service(svc.service_name, labels, port=svc.app_port, node_port=svc.node_port, selector=selector)


ENDPOINT_SLICE_MANAGER = "lmrun.io/serve-endpoints"
"""The ``endpointslice.kubernetes.io/managed-by`` value of the EndpointSlices the K3s server keeps for elastic
services. Kubernetes docs, "Service" (kubernetes.io/docs/concepts/services-networking/service/, Custom
EndpointSlices): a slice you manage yourself names its manager in this label, "similar to
my-domain.example/name-of-controller", never the control plane's; the EndpointSlice controller manages only slices
labelled with its own name (``endpointslice-controller.k8s.io``, k8s.io/kubernetes/pkg/controller/endpointslice
``ControllerName``) and none for a Service without selector."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label that ties an EndpointSlice to its Service (kube-proxy joins them by it)."""
ELASTIC_LABEL = "lmrun.io/elastic"
"""Labels (value ``"true"``) the Service of an elastic service: what the K3s server lists to keep their slices."""


@dataclass(frozen=True)
class ElasticNodePort:
    """An elastic service's mesh-wide node port: a Service without selector whose only endpoint is SkyServe's load
    balancer (the controller's private IP and LB port), kept by the K3s server in an EndpointSlice."""

    name: str
    """Stable service key (DNS label): the Service and its EndpointSlice are ``lmrun-svc-<name>``."""
    node_port: int
    """Mesh-wide node port (30000-32767, outside SkyServe's load-balancer ports)."""

    def __post_init__(self) -> None:
        if not _DNS_1035.match(self.name) or len(_SERVICE_PREFIX + self.name) > 63:
            raise ValueError(
                f"name: {self.name!r} must be a lowercase DNS label starting with a letter, "
                f"at most {63 - len(_SERVICE_PREFIX)} characters"
            )
        if self.node_port not in NODE_PORT_RANGE:
            raise ValueError(f"node_port: {self.node_port} is outside {NODE_PORT_MIN}-{NODE_PORT_MAX}")
        if self.node_port in SKYSERVE_LB_PORTS:
            raise ValueError(
                f"node_port: {self.node_port} is one of SkyServe's load-balancer ports "
                f"{SKYSERVE_LB_PORTS.start}-{SKYSERVE_LB_PORTS.stop - 1} (reserved)"
            )

    @property
    def service_name(self) -> str:
        return _SERVICE_PREFIX + self.name


def elastic_service_manifest(svc: ElasticNodePort) -> dict[str, Any]:
    """The NodePort Service of an elastic service, **without selector**: no controller manages its endpoints, the
    EndpointSlice the K3s server writes (:func:`endpoint_slice_manifest`) is its only one. The port kube-proxy
    forwards to is that slice's (the load balancer's port, known only once ``sky serve up`` picked it); ``port`` and
    ``targetPort`` here are never used to reach a backend (Kubernetes docs, "Service", Services without selectors:
    "Accessing a Service without a selector works the same as if it had a selector", traffic going to the
    EndpointSlice's addresses on its port), so both carry the node port, a number no reader mistakes
    for the LB's. The port's name ties it to the slice's port."""
    labels = {**MANAGED_BY, "lmrun.io/service": svc.name, ELASTIC_LABEL: "true"}
    return _node_port_service(svc.service_name, labels, port=svc.node_port, node_port=svc.node_port, selector=None)


def endpoint_slice_manifest(service_name: str) -> dict[str, Any]:
    """The EndpointSlice of the elastic service's Service ``service_name`` with no endpoint (and no port): what the
    server applies while no load balancer is bound, so a client's connection is refused instead of reaching a wrong
    backend. The server's helper (``render/scripts/serve_endpoints.py``) fills in the Service's name and the bound
    ``IP:PORT`` (its template is this with ``service_name`` empty)."""
    labels = {
        **MANAGED_BY,
        SERVICE_NAME_LABEL: service_name,
        "endpointslice.kubernetes.io/managed-by": ENDPOINT_SLICE_MANAGER,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _metadata(service_name, labels),
        "addressType": "IPv4",
        "ports": [],
        "endpoints": [],
    }


def _probe(svc: MeshService) -> dict[str, Any]:
    check: dict[str, Any]
    if svc.probe in ("vllm", "http"):
        path = "/v1/models" if svc.probe == "vllm" else svc.probe_path
        check = {"httpGet": {"path": path, "port": svc.app_port, "scheme": "HTTP"}}
    else:
        check = {"tcpSocket": {"port": svc.app_port}}
    return {**check, "periodSeconds": 5, "timeoutSeconds": 3, "successThreshold": 1, "failureThreshold": 2}


def node_selector_terms(svc: MeshService) -> list[dict[str, Any]]:
    """The replica nodes, as node-affinity terms (ORed): the service's label, then the pinned node names."""
    terms: list[dict[str, Any]] = [{"matchExpressions": [{"key": svc.label, "operator": "In", "values": ["true"]}]}]
    if svc.pinned_nodes:
        pinned = sorted(svc.pinned_nodes)
        terms.append({"matchExpressions": [{"key": LABEL_NODE, "operator": "In", "values": pinned}]})
    return terms


def readiness_proxy_manifest(svc: MeshService, *, image: str = PAUSE_IMAGE) -> dict[str, Any]:
    """A DaemonSet of hostNetwork pause pods on every replica node, each ready iff its node's VM process is."""
    pod_labels = {"app": svc.service_name, **MANAGED_BY}
    metadata = _metadata(svc.service_name, {**MANAGED_BY, "lmrun.io/service": svc.name})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {**metadata, "annotations": dict(SKIP_AWAIT)},
        "spec": {
            "selector": {"matchLabels": {"app": svc.service_name}},
            # A new proxy is ready before the old one on the same node goes (hostNetwork, no host port).
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": node_selector_terms(svc)
                            }
                        }
                    },
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
                            "resources": {kind: dict(values) for kind, values in PROXY_RESOURCES.items()},
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
    """The Service and its readiness-proxy DaemonSet."""
    return [service_manifest(svc), readiness_proxy_manifest(svc, image=image)]


def check_node_ports(services: Iterable[MeshService | ElasticNodePort]) -> None:
    """Raise ValueError if two services (fixed or elastic) share a node port or a name."""
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
    """The namespace and its default-deny policy first, then every service's objects, services in name order
    (for a standalone apply; ``pulumi up`` leaves the namespace and its policy to the server)."""
    check_node_ports(services)
    out: list[dict[str, Any]] = [namespace_manifest(), default_deny_manifest()]
    for svc in sorted(services, key=lambda s: s.name):
        out.extend(mesh_service_manifests(svc, image=image))
    return out


def term_selects(term: Any, node_labels: Mapping[str, str]) -> bool:
    """Whether a node-affinity term (its ``matchExpressions``, ANDed; only ``In``, which the proxies use) selects
    a node with ``node_labels``. An empty or malformed term selects nothing."""
    expressions = term.get("matchExpressions") if isinstance(term, Mapping) else None
    if not isinstance(expressions, list) or not expressions:
        return False
    return all(
        isinstance(e, Mapping)
        and e.get("operator") == "In"
        and node_labels.get(str(e.get("key"))) in (e.get("values") or [])
        for e in expressions
    )


def proxy_terms(manifest: Mapping[str, Any]) -> list[Any]:
    """The node-affinity terms (ORed) of a readiness-proxy DaemonSet's pods; none where a step is missing."""
    value: Any = manifest
    path = ("spec", "template", "spec", "affinity", "nodeAffinity")
    for step in (*path, "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"):
        value = value.get(step) if isinstance(value, Mapping) else None
    return value if isinstance(value, list) else []


def matching_services(manifests: Iterable[Mapping[str, Any]], node_labels: Mapping[str, str]) -> list[str]:
    """Names of the DaemonSets among ``manifests`` that would run a proxy on a node with ``node_labels``."""
    return sorted(
        str(manifest["metadata"]["name"])
        for manifest in manifests
        if manifest.get("kind") == "DaemonSet" and any(term_selects(t, node_labels) for t in proxy_terms(manifest))
    )


def deployer_manifests() -> list[dict[str, Any]]:
    """What the K3s server applies at boot so Pulumi never needs the admin credential: the mesh namespace with
    its default-deny NetworkPolicy (created with the namespace, before any pod, and out of the deployer's
    reach), the ``lmrun-deployer`` ServiceAccount, its long-lived token Secret, and a Role (bound to it)
    allowing exactly the objects the stack manages (Services and DaemonSets) in that namespace."""
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": list(_DEPLOYER_VERBS)}
        for group, resource in DEPLOYER_RULES
    ]
    rbac = "rbac.authorization.k8s.io"
    named = {"name": DEPLOYER, "namespace": NAMESPACE}
    return [
        namespace_manifest(),
        default_deny_manifest(),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": named, "automountServiceAccountToken": False},
        {
            # Created by hand (the ServiceAccount does not list it), so the legacy-token cleaner leaves it alone:
            # the token never expires; deleting the Secret revokes it.
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": DEPLOYER_TOKEN_SECRET,
                "namespace": NAMESPACE,
                "annotations": {"kubernetes.io/service-account.name": DEPLOYER},
            },
            "type": "kubernetes.io/service-account-token",
        },
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": named, "rules": rules},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": named,
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": DEPLOYER},
            "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": NAMESPACE}],
        },
    ]


def to_json_list(manifests: Sequence[Mapping[str, Any]]) -> str:
    """One compact ``v1/List`` JSON document (``kubectl apply -f`` takes it; every byte of user data counts)."""
    document = {"apiVersion": "v1", "kind": "List", "items": [dict(m) for m in manifests]}
    return json.dumps(document, separators=(",", ":")) + "\n"


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML (``---`` separated), keys in the order written."""
    return yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False, default_flow_style=False)
