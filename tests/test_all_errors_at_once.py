"""Every error at once (issue 12: "errors arrive in waves": one broken stack took 6 runs to clean up).

The cross-field checks read each entry's sound fields even when others are broken, and the plan's checks
(image pins, paths, AWS limits) run on the part of the config that is valid, so spec and plan problems come
in one run, sorted by config path, and never a consequence of another problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmrun.plan.validate import checked_plan
from lmrun.spec import ConfigError, PlanError
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import TEST_AMI, TEST_GCP_IMAGES, pinned_images

REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
MESH = {
    "mainRegion": "us-east-1",
    "regions": ["us-east-2", "us-west-2"],
    "images": pinned_images("us-east-1", "us-east-2", "us-west-2"),
}


def node(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "region": "us-east-2",
        "gpu": "L4",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "modelRevision": REVISION,
        "nodePort": 30080,
        **fields,
    }


def elastic(name: str, **fields: Any) -> dict[str, Any]:
    """An elastic service: a node's workload without a region (its spot regions are ``regions``)."""
    return {key: value for key, value in node(name, **fields).items() if key != "region"}


GCP_SITE = {"name": "g", "kind": "gcp", "cidr": "10.128.0.0/20", "project": "lmrun-demo-1", "region": "us-central1"}

CASES: dict[str, Case] = {
    # Before: only the CIDR (the site failed validation, so its cloud's checks never ran).
    "site-missing-project-while-its-cidr-is-wrong": Case(
        {**MESH, "sites": [{"name": "g", "kind": "gcp", "cidr": "8.8.8.0/24", "images": TEST_GCP_IMAGES}]},
        (
            ("lmrun:sites[0].cidr", "8.8.8.0/24 is not a private range"),
            ("lmrun:sites[0].project", "is required for a GCP site"),
            ("lmrun:sites[0].region", "is required for a GCP site"),
        ),
    ),
    # Before: only the revision (the node failed validation, so its node port was never claimed).
    "phoenix-port-clash-while-a-revision-is-unpinned": Case(
        {**MESH, "nodes": [node("q", modelRevision="main", nodePort=30200)]},
        (
            ("lmrun:nodes[0].modelRevision", "'main' is not a pinned revision"),
            ("lmrun:nodes[0].nodePort", "node port 30200 is already taken by phoenix-ui (reserved by the mesh)"),
        ),
    ),
    # Before: the spec's error alone; the missing pin came in the next run.
    "spec-error-and-missing-image-pin": Case(
        {**MESH, "maxPeerings": "lots", "images": pinned_images("us-east-1"), "nodes": [node("q")]},
        (
            ("lmrun:images.us-east-2.gpu", "no AMI pinned for GPU node q in us-east-2"),
            ("lmrun:maxPeerings", "should be a whole number (got 'lots')"),
        ),
    ),
    "duplicate-region-and-unreachable-path": Case(
        {
            **MESH,
            "regions": ["us-east-2", "us-west-2", "us-east-2"],
            "nodes": [node("q")],
            "paths": [{"from": "us-west-2", "to": "q"}],
        },
        (
            ("lmrun:paths[0]", "cannot reach q: us-west-2 -> us-east-2: VPC peering is not transitive"),
            ("lmrun:regions[2]", "'us-east-2' is listed more than once"),
        ),
    ),
    # The plan sees the valid paths only; its finding is reported at the user's index, not the compacted one.
    "plan-issue-at-its-own-index": Case(
        {**MESH, "nodes": [node("q")], "paths": [{"from": 5, "to": "q"}, {"from": "us-west-2", "to": "q"}]},
        (
            ("lmrun:paths[0].from", "should be a string (got 5)"),
            ("lmrun:paths[1]", "cannot reach q: us-west-2 -> us-east-2"),
        ),
    ),
    # A broken site is reported once: its node and a path from it are not "missing" consequences.
    "no-consequence-of-a-broken-part": Case(
        {
            **MESH,
            "sites": [{**GCP_SITE, "cidr": "8.8.8.0/24", "images": TEST_GCP_IMAGES}],
            "nodes": [node("q"), node("gq", cloud="gcp", region=None, site="g", nodePort=30081)],
            "paths": [{"from": "g", "to": "gq"}],
        },
        (("lmrun:sites[0].cidr", "8.8.8.0/24 is not a private range"),),
    ),
    # An elastic service with an unpinned revision still claims its node port and has its spot regions checked;
    # the other's broken replica counts do not hide its region that cannot run the GPU, nor the image pin.
    "elastic-services-broken-in-several-fields": Case(
        {
            **MESH,
            "images": pinned_images("us-east-1"),
            "skypilot": {"enabled": True},
            "nodes": [node("q")],
            "elasticServices": [
                elastic("e", modelRevision="main", regions=["us-west-2", "eu-west-1"]),
                elastic("f", nodePort=30090, minReplicas=0, regions=["us-east-2"]),
            ],
        },
        (
            ("lmrun:elasticServices[0].modelRevision", "'main' is not a pinned revision"),
            ("lmrun:elasticServices[0].nodePort", "node port 30080 is already taken by service 'q' (lmrun:nodes[0])"),
            ("lmrun:elasticServices[0].regions[1]", "'eu-west-1' is not an AWS region of the mesh"),
            ("lmrun:elasticServices[1].minReplicas", "0 (scale to zero) needs targetQpsPerReplica"),
            ("lmrun:images.us-east-2.gpu", "no AMI pinned for GPU node q in us-east-2"),
        ),
    ),
    # The plan's limit check still runs on the valid spokes while one is broken.
    "region-typo-and-too-few-peerings": Case(
        {**MESH, "regions": ["us-east-2", "us-west-2", "eu-west-9"], "maxPeerings": 1},
        (
            ("lmrun:regions", "3 spoke regions need 3 peerings with the main VPC, more than lmrun:maxPeerings=1"),
            ("lmrun:regions[2]", "'eu-west-9' is not an AWS region this mesh knows"),
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_run_reports_every_problem(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_one_error_at_each_stage_in_one_run(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stack file (an un-namespaced key), the spec (a value out of range), the cross-field checks (two
    services on one node port), the plan (a missing image pin, a path the topology cannot carry): one run."""
    config = {
        **MESH,
        "images": pinned_images("us-east-1", "us-east-2"),
        "nodes": [
            node("a"),
            node("b", service="other"),  # node port 30080 again: cross-field
            node("c", region="us-west-2", nodePort=30082),  # no GPU pin in us-west-2: plan
            node("d", gpuCount=99, nodePort=30083),  # spec
        ],
        "paths": [{"from": "us-west-2", "to": "a"}],  # spoke to spoke: plan
    }
    stack_file = write_stack(tmp_path / "Pulumi.stages.yaml", config)
    stack_file.write_text(stack_file.read_text() + "  regions: [eu-west-1]\n")  # the stack file

    code, out, err = run_plan(project_dir, stack_file, capsys)

    assert (code, out) == (2, ""), err
    assert err.splitlines() == [
        "lmrun:images.us-west-2.gpu: no AMI pinned for GPU node c in us-west-2; run `lmrun images sync --stack "
        "stages`: it writes the current Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) id from "
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        "lmrun:nodes[1].nodePort: node port 30080 is already taken by service 'a' (lmrun:nodes[0])",
        "lmrun:nodes[3].gpuCount: should be at most 16 (got 99)",
        "lmrun:paths[0]: cannot reach a: us-west-2 -> us-east-2: VPC peering is not transitive (spokes peer only "
        "with the main region)",
        "regions: has no namespace, and Pulumi refuses such a stack config key; did you mean lmrun:regions? write "
        "it as lmrun:<key> (this project) or <provider>:<key>",
    ]


def test_plan_only_problems_are_a_plan_error() -> None:
    config = {f"lmrun:{key}": json.dumps(value) for key, value in {**MESH, "nodes": [node("q")]}.items()}
    config["lmrun:mainRegion"] = "us-east-1"
    config["lmrun:images"] = json.dumps(pinned_images("us-east-1"))
    with pytest.raises(PlanError) as caught:
        checked_plan(config, mesh="x")
    assert [issue.path for issue in caught.value.issues] == ["lmrun:images.us-east-2.gpu"]
    config["lmrun:k3sVersion"] = "stable"
    with pytest.raises(ConfigError) as mixed:
        checked_plan(config, mesh="x")
    assert not isinstance(mixed.value, PlanError)
    assert [issue.path for issue in mixed.value.issues] == ["lmrun:images.us-east-2.gpu", "lmrun:k3sVersion"]


def test_a_valid_config_plans_through_the_same_door() -> None:
    config = {"lmrun:mainRegion": "us-east-1", "lmrun:images": json.dumps({"us-east-1": {"server": TEST_AMI}})}
    spec, plan = checked_plan(config, mesh="x")
    assert spec.main_region == plan.main.name == "us-east-1"
