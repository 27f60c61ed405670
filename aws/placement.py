"""Placement on AWS: a node gets the cheapest catalog instance type with its GPUs in its region."""

from __future__ import annotations

from lmrun.aws import NAME
from lmrun.aws.instances import catalog
from lmrun.plan.cluster import NodePlan
from lmrun.plan.placement import CloudPlacement, workload
from lmrun.spec.model import MeshSpec
from lmrun.spec.nodes import NodeSpec


class AwsPlacement:
    def place_node(self, node: NodeSpec, spec: MeshSpec, *, image: str) -> NodePlan:
        if node.region is None:  # the spec refuses this; keeps the type checker honest
            raise ValueError(f"AWS node {node.name!r} has no region")
        chosen = catalog.choose_instance_type(node.gpu, node.gpu_count, node.region, spot=node.use_spot)
        # A spot node may also run on a few types with the same GPUs (its group rebalances to their pools);
        # an on-demand node keeps its one type.
        alternatives = catalog.alternative_instance_types(chosen, node.region) if node.use_spot else ()
        return NodePlan(
            **workload(node, image),
            region=node.region,
            gpu=chosen.gpu,
            instance_type=chosen.name,
            alternative_instance_types=tuple(t.name for t in alternatives),
            vcpus=chosen.vcpus,
            hourly_usd=chosen.hourly_usd(spot=node.use_spot),
            cloud=NAME,
        )


PLACER: CloudPlacement = AwsPlacement()
