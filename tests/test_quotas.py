"""GPU vCPU quotas: boto3 Service Quotas through botocore's Stubber (moto does not emulate them), the pure
verdicts (enough, short, region missing / unreadable) and ``lmrun quotas`` exit codes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from rich.console import Console

from lmrun import cli
from lmrun.aws import quotas
from lmrun.aws.quotas import ON_DEMAND_G_VT, SPOT_G_VT, QuotaReading, compare, overall, read_quotas, vcpu_needs
from lmrun.cli.quotas_view import check_stack_quotas, print_quotas
from lmrun.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent


def _client(region: str) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        "service-quotas", region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def _quota(code: str, value: float) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": quotas.QUOTA_NAMES[code], "Value": value}}


def _params(code: str) -> dict[str, str]:
    return {"ServiceCode": "ec2", "QuotaCode": code}


class StubbedRegions:
    """One stubbed service-quotas client per region; every queued call must be consumed."""

    def __init__(self) -> None:
        self.stubbers: dict[str, Stubber] = {}
        self.clients: dict[str, Any] = {}

    def region(self, region: str) -> Stubber:
        if region not in self.stubbers:
            self.clients[region] = _client(region)
            self.stubbers[region] = Stubber(self.clients[region])
            self.stubbers[region].activate()
        return self.stubbers[region]

    def applied(self, region: str, code: str, value: float) -> None:
        self.region(region).add_response("get_service_quota", _quota(code, value), _params(code))

    def default_only(self, region: str, code: str, value: float) -> None:
        stubber = self.region(region)
        stubber.add_client_error(
            "get_service_quota", "NoSuchResourceException", "no applied quota", 404, expected_params=_params(code)
        )
        stubber.add_response("get_aws_default_service_quota", _quota(code, value), _params(code))

    def no_such_quota(self, region: str, code: str) -> None:
        stubber = self.region(region)
        for method in ("get_service_quota", "get_aws_default_service_quota"):
            stubber.add_client_error(
                method, "NoSuchResourceException", "quota not found", 404, expected_params=_params(code)
            )

    def factory(self, region: str) -> Any:
        if region not in self.clients:
            raise ValueError(f"unexpected region {region}")
        return self.clients[region]

    def assert_consumed(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


@pytest.fixture
def stubbed() -> Iterator[StubbedRegions]:
    regions = StubbedRegions()
    yield regions
    regions.assert_consumed()


def test_read_applied_and_default_values(stubbed: StubbedRegions) -> None:
    stubbed.applied("us-east-2", ON_DEMAND_G_VT, 64.0)
    stubbed.default_only("us-east-2", SPOT_G_VT, 8.0)
    readings = read_quotas({"us-east-2": (1, 1)}, client_factory=stubbed.factory)
    assert readings["us-east-2"][ON_DEMAND_G_VT] == QuotaReading("us-east-2", ON_DEMAND_G_VT, 64.0, "applied")
    assert readings["us-east-2"][SPOT_G_VT] == QuotaReading("us-east-2", SPOT_G_VT, 8.0, "default")


def test_enough(stubbed: StubbedRegions) -> None:
    stubbed.applied("us-east-2", ON_DEMAND_G_VT, 64.0)
    stubbed.applied("us-east-2", SPOT_G_VT, 32.0)
    verdicts = compare(needs := {"us-east-2": (48, 32)}, read_quotas(needs, client_factory=stubbed.factory))
    assert [(v.market, v.status, v.shortfall) for v in verdicts] == [("on-demand", "enough", 0), ("spot", "enough", 0)]
    assert overall(verdicts) == "enough"


def test_short_by_n_with_the_increase_link(stubbed: StubbedRegions) -> None:
    stubbed.applied("eu-west-1", ON_DEMAND_G_VT, 0.0)
    stubbed.default_only("eu-west-1", SPOT_G_VT, 4.0)
    verdicts = compare(needs := {"eu-west-1": (8, 4)}, read_quotas(needs, client_factory=stubbed.factory))
    on_demand, spot = verdicts
    assert (on_demand.status, on_demand.shortfall, on_demand.summary) == ("short", 8, "short by 8 vCPUs")
    assert on_demand.request_url == (
        "https://eu-west-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-DB2E81BA"
    )
    assert spot.status == "enough"
    assert overall(verdicts) == "short"


def test_unreadable_quota_and_missing_region(stubbed: StubbedRegions) -> None:
    stubbed.region("ap-south-1").add_client_error(
        "get_service_quota", "AccessDeniedException", "not allowed", 400, expected_params=_params(ON_DEMAND_G_VT)
    )
    stubbed.no_such_quota("ap-south-1", SPOT_G_VT)
    readings = read_quotas({"ap-south-1": (4, 4)}, client_factory=stubbed.factory)
    # sa-east-1 needs spot vCPUs but was never read: the verdict says so instead of guessing.
    verdicts = compare({"ap-south-1": (4, 4), "sa-east-1": (0, 8)}, readings)
    assert [(v.region, v.market, v.status) for v in verdicts] == [
        ("ap-south-1", "on-demand", "unreadable"),
        ("ap-south-1", "spot", "unreadable"),
        ("sa-east-1", "spot", "missing"),
    ]
    assert "AccessDeniedException" in verdicts[0].summary
    assert "NoSuchResourceException" in verdicts[1].summary
    assert overall(verdicts) == "unreadable"


def test_zero_needs_are_not_judged() -> None:
    assert compare({"us-east-1": (0, 0)}, {}) == []
    assert overall([]) == "enough"


NODES = textwrap.dedent(
    """\
    config:
      lmrun:mainRegion: us-east-1
      lmrun:regions: [us-east-2, eu-west-1]
      lmrun:nodes:
        - name: qwen-a
          region: us-east-2
          gpu: L4
          model: Qwen/Qwen2.5-7B-Instruct
          modelRevision: a09a35458c702b33eeacc393d103063234e8bc28
          nodePort: 30080
        - name: qwen-b
          region: us-east-2
          gpu: L4
          gpuCount: 4
          model: Qwen/Qwen2.5-7B-Instruct
          modelRevision: a09a35458c702b33eeacc393d103063234e8bc28
          nodePort: 30081
        - name: phi
          region: eu-west-1
          gpu: A10G
          model: microsoft/Phi-3.5-mini-instruct
          modelRevision: 2fe192450127e6a83f7441aef6e3ca586c338b77
          useSpot: false
          nodePort: 30082
    """
)


def _stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.quota.yaml"
    path.write_text(NODES)
    return path


def test_vcpu_needs_from_the_plan_instance_types(tmp_path: Path) -> None:
    import yaml

    raw = {k.removeprefix("lmrun:"): v for k, v in yaml.safe_load(NODES)["config"].items()}
    needs = vcpu_needs(parse_spec(raw))
    # Spot in us-east-2: g6.xlarge (4 vCPUs) may also run as g6.2xlarge (8), g6.12xlarge (48) as g6.24xlarge (96):
    # each spot group may launch its largest alternative. g5.xlarge (4) on-demand in eu-west-1 has none.
    assert needs == {"eu-west-1": (4, 0), "us-east-2": (0, 8 + 96)}


def test_report_table_names_verdict_and_link(tmp_path: Path, stubbed: StubbedRegions) -> None:
    # Only the quotas with a need are read: eu-west-1 on-demand, us-east-2 spot.
    stubbed.applied("eu-west-1", ON_DEMAND_G_VT, 64.0)
    stubbed.default_only("us-east-2", SPOT_G_VT, 16.0)
    report = check_stack_quotas(ROOT, config_file=_stack_file(tmp_path), client_factory=stubbed.factory)
    console = Console(record=True, width=200)
    print_quotas(report, console)
    text = console.export_text()
    assert report.status == "short"
    assert "short by 88 vCPUs" in text  # 104 (largest alternatives) - 16
    assert "Verdict: short" in text
    assert "https://us-east-2.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-3819A6DF" in text


def _patch_clients(monkeypatch: pytest.MonkeyPatch, stubbed: StubbedRegions) -> None:
    monkeypatch.setattr(quotas, "default_client_factory", stubbed.factory)


def test_cli_exit_code_4_when_short(
    tmp_path: Path, stubbed: StubbedRegions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stubbed.applied("eu-west-1", ON_DEMAND_G_VT, 0.0)
    stubbed.applied("us-east-2", SPOT_G_VT, 64.0)
    _patch_clients(monkeypatch, stubbed)
    code = cli.main(["quotas", "--project-dir", str(ROOT), "--config-file", str(_stack_file(tmp_path))])
    assert code == 4
    assert "Verdict: short" in capsys.readouterr().out


def test_cli_exit_code_0_when_enough(
    tmp_path: Path, stubbed: StubbedRegions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stubbed.applied("eu-west-1", ON_DEMAND_G_VT, 8.0)
    stubbed.applied("us-east-2", SPOT_G_VT, 104.0)
    _patch_clients(monkeypatch, stubbed)
    code = cli.main(["quotas", "--project-dir", str(ROOT), "--config-file", str(_stack_file(tmp_path))])
    assert code == 0
    assert "Verdict: enough" in capsys.readouterr().out


def test_cli_global_stack_with_a_missing_quota(
    stubbed: StubbedRegions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stubbed.applied("eu-west-1", ON_DEMAND_G_VT, 64.0)
    stubbed.applied("us-east-2", SPOT_G_VT, 64.0)
    stubbed.no_such_quota("us-west-2", SPOT_G_VT)
    _patch_clients(monkeypatch, stubbed)
    code = cli.main(["quotas", "--project-dir", str(ROOT), "--stack", "global"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Verdict: unknown" in out and "us-west-2" in out
