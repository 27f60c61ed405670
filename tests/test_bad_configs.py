"""Invalid stack configs are refused by the real CLI with exit code 2 and one line per problem.

Each case writes a stack file, runs ``lmrun plan --config-file`` against a copy of the project (so the
defaults of ``Pulumi.yaml`` apply, as under ``pulumi up``) and checks that stderr holds exactly the expected
problems, each line starting with its config path and saying what is wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmrun.cli import EXIT_INVALID_CONFIG, EXIT_OK
from tests.config_cases import Case, run_plan, write_stack
from tests.conftest import pinned_images

# The main region with its image pinned: each case below then holds exactly one problem (the plan's checks run
# beside the spec's, so an unpinned image would be reported too).
MAIN = {"mainRegion": "us-east-1", "images": pinned_images("us-east-1")}
KNOWN_KEYS = (
    "known keys: availabilityZones, elasticServices, flowLogs, gpuInstanceTypes, gpuPool, groups, huggingFaceToken, "
    "images, k3sVersion, labels, mainRegion, maxPeerings, nodes, offerings, operatorCidrs, paths, phoenix, quotas, "
    "regions, serverInstanceType, services, sites, skypilot, tags, wireguard"
)

CASES: dict[str, Case] = {
    "missing-main-region": Case({"regions": ["us-west-2"]}, (("lmrun:mainRegion", "is required"),)),
    "unknown-main-region": Case(
        {"mainRegion": "us-east-9"},
        (("lmrun:mainRegion", "'us-east-9' is not an AWS region this mesh knows; known regions: af-south-1,"),),
    ),
    "unknown-spoke-region": Case(
        {**MAIN, "regions": ["us-west-2", "eu-west-1", "eu-west-9"]},
        (("lmrun:regions[2]", "'eu-west-9' is not an AWS region this mesh knows"),),
    ),
    "rogue-spoke-region": Case(
        {**MAIN, "regions": ["eu-west-1", "ap-east-1"]},
        (("lmrun:regions[1]", "'ap-east-1' is skipped by this mesh: Hong Kong"),),
    ),
    "rogue-main-region": Case(
        {"mainRegion": "ap-east-1"}, (("lmrun:mainRegion", "'ap-east-1' is skipped by this mesh"),)
    ),
    "main-region-listed-as-spoke": Case(
        {**MAIN, "regions": ["us-west-2", "us-east-1"]},
        (("lmrun:regions[1]", "'us-east-1' is the main region (lmrun:mainRegion); the hub is implied"),),
    ),
    "duplicate-spoke-region": Case(
        {**MAIN, "regions": ["us-west-2", "eu-west-1", "us-west-2"]},
        (("lmrun:regions[2]", "'us-west-2' is listed more than once"),),
    ),
    "typo-key-region": Case(
        {**MAIN, "region": "us-west-2"},
        (("lmrun:region", f"unknown key; did you mean lmrun:regions? {KNOWN_KEYS}"),),
    ),
    "snake-case-key": Case(
        {"main_region": "us-east-1"},
        (("lmrun:main_region", "unknown key; did you mean lmrun:mainRegion? (lmrun:mainRegion is required)"),),
    ),
    "regions-not-a-list": Case(
        {**MAIN, "regions": "us-west-2"}, (("lmrun:regions", "should be a list (got 'us-west-2')"),)
    ),
    "region-entry-not-a-string": Case(
        {**MAIN, "regions": ["us-west-2", 7]}, (("lmrun:regions[1]", "should be a string (got 7)"),)
    ),
    "max-peerings-zero": Case({**MAIN, "maxPeerings": 0}, (("lmrun:maxPeerings", "should be at least 1 (got '0')"),)),
    "max-peerings-above-aws-ceiling": Case(
        {**MAIN, "maxPeerings": 126}, (("lmrun:maxPeerings", "should be at most 125 (got '126')"),)
    ),
    "max-peerings-not-an-integer": Case(
        {**MAIN, "maxPeerings": "lots"}, (("lmrun:maxPeerings", "should be a whole number"),)
    ),
    "max-peerings-fractional": Case({**MAIN, "maxPeerings": 2.5}, (("lmrun:maxPeerings", "should be a whole number"),)),
    "more-spokes-than-max-peerings": Case(
        {**MAIN, "regions": ["us-west-2", "eu-west-1", "ap-northeast-1"], "maxPeerings": 2},
        (("lmrun:regions", "3 spoke regions need 3 peerings with the main VPC, more than lmrun:maxPeerings=2"),),
    ),
    "bad-instance-type": Case(
        {**MAIN, "gpuInstanceTypes": ["g6.xlarge", "G6 XLARGE"]},
        (("lmrun:gpuInstanceTypes[1]", "'G6 XLARGE' is not an EC2 instance type like 'g6.xlarge'"),),
    ),
    "instance-type-without-size": Case(
        {**MAIN, "gpuInstanceTypes": ["p5"]},
        (("lmrun:gpuInstanceTypes[0]", "'p5' is not an EC2 instance type"),),
    ),
    "empty-gpu-instance-types": Case(
        {**MAIN, "gpuInstanceTypes": []}, (("lmrun:gpuInstanceTypes", "needs at least 1 entry"),)
    ),
    "azs-for-undeclared-region": Case(
        {**MAIN, "availabilityZones": {"eu-west-1": ["euw1-az1"]}},
        (("lmrun:availabilityZones.eu-west-1", "'eu-west-1' is neither lmrun:mainRegion nor in lmrun:regions"),),
    ),
    "azs-for-unknown-region": Case(
        {**MAIN, "availabilityZones": {"eu-west-9": ["euw9-az1"]}},
        (("lmrun:availabilityZones.eu-west-9", "'eu-west-9' is not an AWS region this mesh knows"),),
    ),
    "az-id-of-another-region": Case(
        {**MAIN, "availabilityZones": {"us-east-1": ["use1-az1", "usw2-az1"]}},
        (
            (
                "lmrun:availabilityZones.us-east-1[1]",
                "'usw2-az1' is not an AZ id of us-east-1 (they look like 'use1-az1')",
            ),
        ),
    ),
    "malformed-az-id": Case(
        {**MAIN, "availabilityZones": {"us-east-1": ["us-east-1a"]}},
        (("lmrun:availabilityZones.us-east-1[0]", "'us-east-1a' is not an availability-zone id like 'use1-az1'"),),
    ),
    "az-number-above-15": Case(
        {**MAIN, "availabilityZones": {"us-east-1": ["use1-az1", "use1-az16"]}},
        (("lmrun:availabilityZones.us-east-1[1]", "'use1-az16': zone number 16 is outside 1..15"),),
    ),
    "az-number-zero": Case(
        {**MAIN, "availabilityZones": {"us-east-1": ["use1-az0"]}},
        (("lmrun:availabilityZones.us-east-1[0]", "'use1-az0': zone number 0 is outside 1..15"),),
    ),
    "empty-az-list": Case(
        {**MAIN, "availabilityZones": {"us-east-1": []}},
        (("lmrun:availabilityZones.us-east-1", "needs at least one AZ id"),),
    ),
    "azs-not-a-mapping": Case(
        {**MAIN, "availabilityZones": ["use1-az1"]},
        (("lmrun:availabilityZones", "should be a mapping (key: value)"),),
    ),
    "tag-key-with-aws-prefix": Case(
        {**MAIN, "tags": {"aws:owner": "ml"}},
        (('lmrun:tags["aws:owner"]', "'aws:owner' is not a valid AWS tag key (1-128 chars, no 'aws:' prefix)"),),
    ),
    "tag-key-too-long": Case(
        {**MAIN, "tags": {"k" * 129: "v"}},
        (("lmrun:tags." + "k" * 129, "is not a valid AWS tag key"),),
    ),
    "tag-value-too-long": Case(
        {**MAIN, "tags": {"team": "x" * 257}},
        (("lmrun:tags.team", "should have at most 256 characters (got 'xxxx"),),
    ),
    "tags-not-a-mapping": Case({**MAIN, "tags": ["team=ml"]}, (("lmrun:tags", "should be a mapping"),)),
    "many-errors-at-once": Case(
        {
            **MAIN,
            "regions": ["us-east-1", "eu-west-9", "us-west-2"],
            "maxPeerings": "fifty",
            "gpuInstanceType": ["g6.xlarge"],
            "tags": {"aws:team": "ml"},
        },
        (
            ("lmrun:gpuInstanceType", "unknown key; did you mean lmrun:gpuInstanceTypes?"),
            ("lmrun:maxPeerings", "should be a whole number"),
            ("lmrun:regions[0]", "'us-east-1' is the main region"),
            ("lmrun:regions[1]", "'eu-west-9' is not an AWS region this mesh knows"),
            ('lmrun:tags["aws:team"]', "is not a valid AWS tag key"),
        ),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_config_is_refused_with_its_config_path(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.bad.yaml", case.config), capsys)

    assert code == EXIT_INVALID_CONFIG, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(case.expected), err
    assert lines == sorted(lines), "issues are reported sorted by config path"
    for path, phrase in case.expected:
        matching = [line for line in lines if line.startswith(f"{path}: ")]
        assert len(matching) == 1, f"no single line for {path} in:\n{err}"
        assert phrase in matching[0]


def test_invalid_yaml_is_refused(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text("config:\n  lmrun:mainRegion: [us-east-1\n")

    code, out, err = run_plan(project_dir, stack_file, capsys)

    assert code == EXIT_INVALID_CONFIG
    assert out == ""
    assert err.startswith(f"error: {stack_file}: not valid YAML")
    assert "Traceback" not in err


def test_missing_stack_file_is_refused(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "Pulumi.nowhere.yaml"

    code, out, err = run_plan(project_dir, stack_file, capsys)

    assert code == EXIT_INVALID_CONFIG
    assert (out, err) == ("", f"error: --config-file {stack_file}: no such file\n")


def test_stack_file_that_is_not_a_mapping_is_refused(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / "Pulumi.list.yaml"
    stack_file.write_text("- lmrun:mainRegion: us-east-1\n")

    code, _, err = run_plan(project_dir, stack_file, capsys)

    assert code == EXIT_INVALID_CONFIG
    assert err == f"error: {stack_file}: expected a mapping at the top level\n"


def test_valid_config_plans(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control: the same harness with a valid config exits 0, so the refusals above are the spec's."""
    config = {**MAIN, "regions": ["us-west-2"], "maxPeerings": 1, "images": pinned_images("us-east-1")}
    stack_file = write_stack(tmp_path / "Pulumi.ok.yaml", config)

    code, out, err = run_plan(project_dir, stack_file, capsys)

    assert (code, err) == (EXIT_OK, "")
    assert json.loads(out)["regions"] == {
        "us-east-1": {"cidr": "10.64.0.0/16", "role": "main"},
        "us-west-2": {"cidr": "10.67.0.0/16", "role": "spoke"},
    }


def test_subprocess_exits_2_without_traceback(project_dir: Path, tmp_path: Path) -> None:
    """End to end in a fresh interpreter: exit status 2, only config-path lines on stderr, nothing on stdout."""
    case = CASES["many-errors-at-once"]
    stack_file = write_stack(tmp_path / "Pulumi.bad.yaml", case.config)

    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "plan", "--config-file", str(stack_file), "--project-dir", str(project_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == EXIT_INVALID_CONFIG, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [path for path, _ in case.expected]
