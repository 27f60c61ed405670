"""Spec -> plan: pure Python decisions (CIDRs, subnets, names, limits). No Pulumi in here.

The plan is what components are built from; everything a reviewer might want to predict about the
resources (addresses, counts, which regions exist) is decided here and can be tested without an engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from lmrun.aws.network.cidr_blocks import az_subnet_cidr, region_cidr
from lmrun.aws.region.catalog import REGIONS
from lmrun.plan.cluster import ClusterPlan, plan_cluster
from lmrun.plan.flow_logs import FlowLogsPlan, plan_flow_logs
from lmrun.plan.groups import GroupPlan, place_groups
from lmrun.plan.images import ImagePlan, plan_images
from lmrun.plan.models import model_access_issues
from lmrun.plan.sites import LocationKind, Reachability, WireGuardPlan, location_reaches, plan_wireguard
from lmrun.plan.skypilot import SkyPilotPlan, plan_skypilot
from lmrun.spec.errors import ConfigIssue, PlanError, config_path
from lmrun.spec.model import DEFAULT_MAX_PEERINGS, MeshSpec

# AWS default quotas the plan must stay within (Amazon VPC User Guide, "Amazon VPC quotas": "Inbound or outbound
# rules per security group" 60 and "Routes per route table (non-propagated routes)" 50; both can be raised, the
# plan assumes the defaults). Every site is one route and one rule in the main VPC (its own CIDR, whatever
# private range it is), so sites count against both.
SECURITY_GROUP_INBOUND_RULE_LIMIT = 60
ROUTES_PER_ROUTE_TABLE_LIMIT = 50

MESH_TAG = "lmrun:mesh"
MANAGED_BY_TAG = "lmrun:managed-by"

Role = Literal["main", "spoke"]


@dataclass(frozen=True)
class SubnetPlan:
    """One subnet, keyed by the AZ id it lives in."""

    az_id: str
    cidr: str


@dataclass(frozen=True)
class RegionPlan:
    """One AWS region of the mesh: its VPC's CIDR and per-AZ subnets."""

    name: str
    role: Role
    cidr: str
    subnets: tuple[SubnetPlan, ...]


@dataclass(frozen=True)
class MeshPlan:
    """Everything the components need, decided up front."""

    mesh: str
    main: RegionPlan
    spokes: tuple[RegionPlan, ...]
    cluster: ClusterPlan
    wireguard: WireGuardPlan
    images: ImagePlan
    """The pinned images the mesh boots (each VM's plan carries its own)."""
    reachability: tuple[Reachability, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    max_peerings: int = DEFAULT_MAX_PEERINGS
    """Active peerings the main VPC may hold (``lmrun:maxPeerings``: the account's raised quota)."""
    flow_logs: FlowLogsPlan | None = None
    """Flow logs of every VPC (and, through each site's plan, every site subnet); None: off."""
    groups: tuple[GroupPlan, ...] = ()
    """Replica groups as placed (their replicas are among the cluster's nodes)."""
    pools: tuple[GroupPlan, ...] = ()
    """GPU pools as placed (their nodes are among the cluster's nodes, with ``pool`` set)."""
    skypilot: SkyPilotPlan | None = None
    """What the stack creates for SkyPilot (``lmrun:skypilot``), or None."""

    @property
    def regions(self) -> dict[str, RegionPlan]:
        """Main region first, then spokes by name."""
        return {self.main.name: self.main, **{spoke.name: spoke for spoke in self.spokes}}

    @property
    def locations(self) -> dict[str, LocationKind]:
        """Every place nodes can run: the main region, spokes and sites."""
        return {
            self.main.name: "main",
            **{spoke.name: "spoke" for spoke in self.spokes},
            **{site: "site" for site in self.wireguard.sites},
        }

    @property
    def main_inbound_rules(self) -> int:
        """Inbound rules on the main VPC's security group: its own CIDR, one per spoke, one per site and
        one for the tunnel range."""
        sites = len(self.wireguard.sites)
        return 1 + len(self.spokes) + sites + (1 if sites else 0)

    @property
    def main_routes(self) -> int:
        """Non-local routes in the main route table: internet, one per spoke, one per site, tunnel range."""
        sites = len(self.wireguard.sites)
        return 1 + len(self.spokes) + sites + (1 if sites else 0)


def _region_plan(spec: MeshSpec, region: str, role: Role) -> RegionPlan:
    az_ids = spec.availability_zones.get(region) or REGIONS[region].az_ids
    subnets = tuple(SubnetPlan(az_id, str(az_subnet_cidr(region, az_id))) for az_id in sorted(set(az_ids)))
    return RegionPlan(region, role, str(region_cidr(region)), subnets)


def mesh_tags(mesh: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Tags on every taggable resource; the mesh's own keys win over user-supplied ones."""
    return {**extra, MESH_TAG: mesh, MANAGED_BY_TAG: "pulumi"}


def plan_mesh(spec: MeshSpec, *, mesh: str) -> MeshPlan:
    """Decide the mesh for a validated spec; raise PlanError (with config paths) if AWS limits forbid it, an
    image it boots is not pinned, a replica group cannot be placed or a model it serves needs a Hugging Face token
    the stack does not set."""
    declared = spec
    # Replica groups become nodes first: from here on, the plan builds them like lmrun:nodes.
    groups = place_groups(spec)
    spec = spec.model_copy(update={"nodes": (*spec.nodes, *groups.nodes)})
    main = _region_plan(spec, spec.main_region, "main")
    spokes = tuple(_region_plan(spec, region, "spoke") for region in sorted(set(spec.regions)))
    # GPU pool nodes boot the GPU image of their location like any node (but serve nothing: never among nodes).
    with_pools = spec.model_copy(update={"nodes": (*spec.nodes, *(node for _, node in groups.pool_nodes))})
    images, image_issues = plan_images(with_pools, stack=mesh)
    plan = MeshPlan(
        mesh=mesh,
        main=main,
        spokes=spokes,
        cluster=plan_cluster(spec, main, images, mesh=mesh, pool_nodes=groups.pool_nodes),
        wireguard=plan_wireguard(spec, main.cidr, main.subnets[0].cidr, images),
        images=images,
        tags=mesh_tags(mesh, spec.tags),
        max_peerings=spec.max_peerings,
        flow_logs=plan_flow_logs(spec),
        groups=groups.groups,
        pools=groups.pools,
    )
    reachability, issues = check_paths(spec, plan)
    issues.extend(groups.issues)
    issues.extend(image_issues)
    skypilot, skypilot_issues = plan_skypilot(spec, plan)
    issues.extend(skypilot_issues)
    issues.extend(model_access_issues(declared))  # by config path: a group's, not each replica's
    plan = replace(plan, reachability=tuple(reachability), skypilot=skypilot)

    if plan.main_inbound_rules > SECURITY_GROUP_INBOUND_RULE_LIMIT:
        issues.append(
            ConfigIssue(
                config_path(("regions",)),
                f"the main security group would need {plan.main_inbound_rules} inbound rules, more than the "
                f"AWS default of {SECURITY_GROUP_INBOUND_RULE_LIMIT}; declare fewer spokes or sites",
            )
        )
    # Every mesh range, the operator CIDRs' SSH, and the rule admitting the mesh group (stops open_ports).
    if skypilot is not None and len(skypilot.ingress[main.name]) + len(skypilot.ssh_cidrs) + 1 > (
        SECURITY_GROUP_INBOUND_RULE_LIMIT
    ):
        issues.append(
            ConfigIssue(
                config_path(("skypilot",)),
                f"the SkyPilot security group of {main.name} would need more than {SECURITY_GROUP_INBOUND_RULE_LIMIT} "
                "inbound rules (every mesh range, and lmrun:operatorCidrs without useSsm); declare fewer",
            )
        )
    if plan.main_routes > ROUTES_PER_ROUTE_TABLE_LIMIT:
        issues.append(
            ConfigIssue(
                config_path(("regions",)),
                f"the main route table would need {plan.main_routes} routes, more than the AWS default of "
                f"{ROUTES_PER_ROUTE_TABLE_LIMIT}; declare fewer spokes or sites",
            )
        )
    if issues:
        raise PlanError(issues)
    return plan


def _replica_locations(plan: MeshPlan) -> dict[str, tuple[str, ...]]:
    """Service -> where its replicas run (node location; Phoenix and the server are in the main region)."""
    where = {name: node.location for name, node in plan.cluster.nodes.items()}
    return {
        service: tuple(sorted({where.get(replica, plan.main.name) for replica in endpoint.replicas}))
        for service, endpoint in plan.cluster.endpoints.items()
    }


def check_paths(spec: MeshSpec, plan: MeshPlan) -> tuple[list[Reachability], list[ConfigIssue]]:
    """Implied paths (the main region reaches every service; every location reaches the K3s API) and the
    declared ``lmrun:paths``; a declared path the topology cannot carry is a config error with the reason."""
    locations = plan.locations
    replicas = _replica_locations(plan)
    main = (plan.main.name, locations[plan.main.name])
    results: list[Reachability] = []
    issues: list[ConfigIssue] = []

    def path(source: str, service: str) -> Reachability:
        hops = [location_reaches((source, locations[source]), (loc, locations[loc])) for loc in replicas[service]]
        ok = all(reached for reached, _ in hops)
        reasons = "; ".join(reason for reached, reason in hops if reached is ok)
        port = plan.cluster.endpoints[service].app_port
        return Reachability(source, service, port, ok, reasons)

    for service in replicas:
        results.append(path(main[0], service))
    for name, kind in locations.items():
        if kind != "main":
            ok, reason = location_reaches((name, kind), main)
            results.append(Reachability(name, "k3s-api", 6443, ok, reason))
    for index, declared in enumerate(spec.paths):
        if declared.source not in locations:
            issues.append(
                ConfigIssue(
                    config_path(("paths", index, "from")),
                    f"{declared.source!r} is not a location of this mesh: {', '.join(locations)}",
                )
            )
            continue
        if declared.to not in replicas:
            issues.append(
                ConfigIssue(
                    config_path(("paths", index, "to")),
                    f"{declared.to!r} is not a service of this mesh: {', '.join(sorted(replicas))}",
                )
            )
            continue
        result = path(declared.source, declared.to)
        if not any((r.source, r.target) == (result.source, result.target) for r in results):
            results.append(result)  # a declared path the mesh implies anyway (or declared twice) is listed once
        if not result.ok:
            issues.append(ConfigIssue(config_path(("paths", index)), f"cannot reach {declared.to}: {result.reason}"))
    return results, issues
