"""The static reachability check over the recorded resources (verify/reachability.py) and its cross-check
with the topology model in the offline plan: exact verdicts, and the reason names the first blocking hop."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from lmrun.cli import main
from lmrun.mock_engine import Recording
from lmrun.verify import offline
from lmrun.verify.offline import PlanReport, ReachabilityMismatchError
from lmrun.verify.reachability import Fabric, PathVerdict, check_path, reachability_from_resources
from tests.conftest import ROOT, plan

MAIN = "us-east-1"


def _verdicts(recording: Recording) -> dict[tuple[str, str], PathVerdict]:
    return {(v.source, v.target): v for v in reachability_from_resources(recording, recording.outputs)}


def _failing(recording: Recording) -> dict[tuple[str, str], str]:
    return {key: v.reason for key, v in _verdicts(recording).items() if not v.ok}


def _without(recording: Recording, *names: str) -> Recording:
    kept = [r for r in recording.resources if r.name not in names]
    assert len(kept) == len(recording.resources) - len(names), "every resource to delete exists"
    return replace(recording, resources=kept)


def _with_copy(recording: Recording, name: str, new_name: str, **inputs: Any) -> Recording:
    """The recording plus a copy of resource ``name`` under ``new_name`` with some inputs changed."""
    original = recording.named(name)
    copy = replace(
        original,
        name=new_name,
        urn=original.urn.rsplit("::", 1)[0] + f"::{new_name}",
        inputs={**original.inputs, **inputs},
    )
    return replace(recording, resources=[*recording.resources, copy])


def _with_inputs(recording: Recording, name: str, **inputs: Any) -> Recording:
    """The recording with some inputs of resource ``name`` changed (inline routes or rules, say)."""
    original = recording.named(name)
    changed = replace(original, inputs={**original.inputs, **inputs})
    return replace(recording, resources=[changed if r is original else r for r in recording.resources])


def _with_spoke_route(recording: Recording, spoke: str, destination: str) -> Recording:
    """A spoke whose route table (inline routes) also sends ``destination`` into its peering."""
    table = recording.named(f"mesh-{spoke}-rt")
    extra = {"cidrBlock": destination, "vpcPeeringConnectionId": f"mesh-peering-{spoke}-id"}
    return _with_inputs(recording, table.name, routes=[*table.inputs["routes"], extra])


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_every_implied_path_is_ok_by_the_model_and_by_the_resources(stack: str, preview: bool) -> None:
    document = plan(stack, preview=preview).to_json()
    paths = document["reachability"]
    assert paths and len(paths) == len(plan(stack, preview=preview).recording.outputs["reachability"])
    for path in paths:
        assert (path["ok"], path["resources_ok"]) == (True, True), path
        assert "both ways" in path["resources_reason"]
    by_pair = {(p["from"], p["to"]): p for p in paths}
    if stack == "dev":
        assert set(by_pair) == {(MAIN, "qwen-dev")}
        return
    sources = {p["from"] for p in paths if p["to"] == "k3s-api"}
    assert {"us-east-2", "eu-west-1", "gcp-usc1", "lab-onprem"} <= sources and MAIN not in sources
    assert "peering mesh-peering-eu-west-1" in by_pair[(MAIN, "phi-euw1")]["resources_reason"]
    assert "WireGuard mesh-sites-hub-instance -> gcp-usc1" in by_pair[(MAIN, "qwen-gcp")]["resources_reason"]
    assert "WireGuard lab-onprem -> hub" in by_pair[("lab-onprem", "k3s-api")]["resources_reason"]


def test_without_the_main_to_spoke_peering_route_main_cannot_reach_the_spokes_services() -> None:
    recording = _without(plan("global").recording, "mesh-peering-us-east-2-route-main")
    failing = _failing(recording)
    # qwen has a replica in us-east-2; the spoke's K3s traffic loses its replies.
    assert set(failing) == {(MAIN, "qwen"), ("us-east-2", "k3s-api")}
    reason = failing[(MAIN, "qwen")]
    assert "-> node qwen-use2 in mesh-us-east-2-use2-" in reason
    assert "route table mesh-us-east-1-rt has no route for 10.65." in reason
    assert "peering mesh-peering-us-east-2 to mesh-us-east-2-vpc (10.65.0.0/16) would carry it" in reason
    assert "no route sends it there" in reason
    assert "the reply route table mesh-us-east-1-rt has no route for 10.65." in failing[("us-east-2", "k3s-api")]


def test_without_the_spokes_inline_route_to_main_the_spoke_loses_the_main_region() -> None:
    """A spoke's routes are inline in its adopted main route table (no subnet association): the walker reads
    that table for every subnet of the spoke, and without its entry for the main CIDR nothing flows."""
    recording = plan("global").recording
    table = recording.named("mesh-us-east-2-rt")
    assert table.type == "aws:ec2/defaultRouteTable:DefaultRouteTable"
    kept = [route for route in table.inputs["routes"] if route["cidrBlock"] != "10.64.0.0/16"]
    assert len(kept) == len(table.inputs["routes"]) - 1
    failing = _failing(_with_inputs(recording, table.name, routes=kept))
    assert set(failing) == {(MAIN, "qwen"), ("us-east-2", "k3s-api")}
    assert "route table mesh-us-east-2-rt has no route for 10.64.16.10/32" in failing[("us-east-2", "k3s-api")]
    assert "the reply route table mesh-us-east-2-rt has no route for 10.64." in failing[(MAIN, "qwen")]


def test_without_the_hubs_route_for_a_site_main_cannot_reach_it() -> None:
    recording = _without(plan("global").recording, "mesh-sites-hub-route-gcp-usc1")
    failing = _failing(recording)
    assert set(failing) == {(MAIN, "qwen-gcp"), ("gcp-usc1", "k3s-api")}
    reason = failing[(MAIN, "qwen-gcp")]
    assert "-> node l4-gcp: route table mesh-us-east-1-rt has no route for 10.128.0.0/20" in reason
    assert "the WireGuard hub mesh-sites-hub-instance (peer gcp-usc1) would carry it" in reason
    assert (
        ": the reply route table mesh-us-east-1-rt has no route for 10.128.0.0/20" in failing[("gcp-usc1", "k3s-api")]
    )

    external = _failing(_without(plan("global").recording, "mesh-sites-hub-route-lab-onprem"))
    assert set(external) == {("lab-onprem", "k3s-api")}
    assert (
        "the reply route table mesh-us-east-1-rt has no route for 10.129.0.0/24" in external[("lab-onprem", "k3s-api")]
    )


def test_without_the_spokes_security_group_rule_main_cannot_reach_its_services() -> None:
    recording = plan("global").recording
    group = recording.named("mesh-us-east-2-sg")
    kept = [rule for rule in group.inputs["ingress"] if rule["cidrBlocks"] != ["10.64.0.0/16"]]
    assert len(kept) == len(group.inputs["ingress"]) - 1, "the spoke's inline rule for the main region exists"
    recording = _with_inputs(recording, group.name, ingress=kept)
    verdicts = _verdicts(recording)
    failing = {key for key, v in verdicts.items() if not v.ok}
    assert failing == {(MAIN, "qwen")}
    reason = verdicts[(MAIN, "qwen")].reason
    assert "no ingress rule of the security groups of node qwen-use2 in mesh-us-east-2-use2-" in reason
    assert "(mesh-us-east-2-sg) admits tcp/8000 from 10.64." in reason
    # Security groups are stateful: the spoke still reaches the K3s API, and its replies come back.
    assert verdicts[("us-east-2", "k3s-api")].ok


def test_a_site_with_a_firewall_that_does_not_admit_the_main_region_is_unreachable() -> None:
    failing = _failing(_without(plan("global").recording, "mesh-sites-gcp-usc1-allow-mesh"))
    assert set(failing) == {(MAIN, "qwen-gcp")}
    assert (
        "-> node l4-gcp: no GCP firewall rule of mesh-sites-gcp-usc1-network admits tcp/8000 from 10.64."
        in (failing[(MAIN, "qwen-gcp")])
    )


def test_spoke_to_site_is_refused_because_the_peering_does_not_carry_it() -> None:
    recording = plan("global").recording
    verdict = check_path(Fabric(recording, recording.outputs), "us-east-2", "qwen-gcp", 8000)
    assert not verdict.ok
    assert "route table mesh-us-east-2-rt has no route for 10.128.0.0/20" in verdict.reason
    assert "peering mesh-peering-us-east-2 could not carry it either: 10.128.0.0/20 is outside the peer VPC " in (
        verdict.reason
    )
    assert "peering is not transitive" in verdict.reason

    # Even with a route into the peering for the site's range, the peering drops the packet.
    routed = _with_spoke_route(recording, "us-east-2", "10.128.0.0/20")
    verdict = check_path(Fabric(routed, routed.outputs), "us-east-2", "qwen-gcp", 8000)
    assert not verdict.ok
    assert (
        "peering mesh-peering-us-east-2 drops 10.65." in verdict.reason
        and "its destination is outside the peer VPC mesh-us-east-1-vpc (10.64.0.0/16); peering is not transitive"
        in verdict.reason
    )


def test_site_to_spoke_is_refused_by_the_sites_tunnel_and_by_the_peering() -> None:
    recording = plan("global").recording
    verdict = check_path(Fabric(recording, recording.outputs), "gcp-usc1", "qwen", 8000)
    assert not verdict.ok
    assert "GCP network mesh-sites-gcp-usc1-network has no route for 10.65." in verdict.reason
    # A GCP route towards the spoke reaches the gateway, whose tunnel carries only the main region.
    routed = _with_copy(
        recording, "mesh-sites-gcp-usc1-route-10-64-0-0-16", "extra-gcp-route-to-spoke", destRange="10.65.0.0/16"
    )
    verdict = check_path(Fabric(routed, routed.outputs), "gcp-usc1", "qwen", 8000)
    assert not verdict.ok
    assert "mesh-sites-gcp-usc1-gateway has no WireGuard peer whose AllowedIPs include 10.65." in verdict.reason
    # The external site routes only the main region and the tunnel range into its tunnel.
    verdict = check_path(Fabric(recording, recording.outputs), "lab-onprem", "qwen-gcp", 8000)
    assert not verdict.ok
    assert "external site lab-onprem routes nothing for 10.128.0.0/20 into its tunnel" in verdict.reason


def test_spoke_to_another_spokes_service_is_refused_as_not_transitive() -> None:
    recording = plan("global").recording
    verdict = check_path(Fabric(recording, recording.outputs), "us-east-2", "phi-euw1", 8000)
    assert not verdict.ok
    assert "route table mesh-us-east-2-rt has no route for 10.72." in verdict.reason
    assert "is outside the peer VPC mesh-us-east-1-vpc (10.64.0.0/16), and peering is not transitive" in verdict.reason
    routed = _with_spoke_route(recording, "us-east-2", "10.72.0.0/16")
    verdict = check_path(Fabric(routed, routed.outputs), "us-east-2", "phi-euw1", 8000)
    assert not verdict.ok
    assert "peering mesh-peering-us-east-2 drops" in verdict.reason and "not transitive" in verdict.reason
    # The model agrees: spokes reach the main region only.
    assert check_path(Fabric(recording, recording.outputs), "us-east-2", "phoenix-ui", 6006).ok


def test_a_path_the_resources_do_not_carry_is_a_mismatch_in_the_report() -> None:
    recording = plan("global").recording
    fake = {"from": "us-east-2", "to": "qwen-gcp", "port": 8000, "ok": True, "reason": "declared"}
    outputs = {**recording.outputs, "reachability": [*recording.outputs["reachability"], fake]}
    declared = replace(recording, outputs=outputs)
    report = PlanReport("global", declared, verdicts=tuple(reachability_from_resources(declared, outputs)))
    mismatches = report.reachability_mismatches
    assert [(m["from"], m["to"], m["ok"], m["resources_ok"]) for m in mismatches] == [
        ("us-east-2", "qwen-gcp", True, False)
    ]
    message = str(ReachabilityMismatchError(report))
    assert "us-east-2 -> qwen-gcp tcp/8000: the program declares it reachable, but its resources say it does not" in (
        message
    )
    assert "peering is not transitive" in message


def test_lmrun_plan_exits_1_when_the_resources_do_not_carry_a_planned_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = offline.run_program

    def without_vpc_rule(*args: Any, **kwargs: Any) -> Recording:
        return _without(real(*args, **kwargs), "mesh-us-east-1-sg-from-vpc")

    monkeypatch.setattr(offline, "run_program", without_vpc_rule)
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "dev", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: reachability mismatch: ")
    assert "1 path(s) where the plan and its resources disagree" in err
    assert "us-east-1 -> qwen-dev tcp/8000: the program declares it reachable, but its resources say it does not" in err
