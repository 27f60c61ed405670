"""Spec of replica groups (``lmrun:groups``): N replicas of one model behind one node port, placed by a policy over
the mesh's locations (AWS regions and sites of a site cloud), and of the location labels groups select by
(``lmrun:labels``).

A group is one service: its replicas are GPU nodes like those of ``lmrun:nodes`` (the plan turns each into a
:class:`~lmrun.spec.nodes.NodeSpec`, :mod:`lmrun.plan.groups`), sharing the group's name as their service, its node
port and its app port. A replica's name is ``<group>-<location code>-<n>``: the location's code (an AWS region's
AZ-id prefix, ``use2`` for us-east-2; a site's name) and ``n``, the count of the group's earlier replicas in that
location. So a replica's name says where it runs and never depends on list order or on other locations: raising
``replicas`` adds names, lowering it removes the highest-numbered ones, and reordering the groups changes nothing.

Policies:

- ``spread``: the replicas go round the locations in name order (or by ``percent``), so each gets its share;
- ``priority``: all replicas in the first location, in ``regions`` order, that offers the GPU and has room for
  every one of them;
- ``fill-and-spill``: each replica in the first location, in ``regions`` order, with room left; all or none (a
  group that cannot place every replica places none);
- ``specified``: ``counts`` replicas in each named location; refused, never spilled, where room is short.

Room in a location is the quota recorded for it (``lmrun:quotas``) divided by what one replica draws, capped by
``maxPerRegion``; with neither, it is unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from lmrun.aws.region.catalog import REGIONS
from lmrun.clouds import HUB_CLOUD, SITE_CLOUDS
from lmrun.spec.capacity import recorded_offerings
from lmrun.spec.cloud_rules import ConfigLocation, NodeContext, cloud_rules
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import RESERVED_NODE_NAMES, Name, NodeSpec, ServiceSpec, VllmWorkload
from lmrun.spec.partial import whole_entries
from lmrun.spec.sites import (
    SiteSpec,
    _pattern,  # the one "value matches a pattern" validator of the spec
)

Policy = Literal["spread", "priority", "fill-and-spill", "specified"]
ORDERED_POLICIES: frozenset[str] = frozenset({"priority", "fill-and-spill"})
"""Policies for which the order of ``regions`` is the policy (the others read it as a set)."""
MAX_REPLICAS = 999
"""Replicas of one group: three digits in replica names."""
MAX_NAME = 32
"""Characters of a node name (:data:`lmrun.spec.nodes.Name`): replica names are node names."""

_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


LabelKey = Annotated[str, _pattern(_LABEL_KEY, "a label key: 1-63 letters, digits, '.', '_', '-' or '/'")]
LabelValue = Annotated[str, _pattern(_LABEL_VALUE, "a label value: 1-63 letters, digits, '.', '_' or '-'")]
Labels = dict[LabelKey, LabelValue]
Percent = Annotated[int, Field(ge=1, le=100)]
ReplicaCount = Annotated[int, Field(ge=1, le=MAX_REPLICAS)]


class Placement(SpecModel):
    """Where N machines of one kind run, decided by a policy over the mesh's locations: what replica groups
    (``lmrun:groups``) and GPU pools (``lmrun:gpuPool``) share. A subclass says what one machine is
    (:meth:`node`)."""

    name: Name = Field(description="Unique name: the prefix of its machines' names (`<name>-<location code>-<n>`).")
    policy: Policy = Field(
        description="`spread` (round the locations, or by `percent`), `priority` (all in the first location with "
        "room for all), `fill-and-spill` (fill each location in order, all or none), `specified` (`counts` per "
        "location, never spilled)."
    )
    replicas: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="How many replicas (required, except for `specified`, whose `counts` add up to it).",
    )
    regions: tuple[Name, ...] = Field(
        default=(),
        description="Where replicas may run: AWS regions of the mesh (lmrun:mainRegion, lmrun:regions) and sites of "
        "a site cloud, in the order `priority` and `fill-and-spill` try them (`spread` reads them as a set).",
    )
    select: Labels = Field(
        default_factory=dict,
        description="Instead of `regions`: every location whose lmrun:labels include all of these, in name order.",
    )
    max_per_region: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="Most replicas in one location: its room there when no quota is recorded (lmrun:quotas), else "
        "a lower cap. Without either, room is unbounded.",
    )
    percent: dict[Name, Percent] = Field(
        default_factory=dict,
        description="`spread` only: each location's share of the replicas in percent (they add up to 100); "
        "default: equal shares.",
    )
    counts: dict[Name, ReplicaCount] = Field(
        default_factory=dict, description="`specified` only: how many replicas run in each location."
    )

    @property
    def total(self) -> int:
        """How many replicas it has."""
        return sum(self.counts.values()) if self.policy == "specified" else self.replicas or 0

    def node(self, location: Location, name: str) -> NodeSpec:
        """Replica ``name`` in ``location``, as the clouds' rules and placement see a node."""
        raise NotImplementedError


class GroupSpec(Placement, VllmWorkload):
    """N replicas of one model behind one node port, placed over the mesh's locations by a policy."""

    name: Name = Field(
        description="Group name: the service its replicas serve (one node port) and the prefix of their names "
        "(`<group>-<location code>-<n>`, e.g. `qwen-use2-0`)."
    )

    def node(self, location: Location, name: str) -> NodeSpec:
        return replica_spec(self, location, name)


@dataclass(frozen=True)
class Location:
    """A place a replica can run: an AWS region of the mesh or a site of a site cloud."""

    name: str
    cloud: str
    code: str
    """What replica names carry: an AWS region's AZ-id prefix (``use2``), a site's name."""
    labels: Mapping[str, str] = field(default_factory=dict)


def region_code(region: str) -> str:
    """``us-east-2`` -> ``use2``: the prefix of the region's AZ ids, unique per region."""
    return REGIONS[region].az_ids[0].rpartition("-az")[0]


def replica_name(group: str, location: Location, n: int) -> str:
    return f"{group}-{location.code}-{n}"


def mesh_locations(
    main: Any, regions: Any, sites: Mapping[str, SiteSpec], labels: Mapping[str, Mapping[str, str]]
) -> dict[str, Location]:
    """Every location a replica may run in, by name: the main region, the spokes (those this mesh knows) and the
    sites of a site cloud (an external site runs no node of the mesh)."""
    names = [main, *(regions if isinstance(regions, list | tuple) else [])]
    found = {
        r: Location(r, HUB_CLOUD, region_code(r), labels.get(r, {}))
        for r in names
        if isinstance(r, str) and r in REGIONS
    }
    for name, site in sites.items():
        if site.kind in SITE_CLOUDS:
            found.setdefault(name, Location(name, site.kind, name, labels.get(name, {})))
    return found


def candidates(group: Placement, locations: Mapping[str, Location]) -> tuple[str, ...]:
    """The locations a group (or a pool) may use, in the order its policy reads them (names it lists that are not mesh
    locations included: the spec reports them)."""
    if group.policy == "specified":
        return tuple(sorted(group.counts))
    return policy_candidates(group.policy, group.regions, group.select, locations)


def policy_candidates(
    policy: str, regions: tuple[str, ...], select: Mapping[str, str], locations: Mapping[str, Location]
) -> tuple[str, ...]:
    """The locations named by ``regions`` or chosen by ``select`` (labels), in the order ``policy`` reads them:
    list order for an ordered policy, else name order (shared by groups and elastic services)."""
    if select:
        return tuple(
            sorted(n for n, loc in locations.items() if all(loc.labels.get(k) == v for k, v in select.items()))
        )
    return regions if policy in ORDERED_POLICIES else tuple(sorted(set(regions)))


def replica_spec(group: VllmWorkload, location: Location, name: str) -> NodeSpec:
    """Replica ``name`` of ``group`` in ``location``: a node like those of ``lmrun:nodes``."""
    workload = {key: getattr(group, key) for key in VllmWorkload.model_fields if key != "name"}
    where = {"region": location.name} if location.cloud == HUB_CLOUD else {"site": location.name}
    return NodeSpec(name=name, cloud=location.cloud, service=group.name, **where, **workload)


def offer_issues(
    group: Placement | VllmWorkload, location: Location, context: NodeContext, where: ConfigLocation
) -> list[ConfigIssue]:
    """Why ``location`` cannot run a replica of ``group`` (its GPUs not offered there, not sold as spot...), as the
    location's cloud says it of a node; empty when it can."""
    node = (
        group.node(location, group.name) if isinstance(group, Placement) else replica_spec(group, location, group.name)
    )
    return cloud_rules(location.cloud).node_issues(node, where, context)


def valid_groups(raw: Any) -> list[tuple[int, GroupSpec]]:
    """Entries of ``lmrun:groups`` that validate on their own, with their index (the others are reported by the
    whole-spec validation)."""
    return whole_entries(raw, GroupSpec)


def valid_labels(raw: Any) -> dict[str, dict[str, str]]:
    """``lmrun:labels`` entries that are well formed (the others are reported by the whole-spec validation)."""
    found: dict[str, dict[str, str]] = {}
    for location, labels in (raw if isinstance(raw, dict) else {}).items():
        if (
            isinstance(location, str)
            and isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            found[location] = dict(labels)
    return found


def taken_endpoints(raw: Mapping[str, Any], reserved_ports: Mapping[int, str]) -> tuple[set[str], dict[int, str]]:
    """Names (nodes, services) and node ports (port -> owner) the nodes, services and the mesh already hold."""
    names = set(RESERVED_NODE_NAMES) | set(reserved_ports.values())
    ports = {port: f"{owner} (reserved by the mesh)" for port, owner in reserved_ports.items()}
    for index, node in whole_entries(raw.get("nodes"), NodeSpec):
        names |= {node.name, node.service_name}
        ports.setdefault(node.node_port, f"service {node.service_name!r} (lmrun:nodes[{index}])")
    for index, service in whole_entries(raw.get("services"), ServiceSpec):
        names.add(service.name)
        ports.setdefault(service.node_port, f"service {service.name!r} (lmrun:services[{index}])")
    return names, ports


def _field_issues(group: Placement, where: ConfigLocation) -> list[ConfigIssue]:
    """Which fields a policy takes."""
    issues: list[ConfigIssue] = []

    def issue(key: str, message: str) -> None:
        issues.append(ConfigIssue(config_path((*where, key)), message))

    if group.policy == "specified":
        if not group.counts:
            issue("counts", "is required for policy specified (replicas per location)")
        if group.replicas is not None and group.counts and group.replicas != group.total:
            issue("replicas", f"is {group.replicas} but counts add up to {group.total}; drop replicas or match it")
        for key, value in (("regions", group.regions), ("select", group.select)):
            if value:
                issue(key, "does not apply to policy specified: counts names its locations")
    else:
        if group.counts:
            issue("counts", f"only applies to policy specified, not {group.policy}")
        if group.replicas is None:
            issue("replicas", f"is required for policy {group.policy}")
        if bool(group.regions) == bool(group.select):
            issue("regions", "give the locations either as regions or by select (labels), exactly one of them")
        duplicates = sorted({r for r in group.regions if group.regions.count(r) > 1})
        if duplicates:
            issue("regions", f"lists {', '.join(duplicates)} more than once")
    if group.percent:
        if group.policy != "spread":
            issue("percent", f"only applies to policy spread, not {group.policy}")
        elif sum(group.percent.values()) != 100:
            issue("percent", f"adds up to {sum(group.percent.values())}; the shares must add up to 100")
    return issues


def _location_issues(
    group: Placement, where: ConfigLocation, chosen: tuple[str, ...], locations: Mapping[str, Location]
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    key = "counts" if group.policy == "specified" else "regions"
    known = ", ".join(sorted(locations))
    for name in chosen:
        if name not in locations:
            path = (*where, key, name) if key == "counts" else (*where, key, group.regions.index(name))
            issues.append(
                ConfigIssue(
                    config_path(path),
                    f"{name!r} is not a location a replica can run in (a region of the mesh or a site of a site "
                    f"cloud): {known}",
                )
            )
    if group.select and not chosen:
        issues.append(
            ConfigIssue(config_path((*where, "select")), f"no location of lmrun:labels carries {group.select}")
        )
    if group.percent and group.policy == "spread" and set(group.percent) != set(chosen):
        issues.append(
            ConfigIssue(
                config_path((*where, "percent")),
                f"names {', '.join(sorted(group.percent)) or 'nothing'}; give a share to exactly the group's "
                f"locations: {', '.join(chosen)}",
            )
        )
    for name in chosen:
        if name in locations:
            longest = replica_name(group.name, locations[name], max(group.total - 1, 0))
            if len(longest) > MAX_NAME:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "name")),
                        f"replica names like {longest!r} would exceed {MAX_NAME} characters (they name resources "
                        "and Kubernetes labels); shorten the group name",
                    )
                )
                break
    return issues


def _offering_issues(
    group: Placement,
    where: ConfigLocation,
    chosen: tuple[str, ...],
    locations: Mapping[str, Location],
    context: NodeContext,
) -> list[ConfigIssue]:
    """A location listed for a ``spread`` or ``specified`` group must run its replicas; an ordered policy skips
    those that cannot, and needs at least one that can."""
    usable = [name for name in chosen if name in locations]
    found = {name: offer_issues(group, locations[name], context, where)[:1] for name in usable}
    if group.policy in ORDERED_POLICIES and not (usable and all(found.values())):
        return []
    messages = {issue.message for issues in found.values() for issue in issues}
    if len(messages) == 1 and all(found.values()):  # the same everywhere (an unknown GPU): said once
        return next(iter(found.values()))
    if group.policy in ORDERED_POLICIES:
        reasons = "; ".join(f"{name}: {found[name][0].message}" for name in usable)
        return [ConfigIssue(config_path((*where, "gpu")), f"none of the group's locations can run it: {reasons}")]
    return [ConfigIssue(issue.path, f"{name}: {issue.message}") for name in usable for issue in found[name]]


def group_issues(
    raw: Mapping[str, Any], reserved_ports: Mapping[int, str], sites: Mapping[str, SiteSpec]
) -> list[ConfigIssue]:
    """Rules of ``lmrun:groups`` and ``lmrun:labels`` across the config: unique names and node ports, the fields a
    policy takes, locations of the mesh that can run the group's GPUs, replica names that fit."""
    issues: list[ConfigIssue] = []
    labels = valid_labels(raw.get("labels"))
    locations, context = location_context(raw, sites)
    for name in labels:
        if name not in locations:
            issues.append(
                ConfigIssue(
                    config_path(("labels", name)),
                    f"{name!r} is not a location replicas can run in: {', '.join(sorted(locations))}",
                )
            )
    names, ports = taken_endpoints(raw, reserved_ports)
    seen: dict[str, int] = {}
    for index, group in valid_groups(raw.get("groups")):
        where: ConfigLocation = ("groups", index)
        if group.name in seen:
            first = f"lmrun:groups[{seen[group.name]}]"
            issues.append(ConfigIssue(config_path((*where, "name")), f"{group.name!r} is already {first}"))
            continue
        seen[group.name] = index
        if group.name in names:
            issues.append(
                ConfigIssue(
                    config_path((*where, "name")),
                    f"{group.name!r} is already a node or service name; a group is a service of its own",
                )
            )
        if group.node_port in ports:
            issues.append(
                ConfigIssue(
                    config_path((*where, "nodePort")),
                    f"node port {group.node_port} is already taken by {ports[group.node_port]}",
                )
            )
        else:
            ports[group.node_port] = f"group {group.name!r} (lmrun:groups[{index}])"
        issues.extend(placement_issues(group, where, locations, context))
    return issues


def placement_issues(
    placed: Placement, where: ConfigLocation, locations: Mapping[str, Location], context: NodeContext
) -> list[ConfigIssue]:
    """The rules of a placement (a group's, a pool's): the fields its policy takes, locations of the mesh that can
    run its machines, replica names that fit."""
    field_issues = _field_issues(placed, where)
    if field_issues:
        return field_issues  # the locations it names mean nothing yet
    chosen = candidates(placed, locations)
    location_issues = _location_issues(placed, where, chosen, locations)
    if location_issues:
        return location_issues
    return _offering_issues(placed, where, chosen, locations, context)


def location_context(raw: Mapping[str, Any], sites: Mapping[str, SiteSpec]) -> tuple[dict[str, Location], NodeContext]:
    """The mesh's locations (with their lmrun:labels) and what a node's checks look at, from the raw config."""
    locations = mesh_locations(raw.get("mainRegion"), raw.get("regions"), sites, valid_labels(raw.get("labels")))
    mesh_regions = frozenset(n for n, loc in locations.items() if loc.cloud == HUB_CLOUD)
    return locations, NodeContext(mesh_regions, sites, recorded_offerings(raw))
