"""Replica groups: each placement policy, gang refusal, label selection, quota-derived room, the spec's refusals
(every one at once, one line each, by config path), and the naming rules that keep replicas stable."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from lmrun.plan import plan_mesh
from lmrun.plan.groups import place_groups, spread_sequence
from lmrun.plan.mesh import MeshPlan
from lmrun.spec import ConfigError, PlanError, parse_spec
from lmrun.spec.model import MeshSpec
from tests.conftest import pinned_images

QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
SPOT = "L-3819A6DF"
ON_DEMAND = "L-DB2E81BA"
MESH: dict[str, Any] = {
    "mainRegion": "us-east-1",
    "regions": ["us-east-2", "us-west-2", "eu-west-1", "eu-west-2"],
    "images": pinned_images("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-2"),
    "phoenix": {"enabled": False},
}


def group(name: str = "qwen", **fields: Any) -> dict[str, Any]:
    """A spot L4 group (8 vCPUs of spot quota per replica: it may launch as g6.2xlarge)."""
    return {
        "name": name,
        "gpu": "L4",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "modelRevision": QWEN_REVISION,
        "nodePort": 30080,
        **fields,
    }


def spec(*groups: dict[str, Any], **extra: Any) -> MeshSpec:
    return parse_spec({**MESH, "groups": list(groups), **extra})


def planned(*groups: dict[str, Any], **extra: Any) -> MeshPlan:
    return plan_mesh(spec(*groups, **extra), mesh="t")


def where(plan: MeshPlan, name: str = "qwen") -> dict[str, str]:
    """Replica name -> location."""
    (placed,) = [g for g in plan.groups if g.name == name]
    return {r.name: r.location for r in placed.replicas}


def refusal(*groups: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(PlanError) as caught:
        planned(*groups, **extra)
    return [str(issue) for issue in caught.value.issues]


def spec_issues(*groups: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        spec(*groups, **extra)
    return [str(issue) for issue in caught.value.issues]


# --- fill-and-spill ---------------------------------------------------------------------------------------------


def test_fill_and_spill_fills_each_region_up_to_its_quota_then_spills_in_order() -> None:
    quotas = {"us-east-2": {SPOT: 16}, "us-west-2": {SPOT: 24}}
    plan = planned(
        group(policy="fill-and-spill", replicas=4, regions=["us-east-2", "us-west-2", "eu-west-2"]), quotas=quotas
    )
    assert where(plan) == {
        "qwen-use2-0": "us-east-2",
        "qwen-use2-1": "us-east-2",  # 16 vCPUs / 8 per replica
        "qwen-usw2-0": "us-west-2",
        "qwen-usw2-1": "us-west-2",
    }
    (placed,) = plan.groups
    assert placed.decision == "2 in us-east-2, 2 in us-west-2"
    assert placed.replicas[2].reason == "fill-and-spill: spilled to us-west-2 (room 3); us-east-2 full"
    assert placed.tried[0].reason == (
        "Spot G and VT vCPUs (L-3819A6DF): 16 recorded, 0 taken by other nodes, 8 per replica "
        "(g6.2xlarge, the largest type it may launch)"
    )
    # eu-west-2 records no quota: unbounded, and the reason says so.
    assert placed.tried[2].replicas is None
    assert "no Spot G and VT vCPUs (L-3819A6DF) recorded for eu-west-2" in placed.tried[2].reason
    assert placed.tried[2].reason.endswith("no maxPerRegion: unbounded")


def test_fill_and_spill_skips_a_region_that_does_not_offer_the_gpu() -> None:
    # eu-west-1 offers no L4 per the catalog: the group passes over it, it does not fail.
    plan = planned(
        group(policy="fill-and-spill", replicas=3, maxPerRegion=2, regions=["eu-west-1", "us-west-2", "us-east-2"])
    )
    assert where(plan) == {"qwen-usw2-0": "us-west-2", "qwen-usw2-1": "us-west-2", "qwen-use2-0": "us-east-2"}
    assert plan.groups[0].replicas[2].reason == (
        "fill-and-spill: spilled to us-east-2 (room 2); eu-west-1 cannot run it, us-west-2 full"
    )


def test_fill_and_spill_is_all_or_nothing_and_names_the_group_the_shortfall_and_every_region_tried() -> None:
    quotas = {"us-east-2": {SPOT: 16}, "us-west-2": {SPOT: 8}}
    lines = refusal(
        group(policy="fill-and-spill", replicas=5, regions=["us-east-2", "us-west-2", "eu-west-1"]), quotas=quotas
    )
    assert len(lines) == 1
    (line,) = lines
    assert line.startswith(
        "lmrun:groups[0].replicas: group 'qwen' (fill-and-spill) cannot place all 5 replicas and places none: "
        "short by 2; tried us-east-2 (room 2: Spot G and VT vCPUs (L-3819A6DF): 16 recorded"
    )
    assert "us-west-2 (room 1: " in line
    assert "eu-west-1 (cannot run it: 1x L4 is not offered in eu-west-1 per the instance catalog" in line


def test_explicit_nodes_take_their_quota_first() -> None:
    node = {**group("pinned", nodePort=30090), "region": "us-east-2"}
    quotas = {"us-east-2": {SPOT: 16}}
    plan = planned(
        group(policy="fill-and-spill", replicas=2, regions=["us-east-2", "us-west-2"]), quotas=quotas, nodes=[node]
    )
    assert where(plan) == {"qwen-use2-0": "us-east-2", "qwen-usw2-0": "us-west-2"}
    assert "16 recorded, 8 taken by other nodes" in plan.groups[0].tried[0].reason


def test_groups_share_a_quota_in_name_order_never_list_order() -> None:
    quotas = {"us-east-2": {SPOT: 16}}
    a = group("alpha", policy="fill-and-spill", replicas=1, regions=["us-east-2", "us-west-2"], nodePort=30081)
    b = group("beta", policy="fill-and-spill", replicas=2, regions=["us-east-2", "us-west-2"], nodePort=30082)
    for order in ([a, b], [b, a]):
        plan = planned(*order, quotas=quotas)
        assert where(plan, "alpha") == {"alpha-use2-0": "us-east-2"}
        assert where(plan, "beta") == {"beta-use2-0": "us-east-2", "beta-usw2-0": "us-west-2"}


def test_on_demand_replicas_draw_on_the_on_demand_quota() -> None:
    quotas = {"us-east-2": {ON_DEMAND: 8, SPOT: 0}}
    plan = planned(
        group(policy="fill-and-spill", replicas=3, useSpot=False, regions=["us-east-2", "us-west-2"]), quotas=quotas
    )
    # g6.xlarge on demand: 4 vCPUs, no alternative types.
    assert where(plan) == {"qwen-use2-0": "us-east-2", "qwen-use2-1": "us-east-2", "qwen-usw2-0": "us-west-2"}
    assert plan.groups[0].tried[0].reason.startswith("On-Demand G and VT vCPUs (L-DB2E81BA): 8 recorded")


def test_max_per_region_caps_a_recorded_quota() -> None:
    quotas = {"us-east-2": {SPOT: 800}}
    plan = planned(
        group(policy="fill-and-spill", replicas=2, maxPerRegion=1, regions=["us-east-2", "us-west-2"]), quotas=quotas
    )
    assert Counter(where(plan).values()) == {"us-east-2": 1, "us-west-2": 1}
    assert plan.groups[0].tried[0].reason.startswith("maxPerRegion 1 (quota room 100: ")


def test_p_instances_draw_on_no_recorded_quota_and_the_reason_says_so() -> None:
    plan = planned(group(policy="fill-and-spill", replicas=1, gpu="H100", useSpot=False, regions=["us-east-2"]))
    assert (
        plan.groups[0]
        .tried[0]
        .reason.startswith("p5.4xlarge counts against P-instance quotas, which lmrun does not record")
    )


# --- priority ---------------------------------------------------------------------------------------------------


def test_priority_puts_every_replica_in_the_first_region_with_room_for_all() -> None:
    quotas = {"us-east-2": {SPOT: 16}, "us-west-2": {SPOT: 40}}
    plan = planned(group(policy="priority", replicas=3, regions=["eu-west-1", "us-east-2", "us-west-2"]), quotas=quotas)
    assert where(plan) == {f"qwen-usw2-{n}": "us-west-2" for n in range(3)}
    assert plan.groups[0].replicas[0].reason == (
        "priority: all 3 here, the first location with room for all (room 5); "
        "passed eu-west-1 (cannot run it), us-east-2 (room 2)"
    )


def test_priority_refuses_when_no_region_takes_every_replica() -> None:
    quotas = {"us-east-2": {SPOT: 16}, "us-west-2": {SPOT: 16}}
    (line,) = refusal(group(policy="priority", replicas=3, regions=["us-east-2", "us-west-2"]), quotas=quotas)
    assert line.startswith("lmrun:groups[0].replicas: group 'qwen' (priority) cannot place all 3 replicas")
    assert "short by 1" in line  # it could only ever use the larger of the two


# --- spread -----------------------------------------------------------------------------------------------------


def test_spread_puts_one_replica_in_each_region_whatever_their_order() -> None:
    for regions in (["us-west-2", "us-east-2", "eu-west-2"], ["eu-west-2", "us-east-2", "us-west-2"]):
        plan = planned(group(policy="spread", replicas=3, regions=regions))
        assert where(plan) == {"qwen-euw2-0": "eu-west-2", "qwen-use2-0": "us-east-2", "qwen-usw2-0": "us-west-2"}


def test_spread_by_percent() -> None:
    plan = planned(
        group(
            policy="spread", replicas=4, regions=["us-east-2", "us-west-2"], percent={"us-east-2": 75, "us-west-2": 25}
        )
    )
    assert Counter(where(plan).values()) == {"us-east-2": 3, "us-west-2": 1}
    assert plan.groups[0].replicas[0].reason == "spread: 3 of 4 here (75% here)"


def test_spread_refuses_a_region_short_of_room_and_never_spills() -> None:
    quotas = {"us-east-2": {SPOT: 8}}
    (line,) = refusal(group(policy="spread", replicas=4, regions=["us-east-2", "us-west-2"]), quotas=quotas)
    assert line.startswith(
        "lmrun:groups[0].replicas: group 'qwen' (spread) needs 2 replicas in us-east-2, short by 1: us-east-2 (room 1:"
    )
    assert line.endswith("spread never spills")


@given(
    weights=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=6),
    count=st.integers(min_value=0, max_value=60),
)
def test_spread_sequence_extends_and_keeps_every_share_within_one(weights: list[int], count: int) -> None:
    names = [f"r{i}" for i in range(len(weights))]
    share = dict(zip(names, weights, strict=True))
    longer = spread_sequence(names, share, count + 5)
    # Raising the count only appends (existing replicas keep their place); lowering drops the last ones.
    assert spread_sequence(names, share, count) == longer[:count]
    held = Counter(longer[:count])
    for name in names:
        assert abs(held[name] - count * share[name] / sum(weights)) < 1 + 1e-9


# --- specified --------------------------------------------------------------------------------------------------


def test_specified_places_exactly_the_counts() -> None:
    plan = planned(group(policy="specified", counts={"us-west-2": 2, "us-east-2": 1}))
    assert where(plan) == {"qwen-use2-0": "us-east-2", "qwen-usw2-0": "us-west-2", "qwen-usw2-1": "us-west-2"}


def test_specified_refuses_every_short_region_at_once_and_never_spills() -> None:
    quotas = {"us-east-2": {SPOT: 8}, "us-west-2": {SPOT: 0}}
    lines = refusal(group(policy="specified", counts={"us-east-2": 2, "us-west-2": 1, "eu-west-2": 1}), quotas=quotas)
    assert [line.split(": group")[0] for line in lines] == [
        "lmrun:groups[0].counts.us-east-2",
        "lmrun:groups[0].counts.us-west-2",
    ]
    assert "short by 1" in lines[0] and "specified never spills" in lines[1]


# --- labels and sites -------------------------------------------------------------------------------------------


def test_select_by_label_uses_every_labelled_region_in_name_order() -> None:
    labels = {"us-west-2": {"class": "prod"}, "us-east-2": {"class": "prod"}, "eu-west-2": {"class": "dev"}}
    plan = planned(group(policy="fill-and-spill", replicas=2, maxPerRegion=1, select={"class": "prod"}), labels=labels)
    assert where(plan) == {"qwen-use2-0": "us-east-2", "qwen-usw2-0": "us-west-2"}


def test_a_group_places_replicas_in_a_gcp_site() -> None:
    site = {
        "name": "gcp-usc1",
        "kind": "gcp",
        "cidr": "10.128.0.0/20",
        "project": "lmrun-mesh-demo",
        "region": "us-central1",
        "images": {
            "gateway": "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260918",
            "gpu": "projects/deeplearning-platform-release/global/images/common-cu128-ubuntu-2204-nvidia-570-v20260320",
        },
    }
    plan = planned(group(policy="spread", replicas=2, regions=["gcp-usc1", "us-east-2"]), sites=[site])
    assert where(plan) == {"qwen-gcp-usc1-0": "gcp-usc1", "qwen-use2-0": "us-east-2"}
    assert plan.cluster.nodes["qwen-gcp-usc1-0"].cloud == "gcp"
    # Room in a site: GCP quotas are not recorded.
    assert plan.groups[0].tried[0].reason.startswith("GCP quotas, which lmrun does not record")


# --- one service ------------------------------------------------------------------------------------------------


def test_a_group_is_one_service_on_one_node_port_with_its_replicas() -> None:
    plan = planned(group(policy="spread", replicas=2, regions=["us-east-2", "us-west-2"]))
    endpoint = plan.cluster.endpoints["qwen"]
    assert (endpoint.node_port, endpoint.replicas, endpoint.labelled) == (30080, ("qwen-use2-0", "qwen-usw2-0"), True)
    assert {plan.cluster.nodes[n].service for n in endpoint.replicas} == {"qwen"}


def test_no_groups_place_nothing() -> None:
    assert place_groups(spec()).groups == ()


# --- the spec's refusals ----------------------------------------------------------------------------------------

SPEC_CASES: dict[str, tuple[list[dict[str, Any]], dict[str, Any], list[str]]] = {
    "replicas-missing": (
        [group(policy="fill-and-spill", regions=["us-east-2"])],
        {},
        ["lmrun:groups[0].replicas: is required for policy fill-and-spill"],
    ),
    "regions-and-select": (
        [group(policy="spread", replicas=1, regions=["us-east-2"], select={"class": "prod"})],
        {},
        ["lmrun:groups[0].regions: give the locations either as regions or by select (labels), exactly one of them"],
    ),
    "unknown-region": (
        [group(policy="spread", replicas=1, regions=["ap-south-1"])],
        {},
        [
            "lmrun:groups[0].regions[0]: 'ap-south-1' is not a location a replica can run in (a region of the mesh "
            "or a site of a site cloud): eu-west-1, eu-west-2, us-east-1, us-east-2, us-west-2"
        ],
    ),
    "spread-region-without-the-gpu": (
        [group(policy="spread", replicas=2, regions=["us-east-2", "eu-west-1"])],
        {},
        [
            "lmrun:groups[0].gpu: eu-west-1: 1x L4 is not offered in eu-west-1 per the instance catalog; mesh regions "
            "offering it: eu-west-2, us-east-1, us-east-2, us-west-2"
        ],
    ),
    "no-region-offers-it": (
        [group(policy="priority", replicas=1, gpu="L40S", regions=["eu-west-2", "us-west-1"])],
        {"regions": ["us-west-1", "eu-west-2"]},
        [
            "lmrun:groups[0].gpu: none of the group's locations can run it: eu-west-2: 1x L40S is not offered in "
            "eu-west-2 per the instance catalog; mesh regions offering it: us-east-1; us-west-1: 1x L40S is not "
            "offered in us-west-1 per the instance catalog; mesh regions offering it: us-east-1"
        ],
    ),
    "unknown-gpu-said-once": (
        [group(policy="spread", replicas=2, gpu="RTX9090", regions=["us-east-2", "us-west-2"])],
        {},
        [
            "lmrun:groups[0].gpu: unknown GPU 'RTX9090'; known GPUs: T4, A10G, L4, L40S, A100, A100-80GB, H100, "
            "H200, B200"
        ],
    ),
    "percent-not-100": (
        [
            group(
                policy="spread",
                replicas=2,
                regions=["us-east-2", "us-west-2"],
                percent={"us-east-2": 50, "us-west-2": 40},
            )
        ],
        {},
        ["lmrun:groups[0].percent: adds up to 90; the shares must add up to 100"],
    ),
    "counts-with-another-policy": (
        [group(policy="priority", replicas=1, regions=["us-east-2"], counts={"us-east-2": 1})],
        {},
        ["lmrun:groups[0].counts: only applies to policy specified, not priority"],
    ),
    "specified-replicas-disagree": (
        [group(policy="specified", replicas=3, counts={"us-east-2": 1})],
        {},
        ["lmrun:groups[0].replicas: is 3 but counts add up to 1; drop replicas or match it"],
    ),
    "select-matches-nothing": (
        [group(policy="spread", replicas=1, select={"class": "prod"})],
        {"labels": {"us-east-2": {"class": "dev"}}},
        ["lmrun:groups[0].select: no location of lmrun:labels carries {'class': 'prod'}"],
    ),
    "label-on-an-unknown-location": (
        [],
        {"labels": {"mars-1": {"class": "prod"}}},
        [
            "lmrun:labels.mars-1: 'mars-1' is not a location replicas can run in: eu-west-1, eu-west-2, us-east-1, "
            "us-east-2, us-west-2"
        ],
    ),
    "node-port-clash-and-duplicate-name": (
        [
            group(policy="spread", replicas=1, regions=["us-east-2"]),
            group(policy="spread", replicas=1, regions=["us-east-2"], nodePort=30081),
        ],
        {"phoenix": {"enabled": True, "uiNodePort": 30080}},
        [
            "lmrun:groups[0].nodePort: node port 30080 is already taken by phoenix-ui (reserved by the mesh)",
            "lmrun:groups[1].name: 'qwen' is already lmrun:groups[0]",
        ],
    ),
    "name-of-a-node": (
        [group(policy="spread", replicas=1, regions=["us-east-2"], nodePort=30081)],
        {"nodes": [{**group(), "region": "us-east-2"}]},
        ["lmrun:groups[0].name: 'qwen' is already a node or service name; a group is a service of its own"],
    ),
    "replica-names-too-long": (
        [group("a-very-long-group-name-for-qwen", policy="spread", replicas=12, regions=["us-east-2"])],
        {},
        [
            "lmrun:groups[0].name: replica names like 'a-very-long-group-name-for-qwen-use2-11' would exceed 32 "
            "characters (they name resources and Kubernetes labels); shorten the group name"
        ],
    ),
    "unknown-quota-code-and-offered-type-not-asked": (
        [],
        {
            "quotas": {"us-east-2": {"L-0000": 4}},
            "offerings": {"instanceTypes": ["g6.xlarge"], "regions": {"us-east-2": ["g5.xlarge"]}},
        },
        [
            "lmrun:offerings.regions.us-east-2[0]: 'g5.xlarge' is not in lmrun:offerings.instanceTypes (the types "
            "the record asked about)",
            "lmrun:quotas.us-east-2.L-0000: 'L-0000' is not a quota lmrun records; known: L-DB2E81BA (On-Demand G "
            "and VT vCPUs), L-3819A6DF (Spot G and VT vCPUs)",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_the_spec_refuses_with_one_line_per_problem(case: str) -> None:
    groups, extra, expected = SPEC_CASES[case]
    assert spec_issues(*groups, **extra) == expected


def test_every_group_problem_arrives_in_one_run() -> None:
    lines = spec_issues(
        group("a", policy="fill-and-spill", regions=["us-east-2"]),
        group("b", policy="spread", replicas=1, regions=["nowhere-1"], nodePort=30081),
        group("c", policy="specified", counts={"us-east-2": 1}, percent={"us-east-2": 100}, nodePort=30082),
        {"name": "d", "policy": "sideways"},
    )
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in lines] == [
        "lmrun:groups[0].replicas",
        "lmrun:groups[1].regions[0]",
        "lmrun:groups[2].percent",
        "lmrun:groups[3].gpu",
        "lmrun:groups[3].model",
        "lmrun:groups[3].modelRevision",
        "lmrun:groups[3].nodePort",
        "lmrun:groups[3].policy",
    ]


_LOCATIONS = st.sampled_from(["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-2", "nowhere-1", "gcp-x"])
_GROUP_FIELDS = st.fixed_dictionaries(
    {
        "policy": st.sampled_from(["spread", "priority", "fill-and-spill", "fill-and-spill", "specified", "random"]),
        "replicas": st.one_of(st.integers(min_value=1, max_value=8), st.sampled_from([0, "three"])),
        "regions": st.one_of(
            st.lists(st.sampled_from(["us-east-2", "us-west-2", "eu-west-2"]), min_size=1, max_size=3),
            st.lists(_LOCATIONS, max_size=3),
        ),
    },
    optional={
        "select": st.dictionaries(st.sampled_from(["class", "tier"]), st.sampled_from(["prod", "dev"]), max_size=2),
        "maxPerRegion": st.integers(min_value=0, max_value=4),
        "percent": st.dictionaries(_LOCATIONS, st.sampled_from([0, 25, 50, 75, 100]), max_size=2),
        "counts": st.dictionaries(_LOCATIONS, st.integers(min_value=0, max_value=3), max_size=2),
        "gpu": st.sampled_from(["L4", "A10G", "H100", "RTX9090"]),
        "useSpot": st.booleans(),
    },
)


@given(
    fields=st.lists(_GROUP_FIELDS, min_size=1, max_size=2),
    quotas=st.dictionaries(
        st.sampled_from(["us-east-2", "us-west-2", "eu-west-2"]),
        st.fixed_dictionaries({SPOT: st.integers(min_value=0, max_value=40), ON_DEMAND: st.integers(0, 40)}),
    ),
    labels=st.dictionaries(
        st.sampled_from(["us-east-2", "us-west-2", "eu-west-2", "mars-1"]), st.just({"class": "prod"})
    ),
)
def test_any_group_config_plans_or_is_refused_by_config_path(
    fields: list[dict[str, Any]], quotas: dict[str, Any], labels: dict[str, Any]
) -> None:
    """Whatever the groups say, the outcome is a plan or a ConfigError (PlanError included) whose every line
    starts with a config path: never another exception."""
    groups = [{**group(f"g{i}", nodePort=30080 + i), **extra} for i, extra in enumerate(fields)]
    try:
        plan = planned(*groups, quotas=quotas, labels=labels)
    except ConfigError as error:
        assert error.issues and all(issue.path.startswith("lmrun:") for issue in error.issues)
        event("refused" if not isinstance(error, PlanError) else "refused by the plan")
        return
    event("planned")
    names = [r.name for g in plan.groups for r in g.replicas]
    assert len(names) == len(set(names)) and set(names) <= set(plan.cluster.nodes)


def test_a_gated_model_without_a_token_is_refused_once_for_the_group() -> None:
    """The replicas are the group's: the refusal names the group's config path, not one line per replica."""
    lines = refusal(group(policy="spread", replicas=3, regions=["us-east-2", "us-west-2"], modelAccess="gated"))
    assert lines == [
        "lmrun:groups[0].modelAccess: group 'qwen' serves Qwen/Qwen2.5-7B-Instruct, which is gated on the Hugging "
        "Face Hub, and lmrun:huggingFaceToken is not set: pulumi config set --secret huggingFaceToken hf_... (a token "
        "whose account may download it)"
    ]
