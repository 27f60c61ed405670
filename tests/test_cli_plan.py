"""`python -m lmrun plan`: JSON shape, table view, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmrun.cli import main
from tests.conftest import ROOT


def test_json_plan_of_global(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == "global"
    assert document["regions"]["us-east-1"] == {"cidr": "10.64.0.0/16", "role": "main"}
    assert document["regions"]["eu-west-1"] == {"cidr": "10.72.0.0/16", "role": "spoke"}
    resources = document["resources"]
    assert {"type", "name", "parent", "inputs"} <= set(resources[0])
    vpc = next(r for r in resources if r["name"] == "mesh-eu-west-1-vpc")
    assert vpc["type"] == "aws:ec2/vpc:Vpc"
    assert vpc["parent"] == "mesh-eu-west-1"
    assert vpc["provider"] == "mesh-aws-eu-west-1"
    assert vpc["inputs"]["cidrBlock"] == "10.72.0.0/16"


def test_json_marks_secret_inputs(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmrun.mock_engine import RecordedResource, Recording, Secret
    from lmrun.verify.offline import PlanReport

    resource = RecordedResource(
        "urn:x", "t:t:T", "n", {"token": Secret("s3cr3t"), "plain": 1}, "", (), "", True, False, False
    )
    document = PlanReport("s", Recording([resource])).to_json()
    assert document["resources"][0]["inputs"] == {"token": "[secret]", "plain": 1}
    assert "s3cr3t" not in json.dumps(document)


def test_table_view_shows_components_cidrs_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global"]) == 0
    out = capsys.readouterr().out
    for needle in ("Resources by component", "CIDR plan", "10.72.0.0/16", "mesh-peering", "total registered"):
        assert needle in out


def test_make_plan_command_end_to_end() -> None:
    """What `make plan` runs, as a subprocess: exit 0 and the dev stack's hub in the CIDR table."""
    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "plan", "--stack", "dev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "us-east-1" in result.stdout and "10.64.0.0/16" in result.stdout


def test_unexpected_failure_exits_1(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: lmrun\nruntime: python\n")
    (tmp_path / "Pulumi.x.yaml").write_text("config:\n  lmrun:mainRegion: us-east-1\n")
    # No __main__.py: not a config problem, so exit 1 with one line.
    assert main(["plan", "--project-dir", str(tmp_path), "--config-file", str(tmp_path / "Pulumi.x.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: FileNotFoundError") and "Traceback" not in err
