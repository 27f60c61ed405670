"""Invalid GPU node, service and cluster configs are refused by the real CLI, each problem by its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmrun.cli import EXIT_INVALID_CONFIG, EXIT_OK
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import pinned_images

QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
MESH = {
    "mainRegion": "us-east-1",
    "regions": ["us-east-2", "eu-west-1"],
    "images": pinned_images("us-east-1", "us-east-2", "eu-west-1"),
}


def node(name: str = "n1", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "region": "us-east-2",
        "gpu": "L4",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "modelRevision": QWEN_REVISION,
        "nodePort": 30080,
        **overrides,
    }


def mesh(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**MESH, "nodes": list(nodes), **extra}


CASES: dict[str, Case] = {
    "duplicate-node-port": Case(
        mesh(node("a"), node("b", nodePort=30080, service="other")),
        (("lmrun:nodes[1].nodePort", "node port 30080 is already taken by service 'a' (lmrun:nodes[0])"),),
    ),
    "node-port-below-range": Case(
        mesh(node(nodePort=8080)),
        (("lmrun:nodes[0].nodePort", "node port 8080 is outside the Kubernetes NodePort range 30000-32767"),),
    ),
    "node-port-above-range": Case(
        mesh(node(nodePort=32768)),
        (("lmrun:nodes[0].nodePort", "outside the Kubernetes NodePort range"),),
    ),
    "duplicate-node-name": Case(
        mesh(node("a"), node("a", nodePort=30081)),
        (("lmrun:nodes[1].name", "'a' is already lmrun:nodes[0]"),),
    ),
    "unknown-gpu": Case(
        mesh(node(gpu="RTX9090")),
        (("lmrun:nodes[0].gpu", "unknown GPU 'RTX9090'; known GPUs: T4"),),
    ),
    "gpu-not-in-region": Case(
        mesh(node(region="eu-west-1", gpu="H200", gpuCount=8, useSpot=False)),
        (("lmrun:nodes[0].gpu", "8x H200 is not offered in eu-west-1 per the instance catalog"),),
    ),
    "gpu-count-no-instance-has": Case(
        mesh(node(gpuCount=3)),
        (("lmrun:nodes[0].gpuCount", "no instance type has 3x L4; available counts: [1, 4, 8]"),),
    ),
    "node-outside-the-mesh": Case(
        mesh(node(region="ap-south-1")),
        (("lmrun:nodes[0].region", "'ap-south-1' has no VPC in this mesh; add it to lmrun:regions"),),
    ),
    "revision-is-a-branch": Case(
        mesh(node(modelRevision="main")),
        (("lmrun:nodes[0].modelRevision", "'main' is not a pinned revision: give the model repo's full 40"),),
    ),
    "revision-is-short-sha": Case(
        mesh(node(modelRevision="a09a354")),
        (("lmrun:nodes[0].modelRevision", "is not a pinned revision"),),
    ),
    "model-without-org": Case(
        mesh(node(model="qwen")),
        (("lmrun:nodes[0].model", "'qwen' is not a Hugging Face model id"),),
    ),
    "node-name-uppercase": Case(
        mesh(node(name="GPU_1")),
        (("lmrun:nodes[0].name", "'GPU_1' is not a valid name: 1-32 characters of a-z, 0-9 and '-'"),),
    ),
    "unknown-node-key": Case(
        mesh(node(usespot=True)),
        (("lmrun:nodes[0].usespot", "unknown key; did you mean useSpot? known keys: appPort, cloud,"),),
    ),
    "missing-node-port": Case(
        mesh({k: v for k, v in node().items() if k != "nodePort"}),
        (("lmrun:nodes[0].nodePort", "is required"),),
    ),
    "disk-too-small": Case(
        mesh(node(diskSize=20)),
        (("lmrun:nodes[0].diskSize", "should be at least 64"),),
    ),
    "vllm-args-set-port": Case(
        mesh(node(vllmArgs=["--port", "9000"])),
        (("lmrun:nodes[0].vllmArgs", "--port is set by lmrun from the node's fields; remove it from vllmArgs"),),
    ),
    "gcp-cloud-not-yet": Case(
        mesh(node(cloud="azure")),
        (("lmrun:nodes[0].cloud", "should be one of 'aws'"),),
    ),
    "spot-not-sold": Case(
        {**MESH, "regions": ["us-east-2"], "nodes": [node(gpu="H100", gpuCount=1, region="us-east-2")]},
        (("lmrun:nodes[0].useSpot", "p5.4xlarge is not sold as spot; set useSpot: false"),),
    ),
    "replicas-disagree-on-node-port": Case(
        mesh(node("a", service="qwen"), node("b", service="qwen", nodePort=30090)),
        (
            (
                "lmrun:nodes[1].nodePort",
                "replicas of service 'qwen' must share one node port; lmrun:nodes[0] uses 30080",
            ),
        ),
    ),
    "service-on-missing-node": Case(
        mesh(node(), services=[{"name": "metrics", "node": "ghost", "appPort": 9100, "nodePort": 30300}]),
        (("lmrun:services[0].node", "no node named 'ghost' in lmrun:nodes"),),
    ),
    "service-port-clashes-with-node": Case(
        mesh(node(), services=[{"name": "metrics", "node": "n1", "appPort": 9100, "nodePort": 30080}]),
        (("lmrun:services[0].nodePort", "node port 30080 is already taken by service 'n1'"),),
    ),
    "service-app-port-is-vllm": Case(
        mesh(node(), services=[{"name": "metrics", "node": "n1", "appPort": 8000, "nodePort": 30300}]),
        (("lmrun:services[0].appPort", "port 8000 is vLLM's app port on node 'n1'"),),
    ),
    "service-name-clashes-with-node-service": Case(
        mesh(node(), services=[{"name": "n1", "node": "n1", "appPort": 9100, "nodePort": 30300}]),
        (("lmrun:services[0].name", "service name 'n1' is already used"),),
    ),
    "operator-cidr-world": Case(
        {**MESH, "operatorCidrs": ["0.0.0.0/0"]},
        (("lmrun:operatorCidrs[0]", "0.0.0.0/0 would open the K3s API to the whole internet"),),
    ),
    "operator-cidr-not-a-network": Case(
        {**MESH, "operatorCidrs": ["203.0.113.7/24"]},
        (("lmrun:operatorCidrs[0]", "should be an IPv4 network like '10.1.0.0/16'"),),
    ),
    "k3s-version-unpinned": Case(
        {**MESH, "k3sVersion": "stable"},
        (("lmrun:k3sVersion", "is not a K3s release like 'v1.33.6+k3s1'"),),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_node_config_is_refused_with_its_config_path(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_many_node_problems_are_reported_at_once(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = mesh(
        node("a", gpu="RTX9090"),
        node("b", region="ap-south-1", nodePort=30081),
        node("c", nodePort=30080),
        node("d", modelRevision="main", nodePort=30082),
    )
    code, _, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.bad.yaml", config), capsys)
    assert code == EXIT_INVALID_CONFIG
    paths = [line.split(": ", 1)[0] for line in err.splitlines()]
    assert paths == [
        "lmrun:nodes[0].gpu",
        "lmrun:nodes[1].region",
        "lmrun:nodes[2].nodePort",
        "lmrun:nodes[3].modelRevision",
    ]


def test_a_plaintext_hugging_face_token_is_refused(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_plan(
        project_dir, write_stack(tmp_path / "Pulumi.bad.yaml", {**MESH, "huggingFaceToken": "hf_plain"}), capsys
    )
    assert code == EXIT_INVALID_CONFIG
    assert err.startswith("lmrun:huggingFaceToken: must be stored encrypted: pulumi config set --secret")
    assert "hf_plain" not in err


def test_the_valid_node_config_plans(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cases above differ from this config only in what they break."""
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.ok.yaml", mesh(node())), capsys)
    assert code == EXIT_OK, err
    assert '"n1": 30080' in out
