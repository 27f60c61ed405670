"""Spec of the GPU pool (``lmrun:gpuPool``): declared GPU VMs whose GPUs are offered to Kubernetes (to SkyPilot's
pods) instead of a vLLM on the VM.

Each entry is placed like a replica group (:class:`~lmrun.spec.groups.Placement`: the same policies, locations,
quotas and replica names ``<pool>-<location code>-<n>``, AWS regions and sites of a site cloud alike) but
carries no model, service or node port: its nodes join K3s with the NVIDIA runtime as containerd's default, the GPU
label SkyPilot reads and a taint that keeps every pod but GPU work off them (:mod:`lmrun.render.gpu_pool`).
On-demand by default: the pool is the steady base that SkyServe's on-demand replicas land on, spot bursts elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from lmrun.clouds import HUB_CLOUD
from lmrun.domain.ports import NODE_PORT_MIN
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.groups import (
    Location,
    Placement,
    location_context,
    placement_issues,
    valid_groups,
)
from lmrun.spec.nodes import RESERVED_NODE_NAMES, Name, NodeSpec, ServiceSpec
from lmrun.spec.partial import whole_entries

if TYPE_CHECKING:
    from lmrun.spec.sites import SiteSpec

POOL_KEY = "gpuPool"


class PoolSpec(Placement):
    """N GPU VMs of one kind whose GPUs Kubernetes schedules, placed over the mesh's locations by a policy."""

    name: Name = Field(
        description="Pool name: the `lmrun.io/gpu-pool` label of its nodes and the prefix of their names "
        "(`<pool>-<location code>-<n>`, e.g. `l4-pool-use1-0`)."
    )
    gpu: str = Field(description="GPU model of every node: A10G, L4, L40S, T4, A100, H100, ...")
    gpu_count: int = Field(default=1, ge=1, le=16, description="GPUs per node.")
    use_spot: bool = Field(
        default=False, description="Spot capacity; default false: the pool is the on-demand base of elastic serving."
    )
    disk_size: int = Field(default=256, ge=64, le=16384, description="Root volume in GB (encrypted gp3).")

    def node(self, location: Location, name: str) -> NodeSpec:
        """A pool node as the clouds' rules and placement see a node: its location and machine. It serves no model
        (no vLLM runs on it), so the workload fields hold no value (built without validation for that reason);
        the plan keeps only the machine (:class:`lmrun.plan.cluster.NodePlan` with ``pool`` set)."""
        hub = location.cloud == HUB_CLOUD
        return NodeSpec.model_construct(
            name=name,
            cloud=location.cloud,
            gpu=self.gpu,
            gpu_count=self.gpu_count,
            use_spot=self.use_spot,
            disk_size=self.disk_size,
            model="",
            model_revision="",
            app_port=0,
            node_port=NODE_PORT_MIN,
            region=location.name if hub else None,
            site=None if hub else location.name,
        )


def valid_pools(raw: Any) -> list[tuple[int, PoolSpec]]:
    """Entries of ``lmrun:gpuPool`` that validate on their own, with their index (the others are reported by the
    whole-spec validation)."""
    return whole_entries(raw, PoolSpec)


def _taken_names(raw: Mapping[str, Any], reserved_ports: Mapping[int, str]) -> dict[str, str]:
    """Name -> what holds it: nodes, services, groups and the mesh's own names (a pool's node names start with the
    pool's name, like a group's replicas: the two must differ)."""
    taken = {name: "a name of the mesh's own VMs" for name in RESERVED_NODE_NAMES}
    taken |= {name: "a service of the mesh" for name in reserved_ports.values()}
    for index, node in whole_entries(raw.get("nodes"), NodeSpec):
        for name in (node.name, node.service_name):
            taken.setdefault(name, f"lmrun:nodes[{index}]")
    for index, service in whole_entries(raw.get("services"), ServiceSpec):
        taken.setdefault(service.name, f"lmrun:services[{index}]")
    for index, group in valid_groups(raw.get("groups")):
        taken.setdefault(group.name, f"lmrun:groups[{index}]")
    return taken


def pool_issues(
    raw: Mapping[str, Any], reserved_ports: Mapping[int, str], sites: Mapping[str, SiteSpec]
) -> list[ConfigIssue]:
    """Rules of ``lmrun:gpuPool`` across the config: SkyPilot enabled (the pool exists for it), unique names, and
    the placement rules of replica groups (policy fields, locations that run the GPU, names that fit)."""
    pools = valid_pools(raw.get(POOL_KEY))
    if not pools:
        return []
    issues: list[ConfigIssue] = []
    skypilot = raw.get("skypilot")
    enabled = skypilot.get("enabled") if isinstance(skypilot, Mapping) else None
    if enabled not in (True, "true", "True"):
        issues.append(
            ConfigIssue(
                config_path((POOL_KEY,)),
                "offers its GPUs to SkyPilot through Kubernetes: set lmrun:skypilot.enabled to true (or drop the pool)",
            )
        )
    locations, context = location_context(raw, sites)
    taken = _taken_names(raw, reserved_ports)
    seen: dict[str, int] = {}
    for index, pool in pools:
        where = (POOL_KEY, index)
        if pool.name in seen:
            issues.append(
                ConfigIssue(
                    config_path((*where, "name")), f"{pool.name!r} is already lmrun:{POOL_KEY}[{seen[pool.name]}]"
                )
            )
            continue
        seen[pool.name] = index
        if pool.name in taken:
            issues.append(
                ConfigIssue(
                    config_path((*where, "name")),
                    f"{pool.name!r} is already {taken[pool.name]}; a pool's nodes are named after it",
                )
            )
        issues.extend(placement_issues(pool, where, locations, context))
    return issues
