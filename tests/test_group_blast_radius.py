"""Blast radius of editing a replica group, on the `fleet` example: two mock recordings compared resource by resource.

A replica's name is ``<group>-<location code>-<n>`` (:mod:`lmrun.spec.groups`), and its resources are named after
it, so what an edit may touch is exact: raising ``replicas`` adds the new replica's resources and changes nothing
else, lowering removes only the highest-numbered replica's, reordering the groups or a spread's regions changes
nothing at all, and more room where a group spilled moves only the replicas that now fit earlier.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from lmrun.verify.offline import PlanReport
from tests.conftest import ROOT, plan


def _fleet(key: str) -> Any:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.fleet.yaml").read_text())["config"][f"lmrun:{key}"]


GROUPS: list[dict[str, Any]] = _fleet("groups")
ROOMY = {**_fleet("quotas"), "us-west-2": {"L-3819A6DF": 32, "L-DB2E81BA": 8}}
"""The example's quotas with room for a fourth spot replica in us-west-2 (the example's own are full)."""


def _groups(**qwen: Any) -> list[dict[str, Any]]:
    groups = copy.deepcopy(GROUPS)
    groups[0].update(qwen)
    assert groups[0]["name"] == "qwen"
    return groups


def _diff(before: PlanReport, after: PlanReport) -> tuple[set[str], set[str], set[str]]:
    """(added, removed, changed) resource names between two recordings."""
    old = {r.urn: r for r in before.recording.resources}
    new = {r.urn: r for r in after.recording.resources}
    added = {new[urn].name for urn in set(new) - set(old)}
    removed = {old[urn].name for urn in set(old) - set(new)}
    changed = {old[urn].name for urn in set(old) & set(new) if old[urn].inputs != new[urn].inputs}
    return added, removed, changed


def _of_node(names: set[str], node: str) -> bool:
    """Whether ``names`` are the node's component and the resources named after it, and nothing else."""
    component = f"mesh-cluster-node-{node}"
    return component in names and all(name == component or name.startswith(f"{component}-") for name in names)


def test_raising_replicas_adds_the_new_replica_only() -> None:
    before = plan("fleet", quotas=ROOMY)
    after = plan("fleet", quotas=ROOMY, groups=_groups(replicas=6))
    added, removed, changed = _diff(before, after)
    assert _of_node(added, "qwen-usw2-3"), sorted(added)
    assert (removed, changed) == (set(), set())


def test_lowering_replicas_removes_the_highest_numbered_only() -> None:
    before = plan("fleet", quotas=ROOMY)
    after = plan("fleet", quotas=ROOMY, groups=_groups(replicas=4))
    added, removed, changed = _diff(before, after)
    assert _of_node(removed, "qwen-usw2-2"), sorted(removed)
    assert (added, changed) == (set(), set())


def test_reordering_groups_and_a_spreads_regions_changes_nothing() -> None:
    phi = {k: v for k, v in GROUPS[1].items() if k != "select"}
    before = plan("fleet", groups=[GROUPS[0], {**phi, "regions": ["us-west-2", "eu-west-2"]}])
    after = plan("fleet", groups=[{**phi, "regions": ["eu-west-2", "us-west-2"]}, GROUPS[0]])
    assert _diff(before, after) == (set(), set(), set())
    # ... and selecting the same regions by label is the same group.
    assert _diff(before, plan("fleet")) == (set(), set(), set())


def test_more_room_where_a_group_spilled_moves_only_the_replicas_that_now_fit_first() -> None:
    """Re-recording a higher spot quota in us-east-2 (16 -> 24 vCPUs) brings one replica back from us-west-2:
    the last one there goes, a third one in us-east-2 comes; the other four stay."""
    quotas = {**_fleet("quotas"), "us-east-2": {"L-3819A6DF": 24, "L-DB2E81BA": 0}}
    added, removed, changed = _diff(plan("fleet"), plan("fleet", quotas=quotas))
    assert _of_node(added, "qwen-use2-2"), sorted(added)
    assert _of_node(removed, "qwen-usw2-2"), sorted(removed)
    assert changed == set()
