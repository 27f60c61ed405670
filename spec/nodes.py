"""Spec of GPU nodes and of the services published on mesh-wide node ports.

A node follows the shape users know from SkyPilot-style orchestrators (name, cloud, region, gpu and
count, model and pinned revision, spot, disk, extra vLLM args, node port). Nodes that share a ``service``
name are replicas behind one node port. Generic VM processes are published through ``lmrun:services``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from lmrun.clouds import CLOUD_NAMES, HUB_CLOUD
from lmrun.domain.names import PHOENIX_NODE, SERVER_NODE
from lmrun.domain.names import VLLM_MANAGED_FLAGS as MANAGED_FLAGS
from lmrun.domain.ports import NODE_PORT_MAX, NODE_PORT_MIN, SKYSERVE_LB_PORTS
from lmrun.spec.capacity import recorded_offerings
from lmrun.spec.cloud_rules import NodeContext, cloud_rules
from lmrun.spec.errors import ConfigIssue, config_path, echo
from lmrun.spec.model_base import SpecModel
from lmrun.spec.partial import entries

if TYPE_CHECKING:
    from lmrun.spec.sites import SiteSpec

    CloudName = str
else:
    CloudName = Literal[CLOUD_NAMES]  # the registered clouds; pydantic lists them when refusing another

_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_MODEL = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_MODEL_NAME = 96
"""Characters of a Hugging Face repo name (``validate_repo_id`` of huggingface_hub's utils/_validators.py:
"max length is 96"); the account part is held to the same bound."""
_REVISION = re.compile(r"^[0-9a-f]{40}$")

# Flags the library sets itself; accepting them in vllmArgs would silently fight the rendered unit.
RESERVED_VLLM_FLAGS = frozenset({*MANAGED_FLAGS, "--model"})


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: 1-32 characters of a-z, 0-9 and '-', starting with a letter "
            "(it becomes part of resource names and Kubernetes labels)"
        )
    return value


def model_id(value: str) -> str:
    """``value`` if it is a Hugging Face model id; ValueError (for the spec and ``lmrun models pin``) otherwise."""
    if not _MODEL.match(value):
        raise ValueError(f"{echo(value)} is not a Hugging Face model id like 'Qwen/Qwen2.5-7B-Instruct'")
    account, name = value.split("/")
    if max(len(account), len(name)) > MAX_MODEL_NAME:
        raise ValueError(
            f"{echo(value)} is not a Hugging Face model id: the Hub allows at most {MAX_MODEL_NAME} characters "
            "on each side of the '/'"
        )
    if "--" in value or ".." in value or name.endswith(".git") or name[0] in "-." or name[-1] in "-.":
        raise ValueError(
            f"{echo(value)} is not a Hugging Face model id: the Hub refuses '--', '..', a name starting or "
            "ending with '-' or '.', and a '.git' suffix"
        )
    return value


def _revision(value: str) -> str:
    if not _REVISION.match(value):
        raise ValueError(
            f"{value!r} is not a pinned revision: give the model repo's full 40-character commit hash "
            "(branches and tags move; `lmrun models pin` looks it up)"
        )
    return value


def _vllm_args(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        flag = value.split("=", 1)[0]
        if flag in RESERVED_VLLM_FLAGS:
            raise ValueError(f"{flag} is set by lmrun from the node's fields; remove it from vllmArgs")
    return values


Name = Annotated[str, AfterValidator(_name)]
ModelId = Annotated[str, AfterValidator(model_id)]
Revision = Annotated[str, AfterValidator(_revision)]
Port = Annotated[int, Field(ge=1, le=65535)]
ModelAccess = Literal["public", "gated", "private"]


def _node_port(value: int) -> int:
    if not NODE_PORT_MIN <= value <= NODE_PORT_MAX:
        raise ValueError(f"node port {value} is outside the Kubernetes NodePort range {NODE_PORT_MIN}-{NODE_PORT_MAX}")
    if value in SKYSERVE_LB_PORTS:
        lb = f"{SKYSERVE_LB_PORTS.start}-{SKYSERVE_LB_PORTS.stop - 1}"
        raise ValueError(
            f"node port {value} is in {lb}, reserved for SkyServe's load balancers: the serve controller joins K3s, "
            f"whose kube-proxy would take the load balancer's traffic on that port; pick another node port"
        )
    return value


NodePort = Annotated[int, AfterValidator(_node_port)]


def _http_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{echo(value)} is not an HTTP path: it starts with '/'")
    return value


HttpPath = Annotated[str, AfterValidator(_http_path)]


class VllmWorkload(SpecModel):
    """What a GPU VM runs, shared by a node (``lmrun:nodes``) and the replicas of a group (``lmrun:groups``): its
    GPUs and capacity market, the model vLLM serves, and the ports it is reached on."""

    name: Name = Field(description="Unique name; resources are named after it.")
    gpu: str = Field(description="GPU model: A10G, L4, L40S, T4, A100, H100, ...")
    gpu_count: int = Field(default=1, ge=1, le=16, description="GPUs on the node.")
    model: ModelId = Field(
        description="Hugging Face model id served by vLLM, `account/name` (at most 96 characters each)."
    )
    model_revision: Revision = Field(
        description="Pinned model commit (40 hex characters). Written by `lmrun models pin`, which resolves a "
        "branch or tag name written here (or `main` when the key is absent) to its commit."
    )
    model_access: ModelAccess = Field(
        default="public",
        description="Who may download the model from the Hugging Face Hub: `public`, `gated` (the token's "
        "account must have accepted the model's terms) or `private`; `gated` and `private` need "
        "lmrun:huggingFaceToken. Written by `lmrun models pin`.",
    )
    use_spot: bool = Field(default=True, description="Spot capacity (replaced automatically when reclaimed).")
    disk_size: int = Field(default=256, ge=64, le=16384, description="Root volume in GB (encrypted gp3).")
    vllm_args: Annotated[tuple[str, ...], AfterValidator(_vllm_args)] = Field(
        default=(), description="Extra `vllm serve` arguments."
    )
    app_port: Port = Field(default=8000, description="Port vLLM listens on, on the VM.")
    node_port: NodePort = Field(description="Mesh-wide node port (30000-32767) of the node's service.")


class NodeSpec(VllmWorkload):
    """One GPU VM running vLLM as a service and joining K3s as an agent."""

    name: Name = Field(description="Unique node name; resources are named after it.")
    cloud: CloudName = Field(
        default=HUB_CLOUD, description=f"Cloud of the node: {' or '.join(f'`{c}`' for c in CLOUD_NAMES)}."
    )
    region: str | None = Field(
        default=None, description="AWS region of the node (cloud `aws`): lmrun:mainRegion or one of lmrun:regions."
    )
    site: Name | None = Field(default=None, description="GCP site of the node (cloud `gcp`), from lmrun:sites.")
    service: Name | None = Field(
        default=None, description="Service (endpoint) name; nodes sharing it are replicas. Default: node name."
    )

    STAND_INS: ClassVar[Mapping[str, Any]] = {
        "name": "stand-in",
        "gpu": "stand-in",
        "model": "stand-in/model",
        "model_revision": "0" * 40,
        "node_port": NODE_PORT_MIN,
    }

    @property
    def service_name(self) -> str:
        return self.service or self.name


class ServiceSpec(SpecModel):
    """A process on a mesh VM (not vLLM) published on a node port."""

    name: Name = Field(description="Unique service name.")
    node: Name = Field(description="The VM running the process: a name from lmrun:nodes, or `k3s-server`.")
    app_port: Port = Field(description="Port the process listens on, on the VM.")
    node_port: NodePort = Field(description="Mesh-wide node port (30000-32767).")
    health: Literal["tcp", "http"] = Field(default="tcp", description="Readiness check: TCP connect or HTTP GET.")
    health_path: HttpPath = Field(default="/", description="Path of the HTTP readiness check (starts with `/`).")

    STAND_INS: ClassVar[Mapping[str, Any]] = {"name": "stand-in", "node": "stand-in", "app_port": 1, "node_port": 30000}


RESERVED_NODE_NAMES = frozenset({PHOENIX_NODE, SERVER_NODE})
"""``lmrun.io/node`` labels the mesh's own VMs carry (the Phoenix node, the K3s server)."""

# The fields a node's cloud rules read (its location and GPUs).
_PLACEMENT_FIELDS = ("cloud", "region", "site", "gpu", "gpu_count", "use_spot")


def node_issues(
    raw: Mapping[str, Any],
    reserved_ports: Mapping[int, str],
    sites: Mapping[str, SiteSpec],
    unsettled_sites: Collection[str] = (),
) -> list[ConfigIssue]:
    """Rules across nodes and services: unique names, locations in the mesh, GPUs offered there, one node
    port per endpoint and unique across the mesh (``reserved_ports`` are taken by the mesh itself).
    ``sites`` maps site names to their spec; a node in one of ``unsettled_sites`` (whose kind is broken) is
    not placed. Entries with broken fields take part with their sound ones."""
    issues: list[ConfigIssue] = []
    main = raw.get("mainRegion")
    spokes = raw.get("regions")
    mesh_regions = {r for r in [main, *(spokes if isinstance(spokes, list) else [])] if isinstance(r, str)}
    context = NodeContext(frozenset(mesh_regions), sites, recorded_offerings(raw))
    nodes = entries(raw.get("nodes"), NodeSpec)
    services = entries(raw.get("services"), ServiceSpec)

    node_names: dict[str, int] = {}
    by_name: dict[str, tuple[NodeSpec, bool]] = {}
    """Node name -> (its spec, whether its app port is the one the user gave)."""
    for entry in nodes:
        node, index = entry.spec, entry.index
        if not entry.sound("name"):
            continue
        if node.name in RESERVED_NODE_NAMES:
            issues.append(
                ConfigIssue(
                    config_path(("nodes", index, "name")),
                    f"{node.name!r} is reserved for the mesh's own VMs ({', '.join(sorted(RESERVED_NODE_NAMES))})",
                )
            )
            continue
        if node.name in node_names:
            issues.append(
                ConfigIssue(
                    config_path(("nodes", index, "name")),
                    f"{node.name!r} is already lmrun:nodes[{node_names[node.name]}]",
                )
            )
            continue
        node_names[node.name] = index
        by_name[node.name] = (node, entry.sound("app_port"))
        if entry.sound(*_PLACEMENT_FIELDS) and node.site not in unsettled_sites:
            issues.extend(cloud_rules(node.cloud).node_issues(node, ("nodes", index), context))

    reserved_names = set(reserved_ports.values())
    # Endpoint name -> (node port, app port, where it was first declared).
    endpoints: dict[str, tuple[int, int, str]] = {}
    port_owner: dict[int, str] = {port: f"{owner} (reserved by the mesh)" for port, owner in reserved_ports.items()}

    def claim(name: str, node_port: int, app_port: int, where: tuple[str | int, ...]) -> None:
        here = config_path(where)
        if name in endpoints:
            first_port, first_app, first_where = endpoints[name]
            if node_port != first_port:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "nodePort")),
                        f"replicas of service {name!r} must share one node port; {first_where} uses {first_port}",
                    )
                )
            if app_port != first_app:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "appPort")),
                        f"replicas of service {name!r} must share one app port; {first_where} uses {first_app}",
                    )
                )
            return
        endpoints[name] = (node_port, app_port, here)
        if node_port in port_owner:
            issues.append(
                ConfigIssue(
                    config_path((*where, "nodePort")),
                    f"node port {node_port} is already taken by {port_owner[node_port]}",
                )
            )
        else:
            port_owner[node_port] = f"service {name!r} ({here})"

    for entry in nodes:
        node, index = entry.spec, entry.index
        if not entry.sound("name") or node_names.get(node.name) != index:
            continue  # duplicates and reserved names are reported once, by name
        if not entry.sound("service", "node_port", "app_port"):
            continue
        if node.service_name in reserved_names:
            issues.append(
                ConfigIssue(
                    config_path(("nodes", index, "service" if node.service else "name")),
                    f"service name {node.service_name!r} is reserved by the mesh (lmrun:phoenix)",
                )
            )
            continue
        claim(node.service_name, node.node_port, node.app_port, ("nodes", index))

    service_names: set[str] = set()
    for listed in services:
        service, where = listed.spec, ("services", listed.index)
        if not listed.sound("name"):
            continue
        if service.name in endpoints or service.name in service_names or service.name in reserved_names:
            issues.append(ConfigIssue(config_path((*where, "name")), f"service name {service.name!r} is already used"))
            continue
        service_names.add(service.name)
        if not listed.sound("node"):
            pass
        elif service.node == SERVER_NODE:
            pass  # a process on the K3s server itself
        elif service.node not in by_name:
            issues.append(
                ConfigIssue(
                    config_path((*where, "node")),
                    f"no node named {service.node!r} in lmrun:nodes (or {SERVER_NODE!r} for the K3s server)",
                )
            )
        elif listed.sound("app_port"):
            node, node_app_port_given = by_name[service.node]
            if node_app_port_given and node.app_port == service.app_port:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "appPort")),
                        f"port {service.app_port} is vLLM's app port on node {service.node!r}",
                    )
                )
        if listed.sound("node_port", "app_port"):
            claim(service.name, service.node_port, service.app_port, where)
    return issues
