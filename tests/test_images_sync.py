"""``lmrun images sync`` against moto's SSM (and botocore's Stubber): pins, file rewrite, concurrency, failures.

What moto 5.2.5 answers (checked, and relied on below): ``ssm.get_parameters`` serves the public Amazon Linux
parameters from its bundled snapshot of AWS's (``/aws/service/ami-amazon-linux-latest/...``; for
``al2023-ami-kernel-default-x86_64``: ``ami-0d27e0fb3bac4d724`` in us-east-1, ``ami-0d3d85815a9746bc5`` in
us-east-2, last modified 2026-09-30) and lists the Deep Learning AMI parameter under ``InvalidParameters``
(it has no ``/aws/service/deeplearning`` data): exactly what AWS answers in a region where an image is not
published. Tests that need a published GPU image add it to moto's answer with a botocore event hook on the
session, so the code under test still makes its real calls.
"""

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

from lmrun.aws.images import PUBLIC_IMAGES
from lmrun.cli import main
from lmrun.cli.images_sync import ImageLookupError, ImageSyncResult, read_public_images, sync_stack_images
from lmrun.spec import ConfigError
from tests.conftest import CallWatcher, moto_aws

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "images_sync_stack.yaml"
SERVER = PUBLIC_IMAGES["server"].parameter
GPU = PUBLIC_IMAGES["gpu"].parameter
AL2023 = {"us-east-1": "ami-0d27e0fb3bac4d724", "us-east-2": "ami-0d3d85815a9746bc5"}  # moto's snapshot
DLAMI = {"us-east-1": "ami-0dddddddddddddd01", "us-east-2": "ami-0dddddddddddddd02"}


@pytest.fixture
def aws() -> Iterator[None]:
    with moto_aws():
        yield


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with the real Pulumi.yaml and __main__.py and the fixture as stack ``sample``."""
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "stacks").mkdir()
    shutil.copy(FIXTURE, tmp_path / "stacks" / "Pulumi.sample.yaml")
    return tmp_path


def stack_path(project: Path) -> Path:
    return project / "stacks" / "Pulumi.sample.yaml"


class GetParametersCalls(CallWatcher):
    """Watches every GetParameters call through a session (region, names asked, thread, overlap) and plays AWS
    publishing a Deep Learning AMI in the regions of ``dlami`` (moved from moto's InvalidParameters to
    Parameters)."""

    def __init__(self, session: boto3.Session, *, dlami: dict[str, str] | None = None, delay: float = 0.0) -> None:
        super().__init__(session, "ssm.GetParameters", delay=delay)
        self.dlami = dlami or {}
        self.names: dict[str, list[str]] = {}
        session.events.register("after-call.ssm.GetParameters", self._after)

    def seen(self, region: str, params: dict[str, Any]) -> None:
        self.names[region] = list(json.loads(params["body"])["Names"])

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        region = str(context["client_region"])
        if region in self.dlami and GPU in parsed.get("InvalidParameters", []):
            parsed["InvalidParameters"].remove(GPU)
            parsed.setdefault("Parameters", []).append({"Name": GPU, "Type": "String", "Value": self.dlami[region]})


def run_sync(project: Path, session: boto3.Session, **kwargs: Any) -> tuple[ImageSyncResult, str]:
    out = io.StringIO()
    result = sync_stack_images(project, stack="sample", session=session, console=Console(file=out, width=240), **kwargs)
    return result, out.getvalue()


def published(**kwargs: Any) -> tuple[boto3.Session, GetParametersCalls]:
    session = boto3.Session(region_name="us-east-1")
    return session, GetParametersCalls(session, dlami=DLAMI, **kwargs)


def written_images(project: Path) -> Any:
    return yaml.safe_load(stack_path(project).read_text())["config"]["lmrun:images"]


def test_sync_pins_exactly_the_images_the_mesh_boots(aws: None, project: Path) -> None:
    session, calls = published()
    result, _ = run_sync(project, session)

    expected = {
        "us-east-1": {"server": AL2023["us-east-1"], "gpu": DLAMI["us-east-1"]},
        "us-east-2": {"gpu": DLAMI["us-east-2"]},
    }
    assert result.pins == expected and result.written
    assert written_images(project) == expected  # the stale eu-west-1 pin (no node there) is dropped
    assert list(written_images(project)) == ["us-east-1", "us-east-2"]  # main region first
    # One call per region, for exactly its roles' parameters; nothing asked of eu-west-1.
    assert sorted(calls.regions) == ["us-east-1", "us-east-2"]
    assert calls.names == {"us-east-1": sorted([SERVER, GPU]), "us-east-2": [GPU]}


def test_the_synced_stack_plans_with_the_pinned_images(
    aws: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session, _ = published()
    run_sync(project, session)
    code = main(["plan", "--stack", "sample", "--project-dir", str(project), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    amis = {r["name"]: r["inputs"].get("ami") or r["inputs"].get("imageId") for r in report["resources"]}
    assert amis["mesh-cluster-k3s-instance"] == AL2023["us-east-1"]
    assert amis["mesh-cluster-node-qwen-use1-lt"] == DLAMI["us-east-1"]
    assert amis["mesh-cluster-node-qwen-use2-lt"] == DLAMI["us-east-2"]
    assert all(contract["ok"] for contract in report["contracts"])


def test_comments_key_order_and_the_rest_of_the_file_survive(aws: None, project: Path) -> None:
    before = stack_path(project).read_text()
    session, _ = published()
    run_sync(project, session)
    after = stack_path(project).read_text()

    for line in before.splitlines():
        if "#" in line and "pinned 2025-01" not in line:  # that comment was on the replaced value
            assert after.count(line) == 1, line
    assert list(yaml.safe_load(after)["config"]) == list(yaml.safe_load(before)["config"])
    start, end = "  lmrun:images:\n", "  # GPU nodes:"
    outside = before[: before.index(start)] + before[before.index(end) :]
    assert after[: after.index(start)] + after[after.index(end) :] == outside
    assert after.splitlines()[-1] == "# end of the stack file"


def test_dry_run_prints_the_diff_and_writes_nothing(aws: None, project: Path) -> None:
    before = stack_path(project).read_text()
    session, _ = published()
    result, printed = run_sync(project, session, dry_run=True)

    assert result.changed and not result.written
    assert stack_path(project).read_text() == before
    for line in (
        "-      server: ami-0123456789abcdef0  # pinned 2025-01\n",
        "-    eu-west-1:\n-      gpu: ami-0123456789abcdef1\n",
        f"+      server: {AL2023['us-east-1']}\n+      gpu: {DLAMI['us-east-1']}\n",
        f"+    us-east-2:\n+      gpu: {DLAMI['us-east-2']}\n",
    ):
        assert line in printed
    assert "would write (dry run)" in printed


def test_a_second_sync_changes_nothing(aws: None, project: Path) -> None:
    session, _ = published()
    run_sync(project, session)
    synced = stack_path(project).read_text()
    again, printed = run_sync(project, session)
    assert not again.changed and not again.written and again.diff == ""
    assert stack_path(project).read_text() == synced
    assert "unchanged:" in printed


def test_regions_are_asked_concurrently_each_on_its_own_client(aws: None, project: Path) -> None:
    session, calls = published(delay=0.3)
    run_sync(project, session)
    assert calls.peak == 2, "both regions in flight at once"
    assert len(calls.threads) == 2 and all(name.startswith("images") for name in calls.threads)


def test_site_images_are_listed_with_the_command_that_finds_the_current_one(aws: None, project: Path) -> None:
    session, _ = published()
    result, printed = run_sync(project, session)
    assert [(need.path, need.pinned is not None) for need in result.site_needs] == [
        ("lmrun:sites[0].images.gateway", True),
        ("lmrun:sites[0].images.gpu", True),
    ]
    for family, project_id in (
        ("ubuntu-2404-lts-amd64", "ubuntu-os-cloud"),
        ("common-cu128-ubuntu-2204-nvidia-570", "deeplearning-platform-release"),
    ):
        assert f"gcloud compute images describe-from-family {family} --project {project_id}" in printed
    # The site pins are the operator's: the sync never touches them.
    sites = yaml.safe_load(stack_path(project).read_text())["config"]["lmrun:sites"]
    assert sites[0]["images"]["gpu"].endswith("common-cu128-ubuntu-2204-nvidia-570-v20260320")


def test_a_region_without_the_image_is_one_line_exit_1_and_nothing_written(
    aws: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto publishes no Deep Learning AMI anywhere: through the real CLI (its own boto3 session)."""
    path = stack_path(project)
    path.write_text(path.read_text().replace("      region: us-east-1\n", "      region: us-east-2\n"))
    before = path.read_text()

    code = main(["images", "sync", "--stack", "sample", "--project-dir", str(project)])

    out, err = capsys.readouterr()
    assert code == 1
    assert err == (f"error: images not synced: us-east-2: AWS publishes no {GPU} there (no gpu image in us-east-2)\n")
    assert "Traceback" not in err and out == ""
    assert path.read_text() == before


def test_every_failing_region_is_reported_at_once(aws: None, project: Path) -> None:
    session = boto3.Session(region_name="us-east-1")
    GetParametersCalls(session, dlami={"us-east-2": DLAMI["us-east-2"]})
    with pytest.raises(ImageLookupError) as raised:
        run_sync(project, session)
    assert raised.value.lines() == [
        f"error: images not synced: us-east-1: AWS publishes no {GPU} there (no gpu image in us-east-1)"
    ]


def test_a_stack_needing_only_the_server_syncs_through_the_cli(
    aws: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "stacks" / "Pulumi.hub.yaml").write_text("config:\n  lmrun:mainRegion: us-east-2\n")
    code = main(["images", "sync", "--stack", "hub", "--project-dir", str(project)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote:" in out
    written = yaml.safe_load((project / "stacks" / "Pulumi.hub.yaml").read_text())["config"]
    assert written["lmrun:images"] == {"us-east-2": {"server": AL2023["us-east-2"]}}


def test_an_invalid_stack_is_refused_before_aws_is_asked(aws: None, project: Path) -> None:
    path = stack_path(project)
    path.write_text(path.read_text().replace("      region: us-east-2\n", "      region: ap-south-1\n"))
    session = boto3.Session(region_name="us-east-1")
    calls = GetParametersCalls(session)
    with pytest.raises(ConfigError) as raised:
        run_sync(project, session)
    assert [issue.path for issue in raised.value.issues] == ["lmrun:nodes[1].region"]
    assert calls.regions == []


def test_malformed_pins_are_what_a_sync_repairs(aws: None, project: Path) -> None:
    path = stack_path(project)
    path.write_text(path.read_text().replace("ami-0123456789abcdef0", "ami-latest"))
    session, _ = published()
    result, _ = run_sync(project, session)
    assert result.pins["us-east-1"]["server"] == AL2023["us-east-1"]


# ---------------------------------------------------------------------------------------------------------
# The request itself, with botocore's Stubber


class StubbedSession:
    """Hands out one stubbed SSM client per region (what ``read_public_images`` asks a session for)."""

    def __init__(self) -> None:
        self.stubbers: dict[str, Stubber] = {}

    def stub(self, region: str) -> Stubber:
        client = botocore.session.get_session().create_client(
            "ssm", region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.stubbers[region] = Stubber(client)
        return self.stubbers[region]

    def client(self, service: str, region_name: str) -> Any:
        assert service == "ssm"
        stubber = self.stubbers[region_name]
        stubber.activate()
        return stubber.client


def test_one_get_parameters_per_region_with_the_public_parameter_names() -> None:
    session = StubbedSession()
    session.stub("eu-west-1").add_response(
        "get_parameters",
        {"Parameters": [{"Name": SERVER, "Value": "ami-0123abcd"}, {"Name": GPU, "Value": "ami-0123456789abcdef0"}]},
        {"Names": sorted([SERVER, GPU])},
    )
    found = read_public_images(session, {"eu-west-1": ["server", "gpu"]})  # type: ignore[arg-type]
    assert found == {"eu-west-1": {"server": "ami-0123abcd", "gpu": "ami-0123456789abcdef0"}}
    session.stubbers["eu-west-1"].assert_no_pending_responses()


def test_an_aws_error_or_a_value_that_is_no_ami_is_one_line_each() -> None:
    session = StubbedSession()
    session.stub("eu-west-1").add_client_error(
        "get_parameters", service_error_code="AccessDeniedException", service_message="not allowed"
    )
    session.stub("us-west-2").add_response("get_parameters", {"Parameters": [{"Name": GPU, "Value": "resolve:ssm:/x"}]})
    with pytest.raises(ImageLookupError) as raised:
        read_public_images(session, {"eu-west-1": ["server"], "us-west-2": ["gpu"]})  # type: ignore[arg-type]
    assert raised.value.lines() == [
        f"error: images not synced: eu-west-1: cannot read {SERVER}: AccessDeniedException: not allowed",
        f"error: images not synced: us-west-2: {GPU} holds 'resolve:ssm:/x', not an AMI id",
    ]
    assert raised.value.exit_code == 1
