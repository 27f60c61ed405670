"""An elastic service's node-port path through the recorded network (verify/elastic_paths.py): every mesh location
to SkyServe's load balancer on every LB port, the controller to the K3s API, to each spot region's SkyPilot VMs and
to the GPU pool; breaking a rule or a route fails the plan naming the service, the hop and what is missing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from lmrun.cli import main
from lmrun.mock_engine import Recording
from lmrun.verify import offline
from lmrun.verify.elastic_paths import CLIENTS, JOIN, POOL, SPOT, ElasticPathError, elastic_paths_from_resources
from tests.conftest import ROOT, plan

MAIN = "us-east-1"
SERVICE = "qwen-elastic"
"""global's elastic service: node port 30090, app port 8000, spot regions us-east-2, us-west-2, eu-west-2."""


def recording() -> Recording:
    return plan("global").recording


def _verdicts(recorded: Recording, **exports: Any) -> dict[tuple[str, str, str], Any]:
    found = elastic_paths_from_resources(recorded, {**recorded.outputs, **exports})
    return {(v.service, v.hop, v.source if v.hop == CLIENTS else v.target): v for v in found}


def _blocked(recorded: Recording, **exports: Any) -> dict[tuple[str, str, str], str]:
    return {key: v.reason for key, v in _verdicts(recorded, **exports).items() if v.ok is not True}


def _without(recorded: Recording, *names: str) -> Recording:
    kept = [r for r in recorded.resources if r.name not in names]
    assert len(kept) == len(recorded.resources) - len(names), "every resource to delete exists"
    return replace(recorded, resources=kept)


def _with_inputs(recorded: Recording, name: str, **inputs: Any) -> Recording:
    original = recorded.named(name)
    changed = replace(original, inputs={**original.inputs, **inputs})
    return replace(recorded, resources=[changed if r is original else r for r in recorded.resources])


def test_every_hop_of_the_elastic_service_flows_in_global() -> None:
    report = plan("global")
    verdicts = {(v.hop, v.source if v.hop == CLIENTS else v.target): v for v in report.elastic_paths}
    locations = {*report.regions, *report.sites}
    assert {source for hop, source in verdicts if hop == CLIENTS} == locations
    assert len(locations) == 20 and {"gcp-usc1", "lab-onprem", "us-west-2", MAIN} <= locations
    spot = {target for hop, target in verdicts if hop == SPOT}
    assert spot == {f"SkyPilot VMs of {region}" for region in ("us-east-2", "us-west-2", "eu-west-2")}
    assert (JOIN, "the K3s server") in verdicts
    assert all(v.ok is True for v in verdicts.values()), [str(v) for v in verdicts.values() if not v.ok]
    assert all(v.ports == "30001-30020" for v in report.elastic_paths if v.hop == CLIENTS)
    assert {v.ports for v in report.elastic_paths if v.hop == SPOT} == {"8000"}
    # The node port itself: a Service without selector, recorded.
    service = report.recording.named(f"mesh-cluster-ports-svc-{SERVICE}")
    assert "selector" not in service.inputs["spec"] and service.inputs["spec"]["ports"][0]["nodePort"] == 30090


def test_without_the_controllers_rule_for_a_region_its_clients_cannot_reach_the_load_balancer() -> None:
    blocked = _blocked(_without(recording(), "mesh-skypilot-us-east-1-from-region-us-west-2"))
    assert set(blocked) == {(SERVICE, CLIENTS, "us-west-2")}
    reason = blocked[(SERVICE, CLIENTS, "us-west-2")]
    assert "-> a SkyPilot VM of us-east-1 in mesh-us-east-1-private-use1-" in reason
    assert "no ingress rule of the security groups of a SkyPilot VM of us-east-1" in reason
    assert "(mesh-skypilot-us-east-1-sg) admits tcp/30001 from 10.67." in reason


def test_without_the_controllers_rule_for_a_site_the_sites_clients_cannot_reach_it() -> None:
    blocked = _blocked(_without(recording(), "mesh-skypilot-us-east-1-from-site-gcp-usc1"))
    assert set(blocked) == {(SERVICE, CLIENTS, "gcp-usc1")}
    assert "(mesh-skypilot-us-east-1-sg) admits tcp/30001 from " in blocked[(SERVICE, CLIENTS, "gcp-usc1")]


def test_a_rule_that_admits_only_part_of_the_lb_ports_is_caught_on_the_first_port_it_misses() -> None:
    recorded = recording()
    rule = recorded.named("mesh-skypilot-us-east-1-from-region-us-west-2")
    narrowed = _with_inputs(recorded, rule.name, ipProtocol="tcp", fromPort=30001, toPort=30010)
    blocked = _blocked(narrowed)
    assert set(blocked) == {(SERVICE, CLIENTS, "us-west-2")}
    assert "admits tcp/30011 from 10.67." in blocked[(SERVICE, CLIENTS, "us-west-2")]


def test_without_a_spokes_route_to_the_hub_the_controller_loses_its_spot_region() -> None:
    """The spot VMs run in the spoke's private subnets (NAT'd): their route table's entry for the main VPC."""
    recorded = recording()
    table = recorded.named("mesh-us-west-2-private-rt")
    kept = [route for route in table.inputs["routes"] if route["cidrBlock"] != "10.64.0.0/16"]
    assert len(kept) == len(table.inputs["routes"]) - 1
    blocked = _blocked(_with_inputs(recorded, table.name, routes=kept))
    assert set(blocked) == {(SERVICE, SPOT, "SkyPilot VMs of us-west-2")}
    spot = blocked[(SERVICE, SPOT, "SkyPilot VMs of us-west-2")]
    assert "the reply route table mesh-us-west-2-private-rt has no route for 10.64." in spot
    assert "tcp/8000" in spot


def test_without_the_spot_regions_skypilot_group_the_hop_says_so() -> None:
    recorded = _without(recording(), "mesh-skypilot-eu-west-2-sg")
    blocked = _blocked(recorded)
    assert blocked == {
        (SERVICE, SPOT, "SkyPilot VMs of eu-west-2"): "no SkyPilot security group in the mesh VPC of eu-west-2 "
        "(spot VMs would have none of the mesh's)"
    }


def test_the_controller_reaches_the_gpu_pool_and_a_spokes_group_can_break_it() -> None:
    """A pool node is a ``nodes`` export entry with a ``pool``: global's own (in the main region), and a declared
    node of a spoke standing in for one there."""
    recorded = recording()
    nodes = recorded.outputs["nodes"]
    assert [name for name, info in nodes.items() if info.get("pool")] == ["l4-pool-use1-0"]
    assert _verdicts(recorded)[(SERVICE, POOL, "pool node l4-pool-use1-0")].ok is True
    pool = {**nodes, "qwen-use2": {**nodes["qwen-use2"], "pool": "l4-pool"}}
    verdicts = _verdicts(recorded, nodes=pool)
    assert verdicts[(SERVICE, POOL, "pool node qwen-use2")].ok is True
    group = recorded.named("mesh-us-east-2-sg")
    kept = [rule for rule in group.inputs["ingress"] if rule["cidrBlocks"] != ["10.64.0.0/16"]]
    blocked = _blocked(_with_inputs(recorded, group.name, ingress=kept), nodes=pool)
    reason = blocked[(SERVICE, POOL, "pool node qwen-use2")]
    assert "(mesh-us-east-2-sg) admits tcp/10250 from 10.64." in reason


def test_a_stack_without_elastic_services_walks_nothing_more() -> None:
    assert elastic_paths_from_resources(recording(), {**recording().outputs, "elasticPaths": {}}) == []


def test_a_preview_never_blocks_a_hop() -> None:
    """A preview shows WireGuard configs as secrets: the sites' hops may be undecidable, none blocked."""
    report = plan("global", preview=True)
    assert report.elastic_paths and not [v for v in report.elastic_paths if v.ok is False]
    assert all(v.ok for v in report.elastic_paths if v.source not in ("gcp-usc1", "lab-onprem"))


def test_lmrun_plan_shows_the_paths_and_exits_1_when_one_is_blocked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setattr(offline, "plan_stack", lambda *args, **kwargs: plan("global"))
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["elastic_paths"]
    assert {"service": SERVICE, "hop": CLIENTS, "from": "lab-onprem"}.items() <= shown[19].items()
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global"]) == 0
    text = capsys.readouterr().out
    assert "Elastic services: localhost:<node port> -> SkyServe's load balancer" in text
    assert SERVICE in text and "30090" in text
    monkeypatch.undo()

    real = offline.run_program

    def without_rule(*args: Any, **kwargs: Any) -> Recording:
        return _without(real(*args, **kwargs), "mesh-skypilot-us-east-1-from-region-us-west-2")

    monkeypatch.setattr(offline, "run_program", without_rule)
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: elastic service path blocked: stack global: 1 blocked hop(s)")
    hop = f"{SERVICE}: clients -> load balancer: us-west-2 -> the SkyServe controller in us-east-1 tcp/30001-30020: "
    assert hop in err
    assert "(mesh-skypilot-us-east-1-sg) admits tcp/30001 from 10.67." in err


def test_a_blocked_hop_raises_from_the_checks() -> None:
    from lmrun.verify.checks import run_checks

    with pytest.raises(ElasticPathError, match=r"qwen-elastic: clients -> load balancer: us-west-2"):
        run_checks("global", _without(recording(), "mesh-skypilot-us-east-1-from-region-us-west-2"))


def test_without_the_skypilot_output_the_path_cannot_be_told() -> None:
    """A first preview holds no stack outputs (the `skypilot` names): cannot tell, never blocked."""
    outputs = {key: value for key, value in recording().outputs.items() if key != "skypilot"}
    (verdict,) = elastic_paths_from_resources(recording(), outputs)
    assert verdict.ok is None and verdict.reason.startswith("cannot tell: the skypilot stack output is not in this")


def test_one_port_stands_for_each_run_of_lb_ports_no_rule_tells_apart() -> None:
    from lmrun.domain.ports import SKYSERVE_LB_PORTS
    from lmrun.verify.elastic_paths import port_classes
    from lmrun.verify.resources import Resource, Snapshot

    def rules(*inputs: dict[str, Any]) -> Snapshot:
        return Snapshot([Resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", i) for i in inputs], {})

    assert port_classes(recording(), SKYSERVE_LB_PORTS) == [30001]  # global: all-traffic rules only
    aws_rule = rules({"ipProtocol": "tcp", "fromPort": 30001, "toPort": 30010}, {"fromPort": 0, "toPort": 0})
    assert port_classes(aws_rule, SKYSERVE_LB_PORTS) == [30001, 30011]
    gcp_rule = rules({"allows": [{"protocol": "tcp", "ports": ["30005-30007", "30020"]}]})
    assert port_classes(gcp_rule, SKYSERVE_LB_PORTS) == [30001, 30005, 30008, 30020]
