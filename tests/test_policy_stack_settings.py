"""One source for the values the policy pack also checks (issue 12: any `lmrun:wireguard.port` other than 51820
passed the spec, then failed the plan on the mandatory `no-public-ingress` rule, which hard-coded 51820).

The plan exports the values the stack decides (`policySettings`); the offline checks and the CrossGuard pack
take them as the rules' defaults; the pack config still wins when it sets a property.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lmrun.policy.rules import RULES, build_policy, rule_config
from lmrun.policy.stack_settings import STACK_DECIDED, current_stack_settings
from tests.conftest import plan, stack_config

OPEN_UDP = {"ipProtocol": "udp", "fromPort": 51821, "toPort": 51821, "cidrIpv4": "0.0.0.0/0"}
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

CASES: dict[str, tuple[dict[str, Any], dict[str, Any] | None, list[str]]] = {
    # Before: exit 3, "udp ports 51821-51821 is open to 0.0.0.0/0; only UDP 51820 (WireGuard) may be".
    "hub-on-another-port": ({"wireguard": {"port": 51821}}, None, []),
    "the-default-port": ({}, None, []),
    # The organisation's pack config still wins over the stack.
    "pack-config-pins-the-port": (
        {"wireguard": {"port": 51821}},
        {"no-public-ingress": {"wireguardPort": 51820}},
        ["no-public-ingress"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_hub_port_comes_from_the_stack(case: tuple[dict[str, Any], dict[str, Any] | None, list[str]]) -> None:
    from lmrun.verify.checks import run_checks

    overrides, pack_config, violated = case
    report = run_checks("global", plan("global", **overrides).recording, policy_config=pack_config)
    assert sorted({v.policy for v in report.mandatory_violations}) == violated
    port = overrides.get("wireguard", {}).get("port", 51820)
    assert report.outputs["policySettings"]["wireguardPort"] == port


def test_plan_exports_what_the_stack_decides() -> None:
    settings = plan("global", maxPeerings=20).outputs["policySettings"]
    elastic = settings.pop("elasticServices")
    assert settings == {"wireguardPort": 51820, "maxPeerings": 20}
    assert elastic["controllerRegion"] == "us-east-1"
    assert [(s["name"], s["gpu"], s["gpuCount"], s["spotRegions"]) for s in elastic["services"]] == [
        ("qwen-elastic", "L4", 1, ["us-east-2", "us-west-2", "eu-west-2"])
    ]
    assert "g6.xlarge" in elastic["services"][0]["offerings"]["regions"]["eu-west-2"]
    settings["elasticServices"] = elastic
    assert set(settings) == set(STACK_DECIDED)
    for rule in RULES.values():
        decided = set(rule.defaults) & set(STACK_DECIDED)
        assert {k: v for k, v in rule_config(rule, None, settings).items() if k in decided} == {
            k: settings[k] for k in decided
        }


@contextlib.contextmanager
def config_of_the_pack(monkeypatch: pytest.MonkeyPatch, config: dict[str, str] | None) -> Iterator[None]:
    """The config Pulumi hands a policy pack (PULUMI_CONFIG; pulumi/pulumi#20570), as under `pulumi preview
    --policy-pack`, and none of what earlier plans in this process left in the runtime's config."""
    from pulumi.runtime import config as runtime_config

    if config is None:
        monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    else:
        monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    token = runtime_config.CONFIG.set({})
    current_stack_settings.cache_clear()
    try:
        yield
    finally:
        runtime_config.CONFIG.reset(token)
        current_stack_settings.cache_clear()


@pytest.fixture
def stack_in_the_pack(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with config_of_the_pack(monkeypatch, stack_config("global", wireguard={"port": 51821}).config):
        yield


def test_the_crossguard_pack_reads_the_port_from_the_stack(stack_in_the_pack: None) -> None:
    import pulumi_policy
    from pulumi_policy.proxy import unknown_checking_proxy

    assert current_stack_settings()["wireguardPort"] == 51821
    policy = build_policy(RULES["no-public-ingress"])
    options = pulumi_policy.PolicyResourceOptions(False, [], None, [], pulumi_policy.PolicyCustomTimeouts(0, 0, 0), [])
    reported: list[str] = []
    props = unknown_checking_proxy(dict(OPEN_UDP))
    args = pulumi_policy.ResourceValidationArgs(INGRESS, props, "urn:x", "x", options, None, {})
    policy.validate(args, lambda message, urn: reported.append(message))
    assert reported == []
    pinned = pulumi_policy.ResourceValidationArgs(INGRESS, props, "urn:x", "x", options, None, {"wireguardPort": 51820})
    policy.validate(pinned, lambda message, urn: reported.append(message))
    assert reported == ["rule (udp, ports 51821-51821) is open to 0.0.0.0/0; only UDP 51820 (WireGuard) may be"]


def test_a_pack_without_a_stack_keeps_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with config_of_the_pack(monkeypatch, None):
        assert current_stack_settings() == {}
        assert rule_config(RULES["no-public-ingress"], None, current_stack_settings())["wireguardPort"] == 51820
