"""``lmrun sky bind``: an elastic service's load balancer into its String parameter, checked as the K3s server
checks it (inside the main VPC of the stack's plan, a SkyServe load-balancer port), written with boto3 against
moto's SSM; SkyPilot's ``sky.serve.status`` is stubbed where the endpoint comes from it."""

from __future__ import annotations

import sys
from typing import Any

import boto3
import pytest

from lmrun.cli import main
from lmrun.verify import offline
from tests.conftest import ROOT, moto_aws, plan

SERVICE = "qwen-elastic"
PARAMETER = f"/lmrun/global/serve/{SERVICE}/endpoint"
MAIN_VPC = "10.64.0.0/16"


def _bind(*args: str) -> int:
    return main(["sky", "bind", "--project-dir", str(ROOT), "--stack", "global", *args])


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> None:
    """``global`` (its elastic service ``qwen-elastic``), planned once for every test here."""
    report = plan("global")
    assert report.outputs["regions"][report.outputs["mainRegion"]]["cidr"] == MAIN_VPC
    monkeypatch.setattr(offline, "plan_stack", lambda *args, **kwargs: report)


def _value() -> str:
    return str(boto3.client("ssm", region_name="us-east-1").get_parameter(Name=PARAMETER)["Parameter"]["Value"])


def test_bind_writes_the_endpoint_as_a_string_in_the_main_region(capsys: pytest.CaptureFixture[str]) -> None:
    """The real thing, planning included: the stack's plan decides the VPC and the parameter's name."""
    with moto_aws():
        assert _bind(SERVICE, "--endpoint", "10.64.16.40:30001") == 0
        found = boto3.client("ssm", region_name="us-east-1").get_parameter(Name=PARAMETER)["Parameter"]
        assert (found["Value"], found["Type"]) == ("10.64.16.40:30001", "String")
        assert _bind(SERVICE, "--endpoint", "10.64.17.9:30002") == 0  # a replaced controller: overwritten
        assert _value() == "10.64.17.9:30002"
    assert f"{PARAMETER} = 10.64.17.9:30002" in capsys.readouterr().out


def test_bind_asks_skypilot_without_endpoint(planned: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import sky

    asked: list[Any] = []

    def status(names: Any) -> str:
        asked.append(names)
        return "request-1"

    records = [{"name": SERVICE, "endpoint": "http://10.64.18.5:30003", "load_balancer_port": 30003}]
    monkeypatch.setattr(sky.serve, "status", status)
    monkeypatch.setattr(sky, "get", lambda request: records if request == "request-1" else None)
    with moto_aws():
        assert _bind(SERVICE) == 0
        assert _value() == "10.64.18.5:30003" and asked == [[SERVICE]]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([SERVICE, "--endpoint", "10.65.0.4:30001"], "--endpoint 10.65.0.4:30001: 10.65.0.4 is outside the main VPC"),
        ([SERVICE, "--endpoint", "10.64.0.4:30400"], "port 30400 is not one of SkyServe's load-balancer ports"),
        ([SERVICE, "--endpoint", "10.64.0.4"], "--endpoint 10.64.0.4: is not IP:PORT"),
        ([SERVICE, "--endpoint", "10.64.0.999:30001"], "'10.64.0.999' is not an IPv4 address"),
        (["qwen", "--endpoint", "10.64.0.4:30001"], "qwen: not an elastic service of stack global (its elastic "),
        (["Chat"], "SERVICE Chat: is not a service name"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_nothing_written(
    planned: None, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    with moto_aws():
        assert _bind(*args) == 2
        assert boto3.client("ssm", region_name="us-east-1").describe_parameters()["Parameters"] == []
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_endpoint_from_skypilot_is_refused_too(planned: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A public address (SkyPilot without internal IPs) would send mesh traffic over the internet: refused."""
    from lmrun.cli import sky as sky_cli

    with moto_aws(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sky_cli, "sky_serve_endpoint", lambda service: "54.210.3.9:30001")
        assert _bind(SERVICE) == 2
    err = capsys.readouterr().err
    assert f"SkyPilot's endpoint of {SERVICE} 54.210.3.9:30001: 54.210.3.9 is outside the main VPC" in err


def test_without_skypilot_the_error_says_it_is_an_extra(
    planned: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sky", None)  # `import sky` raises ImportError
    with moto_aws():
        assert _bind(SERVICE) == 2
    err = capsys.readouterr().err
    assert "needs SkyPilot, a dev/test extra of lmrun-mesh (not a runtime dependency)" in err
    assert "--endpoint IP:PORT" in err
