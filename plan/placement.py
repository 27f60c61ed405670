"""What the plan asks of a cloud: the machine a node gets there and its price, and the quota it draws on.

Each cloud's ``<pkg>.placement`` module exposes ``PLACER`` implementing :class:`CloudPlacement`; the plan
reaches it by the node's cloud name through :func:`lmrun.clouds.cloud_module`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from lmrun.clouds import cloud_module

if TYPE_CHECKING:
    from lmrun.plan.cluster import NodePlan
    from lmrun.spec.model import MeshSpec
    from lmrun.spec.nodes import NodeSpec


@dataclass(frozen=True)
class QuotaUse:
    """What one node takes from a quota the stack records (``lmrun:quotas``), and that quota's recorded value
    where the node runs."""

    quota: str | None
    """The quota's key (a Service Quotas code on AWS); None when the node draws on no quota the stack records."""
    about: str
    """The quota in words (``Spot G and VT vCPUs (L-3819A6DF)``), or why none applies."""
    amount: int = 0
    """How much of it one node needs (vCPUs on AWS)."""
    amount_reason: str = ""
    """Why that much (``g6.2xlarge, the largest type it may launch``)."""
    limit: int | None = None
    """The recorded value in the node's location; None when none is recorded there."""


class CloudPlacement(Protocol):
    def place_node(self, node: NodeSpec, spec: MeshSpec, *, image: str) -> NodePlan:
        """The node's plan: the cheapest machine of this cloud carrying its GPUs where it lives, booting
        ``image`` (the node's pinned image, decided by :mod:`lmrun.plan.images`)."""
        ...

    def quota_use(self, node: NodePlan, spec: MeshSpec) -> QuotaUse:
        """What the placed ``node`` takes from the quotas the stack records for its location."""
        ...


def cloud_placement(cloud: str) -> CloudPlacement:
    return cast(CloudPlacement, cloud_module(cloud, "placement").PLACER)


def workload(node: NodeSpec, image: str) -> dict[str, Any]:
    """What a node runs, the same on every cloud (the cloud adds where and on which machine)."""
    return {
        "image": image,
        "name": node.name,
        "gpu_count": node.gpu_count,
        "spot": node.use_spot,
        "disk_size_gb": node.disk_size,
        "model": node.model,
        "model_revision": node.model_revision,
        "vllm_args": node.vllm_args,
        "app_port": node.app_port,
        "service": node.service_name,
    }
