"""Placement on AWS: a node gets the cheapest catalog instance type with its GPUs that its region offers (per the
offerings the stack records, else the catalog), and draws on the G and VT vCPU quotas the stack records."""

from __future__ import annotations

from lmrun.aws import NAME
from lmrun.aws.instances.catalog import instance_type
from lmrun.aws.instances.gpu_quotas import QUOTA_NAMES, quota_draw
from lmrun.plan.cluster import NodePlan
from lmrun.plan.placement import CloudPlacement, QuotaUse, workload
from lmrun.spec.model import MeshSpec
from lmrun.spec.nodes import NodeSpec


class AwsPlacement:
    def place_node(self, node: NodeSpec, spec: MeshSpec, *, image: str) -> NodePlan:
        if node.region is None:  # the spec refuses this; keeps the type checker honest
            raise ValueError(f"AWS node {node.name!r} has no region")
        offerings = spec.offerings.availability()
        chosen = offerings.choose(node.gpu, node.gpu_count, node.region, spot=node.use_spot)
        # A spot node may also run on a few types with the same GPUs (its group rebalances to their pools);
        # an on-demand node keeps its one type.
        alternatives = offerings.alternatives(chosen, node.region) if node.use_spot else ()
        return NodePlan(
            **workload(node, image),
            region=node.region,
            gpu=chosen.gpu,
            instance_type=chosen.name,
            alternative_instance_types=tuple(t.name for t in alternatives),
            vcpus=chosen.vcpus,
            hourly_usd=chosen.hourly_usd(spot=node.use_spot),
            cloud=NAME,
            offering_source=offerings.source(chosen.name, node.region),
        )

    def quota_use(self, node: NodePlan, spec: MeshSpec) -> QuotaUse:
        draw = quota_draw(node.instance_type, node.alternative_instance_types, spot=node.spot)
        if draw is None:
            return QuotaUse(None, f"{node.instance_type} counts against P-instance quotas, which lmrun does not record")
        limit = spec.quotas.get(node.region, {}).get(draw.code)
        largest = max((node.instance_type, *node.alternative_instance_types), key=lambda t: instance_type(t).vcpus)
        why = f"{largest}, the largest type it may launch" if node.alternative_instance_types else largest
        return QuotaUse(draw.code, f"{QUOTA_NAMES[draw.code]} ({draw.code})", draw.vcpus, why, limit)


PLACER: CloudPlacement = AwsPlacement()
