"""Spec of elastic services (``lmrun:elasticServices``): one model behind one node port, served by SkyServe
(SkyPilot 0.14.1) with replicas that scale on the request rate between ``minReplicas`` and ``maxReplicas``.

Where replicas run: ``baseOnDemand`` of them form an on-demand base on the mesh's K3s GPU pool (SkyServe counts
Kubernetes replicas as on-demand: its ``base_ondemand_fallback_replicas``), the rest are spot VMs in the AWS
regions a placement ``policy`` chooses (``priority``: the listed order; ``spread``: name order), which SkyServe's
SpotHedge placer (``spot_placer: dynamic_fallback``) spreads over and moves away from on preemption. Sites are
refused: SkyPilot launches only into the mesh's AWS VPCs.

The replica rules mirror ``sky/serve/service_spec.py`` ``SkyServiceSpec.__init__`` and its schema
(``sky/utils/schemas.py`` ``get_service_schema``), so a stack that plans is a service ``sky serve up`` accepts:

- ``max_replicas >= min_replicas``;
- ``target_qps_per_replica`` needs ``max_replicas``; without it ``max_replicas`` must equal ``min_replicas``
  (there is nothing to autoscale on), so scale to zero (``minReplicas: 0``) needs a QPS target;
- ``base_ondemand_fallback_replicas >= 0`` (and here ``<= minReplicas``: the base is part of the minimum).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from lmrun.clouds import HUB_CLOUD
from lmrun.domain.ports import NODE_PORT_MIN, SKYSERVE_LB_PORTS
from lmrun.spec.capacity import recorded_offerings
from lmrun.spec.cloud_rules import ConfigLocation, NodeContext
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.gpu_pool import PoolSpec, valid_pools
from lmrun.spec.groups import (
    Labels,
    Location,
    mesh_locations,
    offer_issues,
    policy_candidates,
    taken_endpoints,
    valid_groups,
    valid_labels,
)
from lmrun.spec.nodes import Name, VllmWorkload
from lmrun.spec.partial import Entry, entries
from lmrun.spec.sites import SiteSpec

ElasticPolicy = Literal["priority", "spread"]
MAX_ELASTIC_REPLICAS = 100
"""Replicas of one elastic service (a bound for the cost view; SkyServe sets none)."""
DEFAULT_READINESS_DELAY_SECONDS = 1200
"""How long SkyServe waits before the first readiness probe counts: a 7B model's download and load on a fresh
spot VM (vLLM install, ~15 GB of weights, CUDA graphs) takes 10-20 minutes; SkyServe's default (1200 s,
``sky/serve/constants.py`` ``DEFAULT_INITIAL_DELAY_SECONDS``) is kept."""
MAX_ELASTIC_SERVICES = len(SKYSERVE_LB_PORTS)
"""One SkyServe controller serves every service of the stack, each behind a load balancer on one port of
30001-30020 (``sky/serve/constants.py`` ``LOAD_BALANCER_PORT_RANGE``): at most 20 services."""


def _always_spot(value: bool) -> bool:
    if not value:
        raise ValueError(
            "is always true for an elastic service: its scaled replicas are spot VMs; baseOnDemand runs replicas on "
            "demand (on the K3s GPU pool), dynamicOndemandFallback replaces preempted ones on demand"
        )
    return value


class ElasticServiceSpec(VllmWorkload):
    """A vLLM service SkyServe scales: an on-demand base on the K3s GPU pool, spot replicas in AWS regions."""

    name: Name = Field(description="Service name (the SkyServe service and the mesh service), unique in the mesh.")
    use_spot: Annotated[bool, AfterValidator(_always_spot)] = Field(
        default=True,
        description="Always true: the replicas beyond the on-demand base (baseOnDemand, on the K3s GPU pool) are "
        "spot VMs (SkyServe's spot placer and on-demand fallback work on spot resources only).",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_ELASTIC_REPLICAS,
        description="Replicas SkyServe keeps at least; 0 (scale to zero) needs targetQpsPerReplica.",
    )
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ELASTIC_REPLICAS,
        description="Replicas SkyServe scales up to (required with targetQpsPerReplica). Default: minReplicas.",
    )
    target_qps_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second one replica should take; SkyServe adds replicas above it and removes them "
        "below. Without it the service has a fixed minReplicas.",
    )
    base_on_demand: int = Field(
        default=0,
        ge=0,
        le=MAX_ELASTIC_REPLICAS,
        description="Replicas always on demand: they run on the mesh's K3s GPU pool (SkyServe's "
        "base_ondemand_fallback_replicas; Kubernetes counts as on-demand). At most minReplicas, and no more than "
        "lmrun:gpuPool holds (nodes of this GPU with at least gpuCount GPUs each).",
    )
    dynamic_ondemand_fallback: bool = Field(
        default=False,
        description="While spot replicas are preempted or pending, SkyServe runs on-demand ones in their place "
        "(the pool first, then on-demand VMs in the spot regions): available, and up to the on-demand price.",
    )
    readiness_initial_delay_seconds: int = Field(
        default=DEFAULT_READINESS_DELAY_SECONDS,
        ge=0,
        le=7200,
        description="Seconds a new replica has to load its model before failed readiness probes (GET /v1/models) "
        "count.",
    )
    policy: ElasticPolicy = Field(
        default="priority",
        description="Order of the spot regions (SkyServe's any_of): `priority` in `regions` order, `spread` in name "
        "order.",
    )
    regions: tuple[Name, ...] = Field(
        default=(),
        description="AWS regions of the mesh (lmrun:mainRegion, lmrun:regions) offering the GPU as spot, where spot "
        "replicas run. Sites are refused: SkyPilot launches only into the mesh's AWS VPCs.",
    )
    select: Labels = Field(
        default_factory=dict,
        description="Instead of `regions`: every AWS region of the mesh whose lmrun:labels include all of these and "
        "that offers the GPU as spot, in name order.",
    )

    STAND_INS: ClassVar[Mapping[str, Any]] = {
        "name": "stand-in",
        "gpu": "stand-in",
        "model": "stand-in/model",
        "model_revision": "0" * 40,
        "node_port": NODE_PORT_MIN,
    }

    @property
    def peak_replicas(self) -> int:
        """``maxReplicas``, or ``minReplicas`` when the service does not autoscale."""
        return self.max_replicas if self.max_replicas is not None else self.min_replicas


_REPLICA_FIELDS = ("min_replicas", "max_replicas", "target_qps_per_replica", "base_on_demand")
_PLACEMENT_FIELDS = ("policy", "regions", "select", "gpu", "gpu_count")


def _replica_issues(listed: Entry[ElasticServiceSpec], where: ConfigLocation) -> list[ConfigIssue]:
    """SkyServe's own rules between the replica counts (module docstring)."""
    if not listed.sound(*_REPLICA_FIELDS):
        return []
    svc = listed.spec
    issues: list[ConfigIssue] = []

    def issue(key: str, message: str) -> None:
        issues.append(ConfigIssue(config_path((*where, key)), message))

    if svc.max_replicas is not None and svc.max_replicas < svc.min_replicas:
        issue("maxReplicas", f"is {svc.max_replicas}, less than minReplicas {svc.min_replicas}")
    if svc.target_qps_per_replica is not None and svc.max_replicas is None:
        issue("maxReplicas", "is required with targetQpsPerReplica (SkyServe scales between minReplicas and it)")
    if svc.target_qps_per_replica is None:
        if svc.min_replicas == 0:
            issue(
                "minReplicas",
                "0 (scale to zero) needs targetQpsPerReplica: SkyServe starts a replica when requests arrive, "
                "measured against that target",
            )
        elif svc.max_replicas is not None and svc.max_replicas != svc.min_replicas:
            issue(
                "targetQpsPerReplica",
                f"is required for maxReplicas {svc.max_replicas} to differ from minReplicas {svc.min_replicas}: "
                "SkyServe autoscales on the request rate per replica",
            )
    if svc.base_on_demand > svc.min_replicas:
        issue(
            "baseOnDemand",
            f"is {svc.base_on_demand}, more than minReplicas {svc.min_replicas}: the on-demand base is part of the "
            "replicas SkyServe always keeps",
        )
    return issues


def _field_issues(svc: ElasticServiceSpec, where: ConfigLocation) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if bool(svc.regions) == bool(svc.select):
        issues.append(
            ConfigIssue(
                config_path((*where, "regions")),
                "give the spot regions either as regions or by select (labels), exactly one of them",
            )
        )
    duplicates = sorted({r for r in svc.regions if svc.regions.count(r) > 1})
    if duplicates:
        issues.append(ConfigIssue(config_path((*where, "regions")), f"lists {', '.join(duplicates)} more than once"))
    return issues


def spot_regions(
    svc: ElasticServiceSpec, locations: Mapping[str, Location], context: NodeContext, where: ConfigLocation
) -> tuple[tuple[str, ...], list[ConfigIssue]]:
    """The service's spot regions in its policy's order, and why a region it lists cannot take part (not an AWS
    region of the mesh, a site, its GPU not offered or not sold as spot there). By ``select``, the labelled AWS
    regions offering the GPU as spot; none is an error."""
    regions = {name: loc for name, loc in locations.items() if loc.cloud == HUB_CLOUD}
    chosen = policy_candidates(svc.policy, svc.regions, svc.select, regions if svc.select else locations)
    issues: list[ConfigIssue] = []
    found: list[str] = []
    for name in chosen:
        path = (*where, "regions", svc.regions.index(name)) if not svc.select else (*where, "select")
        if name not in locations:
            known = ", ".join(sorted(regions))
            issues.append(ConfigIssue(config_path(path), f"{name!r} is not an AWS region of the mesh: {known}"))
            continue
        if name not in regions:
            issues.append(
                ConfigIssue(
                    config_path(path),
                    f"{name!r} is a site: SkyPilot launches spot replicas only into the mesh's AWS VPCs",
                )
            )
            continue
        refused = offer_issues(svc, locations[name], context, where)
        if not refused:
            found.append(name)
        elif not svc.select:
            reason = refused[0]
            message = (
                "its instance types with the GPU are not sold as spot there (the replicas SkyServe scales are spot)"
                if reason.path.endswith(".useSpot")
                else reason.message
            )
            issues.append(ConfigIssue(config_path(path), f"{name}: {message}"))
    if svc.select and not found and not issues:
        issues.append(
            ConfigIssue(
                config_path((*where, "select")),
                f"no AWS region of the mesh carries {svc.select} and offers {svc.gpu_count}x {svc.gpu} as spot",
            )
        )
    return tuple(found), issues


def pool_room(pools: Sequence[PoolSpec], gpu: str, gpu_count: int) -> int:
    """How many replicas of ``gpu_count`` x ``gpu`` the declared GPU pools hold: a pod's GPUs come from one node."""
    return sum(pool.total * (pool.gpu_count // gpu_count) for pool in pools if pool.gpu.casefold() == gpu.casefold())


def _base_issues(svc: ElasticServiceSpec, pools: Sequence[PoolSpec], where: ConfigLocation) -> list[ConfigIssue]:
    """The on-demand base must fit the GPU pool: beyond it SkyServe would launch on-demand VMs in the spot regions,
    which the plan's baseline does not price."""
    room = pool_room(pools, svc.gpu, svc.gpu_count)
    if svc.base_on_demand <= room:
        return []
    return [
        ConfigIssue(
            config_path((*where, "baseOnDemand")),
            f"{svc.base_on_demand} replica(s) of {svc.gpu_count}x {svc.gpu} on the K3s GPU pool, which holds {room}: "
            f"add lmrun:gpuPool nodes of {svc.gpu} (at least {svc.gpu_count} GPUs each) or lower baseOnDemand",
        )
    ]


def elastic_issues(
    raw: Mapping[str, Any], reserved_ports: Mapping[int, str], sites: Mapping[str, SiteSpec]
) -> list[ConfigIssue]:
    """Rules of ``lmrun:elasticServices`` across the config: SkyPilot enabled, at most one service per load-balancer
    port, names and node ports unique among nodes, services, groups and elastic services, SkyServe's replica rules,
    spot regions of the mesh offering the GPU as spot."""
    listed = entries(raw.get("elasticServices"), ElasticServiceSpec)
    if not listed:
        return []
    issues: list[ConfigIssue] = []
    sky = raw.get("skypilot")
    if not (isinstance(sky, Mapping) and sky.get("enabled") in (True, "true")):
        issues.append(
            ConfigIssue(
                config_path(("elasticServices",)),
                "SkyServe runs the elastic services: set lmrun:skypilot.enabled true (the mesh as SkyPilot "
                "infrastructure)",
            )
        )
    if len(listed) > MAX_ELASTIC_SERVICES:
        issues.append(
            ConfigIssue(
                config_path(("elasticServices",)),
                f"{len(listed)} services, more than the {MAX_ELASTIC_SERVICES} load-balancer ports of the SkyServe "
                f"controller ({SKYSERVE_LB_PORTS.start}-{SKYSERVE_LB_PORTS.stop - 1})",
            )
        )
    labels = valid_labels(raw.get("labels"))
    locations = mesh_locations(raw.get("mainRegion"), raw.get("regions"), sites, labels)
    mesh_regions = frozenset(n for n, loc in locations.items() if loc.cloud == HUB_CLOUD)
    context = NodeContext(mesh_regions, sites, recorded_offerings(raw))
    names, ports = taken_endpoints(raw, reserved_ports)
    for index, group in valid_groups(raw.get("groups")):
        names.add(group.name)
        ports.setdefault(group.node_port, f"group {group.name!r} (lmrun:groups[{index}])")
    pools = [pool for _, pool in valid_pools(raw.get("gpuPool"))]
    seen: dict[str, int] = {}
    for entry in listed:
        svc, where = entry.spec, ("elasticServices", entry.index)
        # (A base above minReplicas is refused as such by the replica rules.)
        if entry.sound("base_on_demand", "min_replicas", "gpu", "gpu_count") and svc.base_on_demand <= svc.min_replicas:
            issues.extend(_base_issues(svc, pools, where))
        if entry.sound("name"):
            if svc.name in seen:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "name")),
                        f"{svc.name!r} is already lmrun:elasticServices[{seen[svc.name]}]",
                    )
                )
            elif svc.name in names:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "name")),
                        f"{svc.name!r} is already a node, service or group name; an elastic service is a service of "
                        "its own",
                    )
                )
            seen.setdefault(svc.name, entry.index)
        if entry.sound("node_port"):
            if svc.node_port in ports:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "nodePort")),
                        f"node port {svc.node_port} is already taken by {ports[svc.node_port]}",
                    )
                )
            else:
                who = f"elastic service {svc.name!r} " if entry.sound("name") else "elastic service "
                ports[svc.node_port] = f"{who}(lmrun:elasticServices[{entry.index}])"
        issues.extend(_replica_issues(entry, where))
        if entry.sound("model_access") and svc.model_access != "public":
            issues.append(
                ConfigIssue(
                    config_path((*where, "modelAccess")),
                    f"{svc.model_access}: SkyServe's replicas read no Hugging Face token (the SkyPilot role reads only "
                    "the agent credential and the Phoenix ingest key), so an elastic service serves public models only",
                )
            )
        if not entry.sound(*_PLACEMENT_FIELDS):
            continue
        field_issues = _field_issues(svc, where)
        issues.extend(field_issues)
        if not field_issues:
            issues.extend(spot_regions(svc, locations, context, where)[1])
    return issues
