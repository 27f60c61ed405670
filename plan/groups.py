"""Replica groups -> concrete replicas: each group's policy decides, at plan time, how many of its replicas run in
which location, and every replica becomes a node the rest of the plan builds like those of ``lmrun:nodes``.

Pure decisions from the spec alone (the recorded offerings and quotas included), so a preview is deterministic.
What a reviewer needs to predict is kept beside each replica: the policy's decision and why, and for each location
the group tried, whether it can run the group and how many replicas it has room for.

Room in a location is shared: the explicit nodes take their quota first, then the groups in name order (never list
order, so reordering ``lmrun:groups`` changes nothing), each replica drawing what its instance type needs
(:meth:`lmrun.plan.placement.CloudPlacement.quota_use`). A group raising its ``replicas`` can therefore leave less
room to the groups after it; the plan then says where their replicas went and why.

Replica names and the order replicas are placed in (see :mod:`lmrun.spec.groups`) depend only on earlier
replicas, so raising ``replicas`` adds replicas and lowering it removes the last ones placed, the highest-numbered
of their location. ``priority`` is the one policy that moves a whole group: when its location has no room for the
new count, every replica goes to the next location that has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lmrun.clouds import HUB_CLOUD
from lmrun.plan.placement import QuotaUse, cloud_placement
from lmrun.spec.cloud_rules import NodeContext
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.gpu_pool import POOL_KEY
from lmrun.spec.groups import (
    Location,
    Placement,
    candidates,
    mesh_locations,
    offer_issues,
    replica_name,
)
from lmrun.spec.model import MeshSpec
from lmrun.spec.nodes import NodeSpec


@dataclass(frozen=True)
class Room:
    """What one location offers one group: whether it can run the group's replicas, and for how many."""

    location: str
    usable: bool
    replicas: int | None
    """Replicas of this group it has room for (0 when not usable); None: unbounded."""
    reason: str
    """Why: what refuses the group there, or the arithmetic of its room."""

    def short(self) -> str:
        """``room 2``, ``room unbounded`` or ``cannot run it``."""
        if not self.usable:
            return "cannot run it"
        return f"room {'unbounded' if self.replicas is None else self.replicas}"

    def describe(self) -> str:
        if not self.usable:
            return f"{self.location} (cannot run it: {self.reason})"
        return f"{self.location} (room {'unbounded' if self.replicas is None else self.replicas}: {self.reason})"


@dataclass(frozen=True)
class ReplicaPlan:
    """One replica of a group: its node name, where it runs and why there."""

    name: str
    location: str
    reason: str


@dataclass(frozen=True)
class GroupPlan:
    """A group (or a GPU pool) as placed: its replicas (empty when refused), the locations it tried, the decision
    in words."""

    name: str
    policy: str
    node_port: int | None
    """The group's node port; None for a pool (its nodes publish no service)."""
    replicas: tuple[ReplicaPlan, ...]
    tried: tuple[Room, ...]
    decision: str

    def export(self) -> dict[str, object]:
        """Plain values (the ``groups`` stack output, ``lmrun plan --json``)."""
        return {
            "policy": self.policy,
            "node_port": self.node_port,
            "decision": self.decision,
            "replicas": [{"name": r.name, "location": r.location, "reason": r.reason} for r in self.replicas],
            "tried": [
                {"location": t.location, "usable": t.usable, "room": t.replicas, "reason": t.reason} for t in self.tried
            ],
        }


@dataclass(frozen=True)
class GroupsPlacement:
    """Every group and GPU pool placed: their plans, the nodes their replicas become, and every refusal."""

    groups: tuple[GroupPlan, ...] = ()
    nodes: tuple[NodeSpec, ...] = ()
    issues: tuple[ConfigIssue, ...] = ()
    pools: tuple[GroupPlan, ...] = ()
    pool_nodes: tuple[tuple[str, NodeSpec], ...] = ()
    """(pool, node) of every pool node: machines only (:meth:`lmrun.spec.gpu_pool.PoolSpec.node`), never among
    ``nodes`` (they serve no model)."""


@dataclass
class _Ledger:
    """Quota taken so far, per (location, quota)."""

    taken: Counter[tuple[str, str]] = field(default_factory=Counter)

    def take(self, location: str, use: QuotaUse, count: int = 1) -> None:
        if use.quota is not None:
            self.taken[(location, use.quota)] += use.amount * count

    def room(self, location: str, use: QuotaUse) -> tuple[int | None, str]:
        """Replicas drawing ``use`` that still fit in ``location``'s recorded quota (None: no bound recorded)."""
        if use.quota is None:
            return None, use.about
        if use.limit is None:
            return None, f"no {use.about} recorded for {location} (lmrun quotas --write)"
        taken = self.taken[(location, use.quota)]
        fits = max(0, (use.limit - taken) // use.amount)
        per = f" ({use.amount_reason})" if use.amount_reason else ""
        return fits, f"{use.about}: {use.limit} recorded, {taken} taken by other nodes, {use.amount} per replica{per}"


def _node_use(node: NodeSpec, spec: MeshSpec) -> QuotaUse:
    placer = cloud_placement(node.cloud)
    return placer.quota_use(placer.place_node(node, spec, image=""), spec)


def _room(
    group: Placement, location: Location, spec: MeshSpec, context: NodeContext, ledger: _Ledger
) -> tuple[Room, QuotaUse | None]:
    refused = offer_issues(group, location, context, ())
    if refused:
        return Room(location.name, False, 0, refused[0].message), None
    use = _node_use(group.node(location, group.name), spec)
    quota_room, why = ledger.room(location.name, use)
    cap = group.max_per_region
    if cap is not None and (quota_room is None or cap < quota_room):
        limit = "no quota bound" if quota_room is None else f"quota room {quota_room}"
        return Room(location.name, True, cap, f"maxPerRegion {cap} ({limit}: {why})"), use
    if quota_room is None:
        return Room(location.name, True, None, f"{why}, no maxPerRegion: unbounded"), use
    return Room(location.name, True, quota_room, why), use


def spread_sequence(locations: Sequence[str], weights: Mapping[str, int], count: int) -> list[str]:
    """The location of each of ``count`` replicas, in placement order: smooth weighted round-robin over
    ``locations`` (equal weights: plain round-robin). Each pick depends only on the earlier ones, so a longer
    sequence extends a shorter one (raising ``replicas`` adds, lowering removes the last), and after n picks each
    location holds n x its share, give or take one."""
    total = sum(weights[name] for name in locations)
    current = dict.fromkeys(locations, 0)
    sequence: list[str] = []
    for _ in range(count):
        for name in locations:
            current[name] += weights[name]
        chosen = max(locations, key=lambda name: current[name])  # the first of equals: list order breaks ties
        current[chosen] -= total
        sequence.append(chosen)
    return sequence


def _shortfall(group: Placement, rooms: Sequence[Room], wanted: int) -> str:
    usable = [r.replicas or 0 for r in rooms if r.usable]
    # priority uses one location: only the roomiest counts; fill-and-spill adds them up
    available = max(usable, default=0) if group.policy == "priority" else sum(usable)
    return (
        f"group {group.name!r} ({group.policy}) cannot place all {wanted} replicas and places none: short by "
        f"{wanted - available}; tried {', '.join(r.describe() for r in rooms)}"
    )


def _assign(
    group: Placement, rooms: Sequence[Room], where: tuple[str | int, ...]
) -> tuple[list[tuple[str, str]], str, list[ConfigIssue]]:
    """(location, reason) of each replica in placement order, the decision, and the refusals."""
    total = group.total
    usable = [r for r in rooms if r.usable]
    if group.policy == "priority":
        for index, room in enumerate(rooms):
            if room.usable and (room.replicas is None or room.replicas >= total):
                passed = ", ".join(f"{r.location} ({r.short()})" for r in rooms[:index])
                why = f"priority: all {total} here, the first location with room for all ({room.short()})"
                return (
                    [(room.location, why + (f"; passed {passed}" if passed else ""))] * total,
                    (f"all {total} in {room.location}"),
                    [],
                )
        return [], "refused", [ConfigIssue(config_path((*where, "replicas")), _shortfall(group, rooms, total))]
    if group.policy == "fill-and-spill":
        if any(r.replicas is None for r in usable) or sum(r.replicas or 0 for r in usable) >= total:
            placed: list[tuple[str, str]] = []
            before: list[str] = []
            for room in rooms:
                take = 0
                if room.usable:
                    left = total - len(placed)
                    take = left if room.replicas is None else min(room.replicas, left)
                if take:
                    verb = f"spilled to {room.location}" if before else f"fills {room.location}"
                    passed = f"; {', '.join(before)}" if before else ""
                    placed += [(room.location, f"fill-and-spill: {verb} ({room.short()}){passed}")] * take
                before.append(f"{room.location} {'full' if room.usable else 'cannot run it'}")
                if len(placed) == total:
                    break
            counts = Counter(location for location, _ in placed)
            return placed, ", ".join(f"{n} in {loc}" for loc, n in counts.items()), []
        return [], "refused", [ConfigIssue(config_path((*where, "replicas")), _shortfall(group, rooms, total))]
    by_name = {r.location: r for r in rooms}
    if group.policy == "spread":
        names = [r.location for r in rooms]
        weights = group.percent or dict.fromkeys(names, 1)
        sequence = spread_sequence(names, weights, total)
        wanted = Counter(sequence)

        def share(name: str) -> str:
            return f"{weights[name]}% here" if group.percent else f"equal shares over {len(names)} locations"

        placed = [(n, f"spread: {wanted[n]} of {total} here ({share(n)})") for n in sequence]
        key = "replicas"
    else:  # specified
        wanted = Counter(group.counts)
        placed = [
            (n, f"specified: {c} here ({by_name[n].short()})")
            for n, c in sorted(group.counts.items())
            for _ in range(c)
        ]
        key = "counts"
    issues = []
    for name, count in sorted(wanted.items()):
        room = by_name[name]
        if room.replicas is not None and count > room.replicas:
            path = (*where, key, name) if key == "counts" else (*where, key)
            issues.append(
                ConfigIssue(
                    config_path(path),
                    f"group {group.name!r} ({group.policy}) needs {count} replicas in {name}, short by "
                    f"{count - room.replicas}: {room.describe()}; {group.policy} never spills",
                )
            )
    if issues:
        return [], "refused", issues
    return placed, ", ".join(f"{n} in {loc}" for loc, n in sorted(wanted.items())), []


def place_groups(spec: MeshSpec) -> GroupsPlacement:
    """Place every group and GPU pool of a validated spec: after the explicit nodes' quota use, the groups in name
    order, then the pools in name order (never list order)."""
    if not spec.groups and not spec.gpu_pool:
        return GroupsPlacement()
    sites = {site.name: site for site in spec.sites}
    locations = mesh_locations(spec.main_region, spec.regions, sites, spec.labels)
    mesh_regions = frozenset(n for n, loc in locations.items() if loc.cloud == HUB_CLOUD)
    context = NodeContext(mesh_regions, sites, spec.offerings.availability())
    ledger = _Ledger()
    for node in spec.nodes:
        ledger.take(node.site or node.region or "", _node_use(node, spec))
    taken_names = {node.name for node in spec.nodes}
    issues: list[ConfigIssue] = []

    def place_all(
        key: str, entries: Sequence[Placement], node_port: Mapping[str, int | None]
    ) -> tuple[list[GroupPlan], list[tuple[str, NodeSpec]]]:
        index_of = {entry.name: index for index, entry in enumerate(entries)}
        plans: list[GroupPlan] = []
        nodes: list[tuple[str, NodeSpec]] = []
        for group in sorted(entries, key=lambda g: g.name):
            where: tuple[str | int, ...] = (key, index_of[group.name])
            tried = [name for name in candidates(group, locations) if name in locations]  # the spec refuses others
            measured = [_room(group, locations[name], spec, context, ledger) for name in tried]
            rooms = [room for room, _ in measured]
            uses = {room.location: use for room, use in measured}
            placed, decision, refused = _assign(group, rooms, where)
            issues.extend(refused)
            seen: Counter[str] = Counter()
            replicas: list[ReplicaPlan] = []
            for location, reason in placed:
                name = replica_name(group.name, locations[location], seen[location])
                seen[location] += 1
                if name in taken_names:
                    issues.append(
                        ConfigIssue(config_path((*where, "name")), f"replica name {name!r} is already a node's")
                    )
                    continue
                taken_names.add(name)
                replicas.append(ReplicaPlan(name, location, reason))
                nodes.append((group.name, group.node(locations[location], name)))
                use = uses[location]
                if use is not None:
                    ledger.take(location, use)
            plans.append(
                GroupPlan(group.name, group.policy, node_port[group.name], tuple(replicas), tuple(rooms), decision)
            )
        return plans, nodes

    groups, group_nodes = place_all("groups", spec.groups, {g.name: g.node_port for g in spec.groups})
    pools, pool_nodes = place_all(POOL_KEY, spec.gpu_pool, dict.fromkeys((p.name for p in spec.gpu_pool), None))
    return GroupsPlacement(
        tuple(groups), tuple(node for _, node in group_nodes), tuple(issues), tuple(pools), tuple(pool_nodes)
    )
