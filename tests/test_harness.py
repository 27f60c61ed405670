"""The recording mock engine that tests and users rely on: isolation between runs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pytest

from lmrun.mock_engine import RecordingMocks, UnmockedCallError, run_program


def _vpc_with_lookup() -> None:
    provider = aws.Provider("p", region="us-east-1")
    ami = aws.ssm.get_parameter_output(name="/aws/service/x", opts=pulumi.InvokeOutputOptions(provider=provider))
    aws.ec2.Vpc("v", cidr_block="10.64.0.0/16", tags={"ami": ami.value}, opts=pulumi.ResourceOptions(provider=provider))


def _plain_vpc() -> None:
    provider = aws.Provider("p", region="us-east-1")
    aws.ec2.Vpc("v", cidr_block="10.64.0.0/16", opts=pulumi.ResourceOptions(provider=provider))


def test_a_failed_run_does_not_leak_into_the_next() -> None:
    with pytest.raises(UnmockedCallError, match="aws:ssm/getParameter:getParameter"):
        run_program(_vpc_with_lookup, mocks=RecordingMocks(), preview=False)
    recording = run_program(_plain_vpc, mocks=RecordingMocks(), preview=False)
    assert [r.name for r in recording.custom] == ["v"]


def test_runs_do_not_share_resources_or_config() -> None:
    first = run_program(_plain_vpc, config={"lmrun:mainRegion": "us-east-1"})
    second = run_program(lambda: pulumi.export("region", pulumi.Config("lmrun").get("mainRegion")))
    assert [r.name for r in first.custom] == ["v"]
    assert second.custom == [] and second.outputs["region"] is None
