"""``lmrun regions sync`` against moto's EC2: spoke choice, AZs, file rewrite, concurrency, failures.

What moto 5.2.5 answers (checked, and relied on below): ``describe_instance_type_offerings`` with
``LocationType='availability-zone-id'`` returns real per-AZ-id data for ~30 regions (e.g. g6.xlarge in
us-east-1 use1-az1/2/4/5/6, nowhere in eu-west-1 or us-west-1; g5.xlarge in rogue ap-east-1), and
``describe_regions(AllRegions=True)`` reports the opt-in regions as ``not-opted-in`` (me-central-1,
ap-east-1, ...) and the rest as ``opt-in-not-required``. Opt-in status and per-region failures that moto
cannot express are injected with botocore event hooks on the session, so the code under test still
makes its real calls. Candidate regions are restricted where the full sweep is not the point (moto
builds a backend per region, ~0.1 s each).
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from rich.console import Console

from lmrun.aws.region.catalog import REGIONS
from lmrun.aws.region.offerings import query_region
from lmrun.aws.region.selection import plannable_az_ids, select_spoke_regions
from lmrun.cli import main
from lmrun.cli.regions_sync import SyncResult, sync_stack_regions
from lmrun.plan.mesh import plan_mesh
from lmrun.spec import ConfigError, spec_from_config
from lmrun.spec.stackfile import load_stack_config
from tests.conftest import CallWatcher, moto_aws

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "regions_sync_stack.yaml"

# Spoke candidates for most tests: g6.xlarge is offered in the first three (moto data), not the last two.
OFFERING = ["eu-west-2", "us-east-2", "us-west-2"]
NOT_OFFERING = ["eu-west-1", "us-west-1"]
CANDIDATES = OFFERING + NOT_OFFERING

EXPECTED_AZS = {
    "us-east-1": ["use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"],
    "eu-west-2": ["euw2-az1", "euw2-az2", "euw2-az3"],
    "us-east-2": ["use2-az1", "use2-az2", "use2-az3"],
    "us-west-2": ["usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"],
}


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    """Fake credentials (never a real profile) and moto's EC2, shared by the module's tests.

    One mock for the module: the tests only read EC2, and moto builds each region's backend once
    instead of once per test (~0.2 s a region).
    """
    with moto_aws():
        yield


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with the real Pulumi.yaml and the annotated fixture as stack ``sample``."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    shutil.copy(FIXTURE, tmp_path / "stacks" / "Pulumi.sample.yaml")
    return tmp_path


def stack_path(project: Path) -> Path:
    return project / "stacks" / "Pulumi.sample.yaml"


def set_config(project: Path, key: str, value: str) -> None:
    """Rewrite one scalar line of the fixture (keeps the test's stack file otherwise identical)."""
    path = stack_path(project)
    lines = [f"  {key}: {value}" if line.startswith(f"  {key}:") else line for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def run_sync(project: Path, session: boto3.Session | None = None, **kwargs: Any) -> SyncResult:
    kwargs.setdefault("regions", CANDIDATES)
    return sync_stack_regions(
        project,
        stack="sample",
        session=session or boto3.Session(region_name="us-east-1"),
        show_progress=False,
        console=Console(file=io.StringIO(), width=200),
        **kwargs,
    )


def written_config(project: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(stack_path(project).read_text())["config"]
    return config


class OfferingCalls(CallWatcher):
    """Watches every DescribeInstanceTypeOfferings call made through a session (region, thread, overlap).

    ``fail`` maps a region to an EC2 error code it answers with instead of moto's data.
    """

    def __init__(self, session: boto3.Session, *, delay: float = 0.0, fail: dict[str, str] | None = None) -> None:
        super().__init__(session, "ec2.DescribeInstanceTypeOfferings", delay=delay)
        self.fail = fail or {}

    def answer(self, region: str) -> tuple[AWSResponse, dict[str, Any]] | None:
        if region in self.fail:
            code = self.fail[region]
            error = {"Error": {"Code": code, "Message": f"{region} refused the request"}, "ResponseMetadata": {}}
            return AWSResponse(f"https://ec2.{region}.amazonaws.com/", 401, {}, None), error
        return None


def set_opt_in(session: boto3.Session, statuses: dict[str, str]) -> None:
    """Make describe_regions report these opt-in statuses (moto has no API to opt an account in)."""

    def after(parsed: dict[str, Any], **_: Any) -> None:
        for entry in parsed.get("Regions", []):
            if entry["RegionName"] in statuses:
                entry["OptInStatus"] = statuses[entry["RegionName"]]

    session.events.register("after-call.ec2.DescribeRegions", after)


# ---------------------------------------------------------------------------------------------------------
# Choosing spokes


def test_regions_offering_the_types_become_spokes_and_the_main_region_does_not(aws: None, project: Path) -> None:
    result = run_sync(project)

    assert result.spokes == tuple(OFFERING)
    assert "us-east-1" not in result.spokes
    assert {r: list(z) for r, z in result.availability_zones.items()} == EXPECTED_AZS
    assert result.not_chosen == {r: "offers none of the wanted types" for r in NOT_OFFERING}
    assert result.report.offerings["us-east-1"].instance_types == ("g6.xlarge",)
    config = written_config(project)
    assert config["lmrun:regions"] == OFFERING
    assert config["lmrun:availabilityZones"] == EXPECTED_AZS
    assert result.written and result.changed


def test_default_sweep_covers_the_catalog_and_drops_rogue_and_not_opted_in_regions(aws: None, project: Path) -> None:
    session = boto3.Session(region_name="us-east-1")
    calls = OfferingCalls(session)
    result = run_sync(project, session, regions=None)

    # moto: g6.xlarge in these enabled regions (me-central-1, ap-south-2, eu-south-2, eu-central-2 and
    # ap-southeast-5 offer it too but are not opted in).
    assert result.spokes == (
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-central-1",
        "eu-north-1",
        "eu-west-2",
        "eu-west-3",
        "sa-east-1",
        "us-east-2",
        "us-west-2",
    )
    for region in ("me-central-1", "ap-south-2", "eu-south-2", "eu-central-2", "ap-southeast-5"):
        assert result.not_chosen[region] == "not enabled for this account (opt-in status 'not-opted-in')"
    assert result.not_chosen["ap-east-1"].startswith("rogue: ")
    # Disabled and rogue regions are not even asked; every enabled catalog region is asked exactly once.
    enabled = {r for r in REGIONS if result.report.opt_in_status.get(r) == "opt-in-not-required"} - {"ap-east-1"}
    assert sorted(calls.regions) == sorted(enabled)
    assert set(result.not_chosen) | set(result.spokes) | {"us-east-1"} == set(REGIONS)


def test_not_opted_in_region_is_dropped_and_opting_in_adds_it(aws: None, project: Path) -> None:
    # me-central-1 offers g6.xlarge in moto but is 'not-opted-in'.
    dropped = run_sync(project, regions=["me-central-1", "us-east-2"], dry_run=True)
    assert dropped.spokes == ("us-east-2",)
    assert "not-opted-in" in dropped.not_chosen["me-central-1"]

    session = boto3.Session(region_name="us-east-1")
    set_opt_in(session, {"me-central-1": "opted-in"})
    added = run_sync(project, session, regions=["me-central-1", "us-east-2"], dry_run=True)
    assert added.spokes == ("me-central-1", "us-east-2")
    assert added.availability_zones["me-central-1"] == ("mec1-az1", "mec1-az2")


def test_rogue_region_is_dropped_even_when_enabled_and_offering(aws: None, project: Path) -> None:
    # ap-east-1 offers g5.xlarge in moto; opt it in so only the rogue rule can keep it out.
    path = stack_path(project)
    path.write_text(path.read_text().replace("    - g6.xlarge\n", "    - g5.xlarge\n"))
    session = boto3.Session(region_name="us-east-1")
    set_opt_in(session, {"ap-east-1": "opted-in"})
    calls = OfferingCalls(session)
    result = run_sync(project, session, regions=["ap-east-1", "eu-west-1"])

    assert result.spokes == ("eu-west-1",)
    assert result.not_chosen["ap-east-1"].startswith("rogue: Hong Kong")
    assert "ap-east-1" not in calls.regions
    assert "ap-east-1" not in written_config(project)["lmrun:availabilityZones"]


def test_select_spoke_regions_pure_rules() -> None:
    offerings = {
        "us-east-1": ["g6.xlarge"],  # main
        "ap-east-1": ["g6.xlarge"],  # rogue
        "me-central-1": ["g6.xlarge"],  # not enabled
        "eu-west-1": [],  # offers nothing wanted
        "xx-nowhere-1": ["g6.xlarge"],  # not in the catalog: no CIDR
        "us-west-2": ["g6.xlarge"],
        "eu-west-2": ["g6.2xlarge"],
    }
    enabled = set(offerings) - {"me-central-1"}
    assert select_spoke_regions(offerings, main_region="us-east-1", enabled_regions=enabled) == [
        "eu-west-2",
        "us-west-2",
    ]


def test_plannable_az_ids_refuses_foreign_and_out_of_plan_ids() -> None:
    kept, rejected = plannable_az_ids("us-east-1", ["use1-az4", "use1-az1", "use1-az1", "euw1-az1", "use1-az16"])
    assert kept == ["use1-az1", "use1-az4"]
    assert rejected == ["euw1-az1", "use1-az16"]


def test_main_region_offering_nothing_keeps_its_catalog_azs(aws: None, project: Path) -> None:
    set_config(project, "lmrun:mainRegion", "us-west-1")  # no g6.xlarge in moto's us-west-1
    result = run_sync(project, regions=["us-east-2"])

    assert result.availability_zones["us-west-1"] == REGIONS["us-west-1"].az_ids == ("usw1-az1", "usw1-az3")
    assert result.spokes == ("us-east-2",)
    assert any("catalog AZs" in note for note in result.notes)


# ---------------------------------------------------------------------------------------------------------
# The stack file


def _without_keys(text: str, keys: tuple[str, ...]) -> str:
    """The text minus each ``  KEY:`` line and the deeper-indented lines of its block."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if any(line.startswith(f"  {key}:") for key in keys):
            skipping = True
            continue
        if skipping and line.startswith("    "):
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept)


def test_comments_and_key_order_survive_the_rewrite(aws: None, project: Path) -> None:
    before = stack_path(project).read_text()
    run_sync(project)
    after = stack_path(project).read_text()

    owned = ("lmrun:regions", "lmrun:availabilityZones", "lmrun:offerings")
    assert after != before
    assert _without_keys(after, owned) == _without_keys(before, owned)
    # Every comment line of the original is still there, once.
    for line in before.splitlines():
        if "#" in line:
            assert after.count(line) == 1, line
    # Updated in place, missing key appended; the closing comment stays last.
    assert list(written_config(project)) == [
        "pulumi:disable-default-providers",
        "lmrun:mainRegion",
        "lmrun:gpuInstanceTypes",
        "lmrun:maxPeerings",
        "lmrun:regions",
        "lmrun:tags",
        "lmrun:images",
        "lmrun:availabilityZones",
        "lmrun:offerings",
    ]
    assert after.splitlines()[-1] == "# end of the stack file"
    assert "  lmrun:regions:\n    - eu-west-2\n    - us-east-2\n    - us-west-2\n  # Tags put" in after
    assert "    us-east-1:\n      - use1-az1\n" in after  # the file's own indentation for new blocks


def test_written_file_plans(aws: None, project: Path) -> None:
    run_sync(project)
    stack = load_stack_config(project, stack="sample")
    spec = spec_from_config(stack.config)

    assert spec.regions == tuple(OFFERING)
    assert {r: list(z) for r, z in spec.availability_zones.items()} == EXPECTED_AZS
    mesh = plan_mesh(spec, mesh="sample")
    assert mesh.main.name == "us-east-1"
    assert [spoke.name for spoke in mesh.spokes] == OFFERING
    assert {name: [s.az_id for s in region.subnets] for name, region in mesh.regions.items()} == EXPECTED_AZS


def test_second_sync_and_dry_run_leave_the_file_alone(aws: None, project: Path) -> None:
    dry = run_sync(project, dry_run=True)
    assert dry.changed and not dry.written
    assert stack_path(project).read_text() == FIXTURE.read_text()

    run_sync(project)
    synced = stack_path(project).read_text()
    again = run_sync(project)
    assert not again.changed and not again.written
    assert stack_path(project).read_text() == synced


def test_result_that_would_not_plan_is_not_written(aws: None, project: Path) -> None:
    set_config(project, "lmrun:maxPeerings", "2")  # three spokes need three peerings
    before = stack_path(project).read_text()
    with pytest.raises(ConfigError) as caught:
        run_sync(project)
    assert any(issue.path == "lmrun:regions" and "maxPeerings=2" in issue.message for issue in caught.value.issues)
    assert stack_path(project).read_text() == before


# ---------------------------------------------------------------------------------------------------------
# Concurrency, pagination, failures


def test_regions_are_queried_concurrently_on_a_bounded_pool(aws: None, project: Path) -> None:
    session = boto3.Session(region_name="us-east-1")
    calls = OfferingCalls(session, delay=0.25)
    result = run_sync(project, session, max_workers=3)

    assert sorted(calls.regions) == sorted([*CANDIDATES, "us-east-1"])  # six regions
    assert calls.peak == 3  # bounded by max_workers, and more than one at once
    assert result.report.max_concurrency == 3
    assert len(calls.threads) == 3 and all(name.startswith("offerings") for name in calls.threads)
    # No wall-clock bound: under a loaded CI machine it flakes; the observed peak of 3 in-flight calls
    # (each sleeping 0.25 s inside the call) is the proof of concurrency.
    assert result.spokes == tuple(OFFERING)


def test_query_region_follows_every_page() -> None:
    client = boto3.client("ec2", region_name="eu-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    expected = {"LocationType": "availability-zone-id", "Filters": [{"Name": "instance-type", "Values": ["g6.xlarge"]}]}
    with Stubber(client) as stub:
        stub.add_response(
            "describe_instance_type_offerings",
            {
                "InstanceTypeOfferings": [{"InstanceType": "g6.xlarge", "Location": "euw2-az3"}],
                "NextToken": "page-2",
            },
            expected,
        )
        stub.add_response(
            "describe_instance_type_offerings",
            {"InstanceTypeOfferings": [{"InstanceType": "g6.xlarge", "Location": "euw2-az1"}]},
            {**expected, "NextToken": "page-2"},
        )
        offers = query_region(client, "eu-west-2", ["g6.xlarge"])
        stub.assert_no_pending_responses()
    assert offers.offered == {"g6.xlarge": ("euw2-az1", "euw2-az3")}


def test_a_failing_region_is_skipped_with_a_warning(aws: None, project: Path, caplog: pytest.LogCaptureFixture) -> None:
    session = boto3.Session(region_name="us-east-1")
    OfferingCalls(session, fail={"us-west-2": "AuthFailure", "eu-west-1": "UnauthorizedOperation"})
    with caplog.at_level(logging.WARNING, logger="lmrun.aws.region.offerings"):
        result = run_sync(project, session)

    assert result.spokes == ("eu-west-2", "us-east-2")
    assert result.not_chosen["us-west-2"] == "query failed: AuthFailure: us-west-2 refused the request"
    assert result.not_chosen["eu-west-1"].startswith("query failed: UnauthorizedOperation")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("us-west-2" in m and "AuthFailure" in m for m in warned)
    assert any("eu-west-1" in m and "UnauthorizedOperation" in m for m in warned)
    assert written_config(project)["lmrun:regions"] == ["eu-west-2", "us-east-2"]


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_cli_dry_run_exits_0_and_writes_nothing(aws: None, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = stack_path(project).read_text()
    code = main(
        [
            "regions",
            "sync",
            "--project-dir",
            str(project),
            "--config-file",
            str(stack_path(project)),
            "--region",
            "us-east-2",
            "--region",
            "eu-west-1",
            "--dry-run",
            "--no-progress",
            "--max-workers",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert stack_path(project).read_text() == before
    assert "us-east-2" in out and "spoke" in out and "would write (dry run)" in out
    assert "eu-west-1" in out and "offers none of the wanted types" in out


def test_cli_bad_main_region_exits_2_with_the_config_path(
    aws: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_config(project, "lmrun:mainRegion", "eu-west-9")
    code = main(["regions", "sync", "--project-dir", str(project), "--stack", "sample", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lmrun:mainRegion: 'eu-west-9' is not an AWS region this mesh knows")


def test_offerings_are_asked_for_every_gpu_the_config_places() -> None:
    """Nodes, groups, GPU pools and elastic services each decide where their GPU can run from the recorded
    offerings: `regions sync` asks for the instance types of each (an unknown shape adds nothing)."""
    from lmrun.cli.regions_sync import placeable_types

    node = {
        "name": "a",
        "region": "us-east-2",
        "gpu": "A10G",
        "model": "m/x",
        "modelRevision": "0" * 40,
        "nodePort": 30100,
    }
    pool = {"name": "p", "gpu": "L4", "gpuCount": 4, "policy": "priority", "replicas": 1, "regions": ["us-east-1"]}
    elastic = {"name": "e", "gpu": "L40S", "model": "m/x", "modelRevision": "0" * 40, "minReplicas": 1,
               "maxReplicas": 2, "targetQpsPerReplica": 1, "policy": "priority", "regions": ["us-east-2"],
               "nodePort": 30101}  # fmt: skip
    assert placeable_types({"nodes": [node]}) == {"g5.xlarge", "g5.2xlarge", "g5.4xlarge", "g5.8xlarge", "g5.16xlarge"}
    assert "g6.12xlarge" in placeable_types({"gpuPool": [pool]}) and "g6.xlarge" not in placeable_types(
        {"gpuPool": [pool]}
    )
    assert placeable_types({"elasticServices": [elastic]}) and all(
        t.startswith("g6e.") for t in placeable_types({"elasticServices": [elastic]})
    )
    assert placeable_types({"gpuPool": [{**pool, "gpu": "NOPE"}]}) == set()
