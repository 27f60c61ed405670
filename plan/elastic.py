"""Elastic services -> their SkyServe plan: the spot regions in the placement policy's order, what a replica costs
in each, and the service's cost at its baseline and at ``maxReplicas``.

Pure decisions from the spec (the recorded offerings included), so a preview says the same every day. A replica in a
spot region is priced as a spot node of ``lmrun:nodes`` would be there: the cheapest catalog type carrying its GPUs
that the region offers and sells as spot (:mod:`lmrun.plan.placement`, the same placer); its on-demand price is
what an on-demand node there would cost (SkyServe's on-demand fallback launches into the same ``any_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lmrun.aws import prices
from lmrun.clouds import HUB_CLOUD
from lmrun.plan.placement import cloud_placement
from lmrun.spec.cloud_rules import NodeContext
from lmrun.spec.elastic import ElasticServiceSpec, spot_regions
from lmrun.spec.groups import Location, mesh_locations, replica_spec
from lmrun.spec.model import MeshSpec

CONTROLLER_INSTANCE_TYPE = "m6i.large"
"""The serve controller VM SkyPilot launches for ``serve.controller.resources: {cpus: 2+}``: its default controller
memory (``sky/serve/constants.py`` ``CONTROLLER_RESOURCES``, ``memory: 8+``) is kept, and the cheapest type of its
default families (``sky/catalog/aws_catalog.py`` ``_DEFAULT_INSTANCE_FAMILY``: m6i, m7i, r6i, r7i, c6i...) with 2+
vCPUs and 8+ GiB is m6i.large."""
CONTROLLER_CPUS = "2+"
CONTROLLER_DISK_GB = 256
"""SkyPilot's default disk (``sky/resources.py`` ``DEFAULT_DISK_SIZE_GB``), gp3."""


@dataclass(frozen=True)
class SpotRegionPlan:
    """What one spot replica costs in one region."""

    region: str
    instance_type: str
    spot_usd_hour: float
    on_demand_instance_type: str
    on_demand_usd_hour: float
    offering_source: str


@dataclass(frozen=True)
class ElasticCost:
    """An elastic service's USD/hour (list-price estimates, :mod:`lmrun.aws.instances.catalog`)."""

    baseline_usd_hour: float
    """At minReplicas: the (minReplicas - baseOnDemand) spot replicas at the first spot region's spot price (the
    policy's first choice); the base runs on the K3s pool, whose nodes are priced as declared nodes ($0 extra)."""
    max_spot_usd_hour: float
    """At maxReplicas, spot part: (maxReplicas - baseOnDemand) at the highest spot price of its regions."""
    max_on_demand_usd_hour: float
    """At maxReplicas, on-demand part: with dynamicOndemandFallback, the same count at the highest on-demand price
    of its regions (every spot replica preempted and replaced: the worst case); else 0."""

    @property
    def max_usd_hour(self) -> float:
        return self.max_spot_usd_hour + self.max_on_demand_usd_hour


@dataclass(frozen=True)
class ElasticServicePlan:
    """One elastic service as SkyServe runs it."""

    name: str
    node_port: int
    app_port: int
    model: str
    revision: str
    gpu: str
    """The catalog's spelling (``L4``)."""
    gpu_count: int
    disk_size_gb: int
    vllm_args: tuple[str, ...]
    min_replicas: int
    max_replicas: int
    """``maxReplicas``, or ``minReplicas`` when the service does not autoscale."""
    target_qps_per_replica: float | None
    base_on_demand: int
    dynamic_ondemand_fallback: bool
    readiness_initial_delay_seconds: int
    policy: str
    regions: tuple[SpotRegionPlan, ...]
    """The spot regions in policy order (``priority``: as listed; ``spread``: name order)."""
    asked: tuple[str, ...] = ()
    """The instance types ``lmrun:offerings`` asked about (the record the policy pack re-checks offerings with)."""
    recorded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Spot region -> the asked types ``lmrun:offerings`` records there (regions it records)."""

    @property
    def spot_regions(self) -> tuple[str, ...]:
        return tuple(r.region for r in self.regions)

    @property
    def cost(self) -> ElasticCost:
        spot = self.max_replicas - self.base_on_demand
        return ElasticCost(
            baseline_usd_hour=(self.min_replicas - self.base_on_demand) * self.regions[0].spot_usd_hour,
            max_spot_usd_hour=spot * max(r.spot_usd_hour for r in self.regions),
            max_on_demand_usd_hour=(
                spot * max(r.on_demand_usd_hour for r in self.regions) if self.dynamic_ondemand_fallback else 0.0
            ),
        )

    def policy_settings(self) -> dict[str, Any]:
        """What the policy pack's ``elastic-spot-regions`` rule re-checks (:mod:`lmrun.policy.rules`)."""
        return {
            "name": self.name,
            "gpu": self.gpu,
            "gpuCount": self.gpu_count,
            "spotRegions": list(self.spot_regions),
            "offerings": {"instanceTypes": list(self.asked), "regions": {r: list(t) for r, t in self.recorded.items()}},
        }

    def export(self) -> dict[str, Any]:
        """Plain values (the ``elasticServices`` stack output, ``lmrun plan --json``, the cost estimate)."""
        cost = self.cost
        return {
            "node_port": self.node_port,
            "model": self.model,
            "gpu": f"{self.gpu}:{self.gpu_count}",
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_qps_per_replica": self.target_qps_per_replica,
            "base_on_demand": self.base_on_demand,
            "dynamic_ondemand_fallback": self.dynamic_ondemand_fallback,
            "policy": self.policy,
            "spot_regions": [
                {
                    "region": r.region,
                    "instance_type": r.instance_type,
                    "spot_usd_hour": r.spot_usd_hour,
                    "on_demand_instance_type": r.on_demand_instance_type,
                    "on_demand_usd_hour": r.on_demand_usd_hour,
                    "offerings": r.offering_source,
                }
                for r in self.regions
            ],
            "baseline_usd_hour": round(cost.baseline_usd_hour, 4),
            "max_spot_usd_hour": round(cost.max_spot_usd_hour, 4),
            "max_on_demand_usd_hour": round(cost.max_on_demand_usd_hour, 4),
            "max_usd_hour": round(cost.max_usd_hour, 4),
        }


def controller_usd_hour() -> float:
    """The serve controller VM: on demand in the main region, its instance and its gp3 disk."""
    disk = (prices.ebs_usd_month(prices.DEFAULT_VOLUME_TYPE, CONTROLLER_DISK_GB) or 0.0) / prices.HOURS_PER_MONTH
    return (prices.instance_usd_hour(CONTROLLER_INSTANCE_TYPE) or 0.0) + disk


def _region_plan(svc: ElasticServiceSpec, location: Location, spec: MeshSpec) -> tuple[SpotRegionPlan, str]:
    """A replica in ``location`` placed as a spot node and as an on-demand one; the GPU's catalog spelling."""
    placer = cloud_placement(location.cloud)
    replica = replica_spec(svc, location, svc.name)
    spot = placer.place_node(replica, spec, image="")
    on_demand = placer.place_node(replica.model_copy(update={"use_spot": False}), spec, image="")
    region = SpotRegionPlan(
        region=location.name,
        instance_type=spot.instance_type,
        spot_usd_hour=spot.hourly_usd,
        on_demand_instance_type=on_demand.instance_type,
        on_demand_usd_hour=on_demand.hourly_usd,
        offering_source=spot.offering_source,
    )
    return region, spot.gpu


def plan_elastic(spec: MeshSpec) -> tuple[ElasticServicePlan, ...]:
    """Every elastic service of a validated spec (the spec refused regions that cannot run it), in name order."""
    sites = {site.name: site for site in spec.sites}
    locations = mesh_locations(spec.main_region, spec.regions, sites, spec.labels)
    mesh_regions = frozenset(n for n, loc in locations.items() if loc.cloud == HUB_CLOUD)
    context = NodeContext(mesh_regions, sites, spec.offerings.availability())
    plans = []
    for svc in sorted(spec.elastic_services, key=lambda s: s.name):
        regions, _ = spot_regions(svc, locations, context, ())
        if not regions:
            continue  # the spec refused the service (what is left of a broken config is planned without it)
        measured = [_region_plan(svc, locations[region], spec) for region in regions]
        placed = tuple(region for region, _ in measured)
        plans.append(
            ElasticServicePlan(
                name=svc.name,
                node_port=svc.node_port,
                app_port=svc.app_port,
                model=svc.model,
                revision=svc.model_revision,
                gpu=measured[0][1],
                gpu_count=svc.gpu_count,
                disk_size_gb=svc.disk_size,
                vllm_args=svc.vllm_args,
                min_replicas=svc.min_replicas,
                max_replicas=svc.peak_replicas,
                target_qps_per_replica=svc.target_qps_per_replica,
                base_on_demand=svc.base_on_demand,
                dynamic_ondemand_fallback=svc.dynamic_ondemand_fallback,
                readiness_initial_delay_seconds=svc.readiness_initial_delay_seconds,
                policy=svc.policy,
                regions=placed,
                asked=spec.offerings.instance_types,
                recorded={r: spec.offerings.regions[r] for r in regions if r in spec.offerings.regions},
            )
        )
    return tuple(plans)
