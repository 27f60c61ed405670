"""Placement on GCP: a node gets the cheapest GCP machine with its GPUs, in its site's region and zone."""

from __future__ import annotations

from lmrun.gcp import NAME, catalog
from lmrun.plan.cluster import NodePlan
from lmrun.plan.placement import CloudPlacement, QuotaUse, workload
from lmrun.spec.model import MeshSpec
from lmrun.spec.nodes import NodeSpec


class GcpPlacement:
    def place_node(self, node: NodeSpec, spec: MeshSpec, *, image: str) -> NodePlan:
        site = next(s for s in spec.sites if s.name == node.site)
        machine = catalog.machines_for(node.gpu, node.gpu_count)[0]
        return NodePlan(
            **workload(node, image),
            region=site.region or "",
            gpu=machine.gpu,
            instance_type=machine.machine_type,
            vcpus=machine.vcpus,
            hourly_usd=machine.hourly_usd(spot=node.use_spot),
            cloud=NAME,
            site=site.name,
            zone=site.gateway_zone,
            accelerator=machine.accelerator_type if machine.attaches_accelerator else None,
        )

    def quota_use(self, node: NodePlan, spec: MeshSpec) -> QuotaUse:
        return QuotaUse(None, "GCP quotas, which lmrun does not record")


PLACER: CloudPlacement = GcpPlacement()
