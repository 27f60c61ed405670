"""Offerings and quotas recorded in the stack: the example stacks' records are what the commands write from recorded
API answers (moto's EC2 offerings; a recorded Service Quotas answer through botocore's Stubber, which moto does not
emulate for EC2 quotas), they decide placement, and the plan says which source decided each node."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore.stub import Stubber
from rich.console import Console

from lmrun.cli import main
from lmrun.cli.quotas_view import check_stack_quotas
from lmrun.cli.regions_sync import sync_stack_regions
from lmrun.plan import plan_mesh
from lmrun.spec import ConfigError, spec_from_config
from tests.conftest import ROOT, TEST_AMI, moto_aws, plan, repinned, stack_config
from tests.test_regions_sync import set_opt_in

QUOTA_ANSWERS = ROOT / "tests" / "fixtures" / "service_quotas" / "fleet.json"
QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    with moto_aws():
        yield


def _project(tmp_path: Path, stack: str) -> Path:
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / f"Pulumi.{stack}.yaml", tmp_path / "stacks" / f"Pulumi.{stack}.yaml")
    return tmp_path


def _config(project: Path, stack: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((project / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return config


class RecordedQuotas:
    """A ``service-quotas`` client per region answering ``GetServiceQuota`` from the recorded answers; every answer
    must be asked for exactly once."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Stubber] = {}
        for answer in answers:
            region, code = answer["region"], answer["response"]["Quota"]["QuotaCode"]
            if region not in self.clients:
                self.clients[region] = botocore.session.get_session().create_client(
                    "service-quotas", region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
                )
                self.stubbers[region] = Stubber(self.clients[region])
                self.stubbers[region].activate()
            self.stubbers[region].add_response(
                "get_service_quota", answer["response"], {"ServiceCode": "ec2", "QuotaCode": code}
            )

    def factory(self, region: str) -> Any:
        return self.clients[region]

    def assert_consumed(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def _cut(path: Path, start: str, end: str) -> None:
    """Remove the stack file's lines from the one starting with ``start`` up to the one starting with ``end``."""
    text = path.read_text()
    path.write_text(text[: text.index(start)] + text[text.index(end) :])


def _answers() -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = json.loads(QUOTA_ANSWERS.read_text())
    return answers


def _sync(project: Path, stack: str) -> Any:
    session = boto3.Session(region_name="us-east-1")
    # The example's opt-in spokes, enabled as in an account that uses them (moto reports them not opted in).
    set_opt_in(session, dict.fromkeys(["eu-south-2", "il-central-1", "me-central-1"], "opted-in"))
    return sync_stack_regions(
        project,
        stack=stack,
        session=session,
        keep_regions=True,
        show_progress=False,
        console=Console(file=io.StringIO()),
    )


# --- the example stacks' records are genuine ------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["global", "fleet"])
def test_the_examples_offerings_are_what_regions_sync_records(aws: None, tmp_path: Path, stack: str) -> None:
    project = _project(tmp_path, stack)
    result = _sync(project, stack)
    assert not result.changed, "re-recording from moto's EC2 offerings would change lmrun:offerings"
    assert (project / "stacks" / f"Pulumi.{stack}.yaml").read_text() == (
        ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    ).read_text()
    assert set(result.offerings["regions"]) == {_config(project, stack)["lmrun:mainRegion"], *result.spokes}


def test_the_fleet_quotas_are_what_quotas_write_records() -> None:
    recorded = RecordedQuotas(_answers())
    report = check_stack_quotas(ROOT, stack="fleet", client_factory=recorded.factory, write=True)
    recorded.assert_consumed()  # both quotas of every mesh region were read
    assert report.written is None, "re-recording the answers would change lmrun:quotas"
    assert report.status == "enough"
    # The fleet fits exactly: 2 spot replicas in us-east-2 (16 vCPUs), 3 in us-west-2 (24), one on-demand A10G
    # (4 vCPUs) in each prod region.
    assert dict(report.needs) == {"eu-west-2": (4, 0), "us-east-2": (0, 16), "us-west-2": (4, 24)}


def test_keep_regions_records_offerings_and_leaves_the_regions_alone(aws: None, tmp_path: Path) -> None:
    project = _project(tmp_path, "fleet")
    path = project / "stacks" / "Pulumi.fleet.yaml"
    _cut(path, "  # What each region offers", "  # The account's EC2 vCPU quotas")
    result = _sync(project, "fleet")
    assert result.written
    config = _config(project, "fleet")
    assert config["lmrun:regions"] == ["us-east-2", "us-west-2", "eu-west-2"]
    assert "lmrun:availabilityZones" not in config
    assert (
        config["lmrun:offerings"]
        == yaml.safe_load((ROOT / "stacks" / "Pulumi.fleet.yaml").read_text())["config"]["lmrun:offerings"]
    )
    # Every comment of the file is still there, once.
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            assert path.read_text().count(line) == 1


def test_quotas_write_records_every_mesh_region_keeping_the_files_comments(tmp_path: Path) -> None:
    project = _project(tmp_path, "fleet")
    path = project / "stacks" / "Pulumi.fleet.yaml"
    _cut(path, "  # The account's EC2 vCPU quotas", "  # Groups choose")
    before = path.read_text()
    report = check_stack_quotas(project, stack="fleet", client_factory=RecordedQuotas(_answers()).factory, write=True)
    assert report.written == path
    written = _config(project, "fleet")["lmrun:quotas"]
    assert written == {
        "eu-west-2": {"L-3819A6DF": 0, "L-DB2E81BA": 8},
        "us-east-1": {"L-3819A6DF": 64, "L-DB2E81BA": 64},
        "us-east-2": {"L-3819A6DF": 16, "L-DB2E81BA": 0},
        "us-west-2": {"L-3819A6DF": 24, "L-DB2E81BA": 8},
    }
    after = path.read_text()
    for line in before.splitlines():
        if line.lstrip().startswith("#"):
            assert after.count(line) == 1, line


def test_quotas_write_reads_nothing_short_of_every_quota_or_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, "fleet")
    before = (project / "stacks" / "Pulumi.fleet.yaml").read_text()
    answers = [
        a
        for a in _answers()
        if not (a["region"] == "us-west-2" and a["response"]["Quota"]["QuotaCode"] == "L-3819A6DF")
    ]
    recorded = RecordedQuotas(answers)
    recorded.stubbers["us-west-2"].add_client_error(
        "get_service_quota",
        "AccessDeniedException",
        "not allowed",
        403,
        expected_params={"ServiceCode": "ec2", "QuotaCode": "L-3819A6DF"},
    )
    from lmrun.aws import quotas

    monkeypatch.setattr(quotas, "default_client_factory", recorded.factory)
    code = main(["quotas", "--project-dir", str(project), "--stack", "fleet", "--write"])
    err = capsys.readouterr().err
    assert code == 1
    assert "us-west-2 L-3819A6DF (Spot G and VT vCPUs): AccessDeniedException: not allowed" in err
    assert "nothing written" in err
    assert (project / "stacks" / "Pulumi.fleet.yaml").read_text() == before


# --- the example and the catalog disagree (issue 12) ----------------------------------------------------------


def _l4_node(region: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "l4",
            "region": region,
            "gpu": "L4",
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "modelRevision": QWEN_REVISION,
            "nodePort": 30095,
        }
    ]


# (region, with global's record?) -> the node's offering source, or the refusal's message
DISAGREEMENT = {
    # Reported: refused by the catalog although global's spokes were said to offer L4.
    ("sa-east-1", False): "1x L4 is not offered in sa-east-1 per the instance catalog",
    # Now: the account's record decides, and it offers L4 there.
    ("sa-east-1", True): "recorded",
    # eu-west-1 offers no L4: refused either way, the message names the source that decided.
    ("eu-west-1", False): "1x L4 is not offered in eu-west-1 per the instance catalog",
    ("eu-west-1", True): "1x L4 is not offered in eu-west-1 per the offerings recorded in lmrun:offerings",
    # A region the record leaves out (none here) or a type it never asked about falls back to the catalog.
    ("us-east-2", True): "recorded",
}


@pytest.mark.parametrize(("region", "recorded"), sorted(DISAGREEMENT))
def test_an_l4_node_in_a_global_spoke_is_judged_by_the_recorded_offerings(region: str, recorded: bool) -> None:
    overrides: dict[str, Any] = {"nodes": _l4_node(region), "images": repinned("global", region, "gpu", TEST_AMI)}
    if not recorded:
        overrides["offerings"] = {}
    config = stack_config("global", **overrides).config
    expected = DISAGREEMENT[(region, recorded)]
    if expected == "recorded":
        planned = plan_mesh(spec_from_config(config), mesh="global")
        assert planned.cluster.nodes["l4"].offering_source == "recorded"
        assert planned.cluster.nodes["l4"].instance_type == "g6.xlarge"
        return
    with pytest.raises(ConfigError) as caught:
        spec_from_config(config)
    assert next(str(i) for i in caught.value.issues if i.path == "lmrun:nodes[0].gpu").startswith(
        f"lmrun:nodes[0].gpu: {expected}"
    )


def test_the_plan_says_which_source_decided_each_node() -> None:
    nodes = plan("global").to_json()["nodes"]
    assert {name: node["offerings"] for name, node in nodes.items()} == {
        "l4-gcp": "catalog",  # GCP: its own catalog
        "l4-pool-use1-0": "recorded",  # the GPU pool's node
        "phi-euw1": "recorded",
        "qwen-use2": "recorded",
        "qwen-usw2": "recorded",
    }


# --- the fleet example -----------------------------------------------------------------------------------------


def test_the_fleet_plan_shows_each_groups_replicas_with_region_decision_and_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "fleet", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    groups = document["groups"]
    assert {name: g["decision"] for name, g in groups.items()} == {
        "phi": "1 in eu-west-2, 1 in us-west-2",
        "qwen": "2 in us-east-2, 3 in us-west-2",
    }
    assert [(r["name"], r["location"], r["reason"]) for r in groups["qwen"]["replicas"]] == [
        ("qwen-use2-0", "us-east-2", "fill-and-spill: fills us-east-2 (room 2)"),
        ("qwen-use2-1", "us-east-2", "fill-and-spill: fills us-east-2 (room 2)"),
        ("qwen-usw2-0", "us-west-2", "fill-and-spill: spilled to us-west-2 (room 3); us-east-2 full"),
        ("qwen-usw2-1", "us-west-2", "fill-and-spill: spilled to us-west-2 (room 3); us-east-2 full"),
        ("qwen-usw2-2", "us-west-2", "fill-and-spill: spilled to us-west-2 (room 3); us-east-2 full"),
    ]
    assert [(t["location"], t["room"]) for t in groups["qwen"]["tried"]] == [
        ("us-east-2", 2),
        ("us-west-2", 3),
        ("eu-west-2", 0),
    ]
    # One service per group, on the group's node port, its replicas among the nodes.
    assert document["node_ports"] == {"phi": 30081, "qwen": 30080}
    assert {n for n, node in document["nodes"].items() if node["service"] == "qwen"} == {
        r["name"] for r in groups["qwen"]["replicas"]
    }
    assert {node["offerings"] for node in document["nodes"].values()} == {"recorded"}

    assert main(["plan", "--project-dir", str(ROOT), "--stack", "fleet"]) == 0
    text = capsys.readouterr().out
    assert "Replica groups" in text and "qwen-usw2-2" in text


def test_the_fleet_would_refuse_its_group_if_a_quota_shrank() -> None:
    """Gang placement on the example: with one vCPU less spot quota in us-west-2, five replicas no longer fit."""
    config = stack_config(
        "fleet",
        quotas={**_config(ROOT, "fleet")["lmrun:quotas"], "us-west-2": {"L-3819A6DF": 23, "L-DB2E81BA": 8}},
    ).config
    with pytest.raises(ConfigError) as caught:
        plan_mesh(spec_from_config(config), mesh="fleet")
    (issue,) = caught.value.issues
    assert issue.path == "lmrun:groups[0].replicas"
    assert issue.message.startswith(
        "group 'qwen' (fill-and-spill) cannot place all 5 replicas and places none: short by 1"
    )
