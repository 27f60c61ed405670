"""Elastic services (``lmrun:elasticServices``, issue 14): the spec mirrors SkyServe's rules and refuses every mistake
at once, the plan orders and prices the spot regions, ``lmrun sky render`` writes a service file the pinned
``skypilot`` accepts, the estimate shows each service's baseline and worst case, and the policy pack re-checks the
spot regions against the resources."""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from lmrun.aws.instances import catalog
from lmrun.cli.models import model_targets
from lmrun.cli.plan_view import cost_table
from lmrun.plan.elastic import CONTROLLER_INSTANCE_TYPE, controller_usd_hour
from lmrun.plan.mesh import MeshPlan
from lmrun.plan.validate import checked_plan
from lmrun.policy.rules import evaluate
from lmrun.render.skypilot import SkyPilotMesh, k3s_context, sky_config
from lmrun.spec.errors import ConfigError, PlanError
from lmrun.verify.sources import from_recording
from tests.conftest import plan, stack_config
from tests.validators import assert_shellcheck_clean

SERVICE = {
    "name": "burst",
    "gpu": "L4",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "modelRevision": "a09a35458c702b33eeacc393d103063234e8bc28",
    "minReplicas": 2,
    "maxReplicas": 8,
    "targetQpsPerReplica": 3,
    "baseOnDemand": 1,
    "policy": "priority",
    "regions": ["us-west-2", "us-east-2"],
    "nodePort": 30091,
}


def _planned(**overrides: Any) -> MeshPlan:
    return checked_plan(stack_config("global", **overrides).config, mesh="global")[1]


def _errors(**overrides: Any) -> list[str]:
    with pytest.raises((ConfigError, PlanError)) as caught:
        _planned(**overrides)
    return [str(issue) for issue in caught.value.issues]


def _elastic(**fields: Any) -> dict[str, Any]:
    return {**SERVICE, **fields}


# --- spec ---------------------------------------------------------------------------------------------------------


def test_every_mistake_of_every_service_at_once() -> None:
    services = [
        _elastic(name="qwen", nodePort=30005, minReplicas=0, targetQpsPerReplica=None, maxReplicas=None),
        _elastic(name="a", nodePort=30080, maxReplicas=1, baseOnDemand=3),
        _elastic(name="b", targetQpsPerReplica=None, regions=["ap-east-9", "gcp-usc1", "eu-west-1"]),
        _elastic(name="c", maxReplicas=None, regions=["us-east-2"], select={"class": "x"}),
        _elastic(name="c", policy="fill-and-spill", useSpot=False),
    ]
    assert _errors(elasticServices=services) == [
        "lmrun:elasticServices[0].baseOnDemand: is 1, more than minReplicas 0: the on-demand base is part of the "
        "replicas SkyServe always keeps",
        "lmrun:elasticServices[0].minReplicas: 0 (scale to zero) needs targetQpsPerReplica: SkyServe starts a "
        "replica when requests arrive, measured against that target",
        "lmrun:elasticServices[0].name: 'qwen' is already a node, service or group name; an elastic service is a "
        "service of its own",
        "lmrun:elasticServices[0].nodePort: node port 30005 is in 30001-30020, reserved for SkyServe's load "
        "balancers: the serve controller joins K3s, whose kube-proxy would take the load balancer's traffic on "
        "that port; pick another node port",
        "lmrun:elasticServices[1].baseOnDemand: is 3, more than minReplicas 2: the on-demand base is part of the "
        "replicas SkyServe always keeps",
        "lmrun:elasticServices[1].maxReplicas: is 1, less than minReplicas 2",
        "lmrun:elasticServices[1].nodePort: node port 30080 is already taken by service 'qwen' (lmrun:nodes[0])",
        "lmrun:elasticServices[2].regions[0]: 'ap-east-9' is not an AWS region of the mesh: ap-northeast-1, "
        "ap-northeast-2, ap-south-1, ap-southeast-1, ap-southeast-2, ca-central-1, eu-central-1, eu-north-1, "
        "eu-south-2, eu-west-1, eu-west-2, eu-west-3, il-central-1, me-central-1, sa-east-1, us-east-1, "
        "us-east-2, us-west-2",
        "lmrun:elasticServices[2].regions[1]: 'gcp-usc1' is a site: SkyPilot launches spot replicas only into the "
        "mesh's AWS VPCs",
        "lmrun:elasticServices[2].regions[2]: eu-west-1: 1x L4 is not offered in eu-west-1 per the offerings "
        "recorded in lmrun:offerings (lmrun regions sync); mesh regions offering it: ap-northeast-1, "
        "ap-northeast-2, ap-south-1, ap-southeast-2, ca-central-1, eu-central-1, eu-north-1, eu-south-2, "
        "eu-west-2, eu-west-3, me-central-1, sa-east-1, us-east-1, us-east-2, us-west-2",
        "lmrun:elasticServices[2].targetQpsPerReplica: is required for maxReplicas 8 to differ from minReplicas "
        "2: SkyServe autoscales on the request rate per replica",
        "lmrun:elasticServices[3].maxReplicas: is required with targetQpsPerReplica (SkyServe scales between "
        "minReplicas and it)",
        "lmrun:elasticServices[3].nodePort: node port 30091 is already taken by elastic service 'b' "
        "(lmrun:elasticServices[2])",
        "lmrun:elasticServices[3].regions: give the spot regions either as regions or by select (labels), exactly "
        "one of them",
        "lmrun:elasticServices[4].name: 'c' is already lmrun:elasticServices[3]",
        "lmrun:elasticServices[4].nodePort: node port 30091 is already taken by elastic service 'b' "
        "(lmrun:elasticServices[2])",
        "lmrun:elasticServices[4].policy: should be one of 'priority' or 'spread' (got 'fill-and-spill')",
        "lmrun:elasticServices[4].useSpot: is always true for an elastic service: its scaled replicas are spot VMs; "
        "baseOnDemand runs replicas on demand (on the K3s GPU pool), dynamicOndemandFallback replaces preempted "
        "ones on demand",
    ]


def test_each_replica_rule_of_skyserve_is_a_spec_error() -> None:
    cases = {
        "minReplicas": (
            {"minReplicas": 0, "targetQpsPerReplica": None, "maxReplicas": None, "baseOnDemand": 0},
            "0 (scale to zero) needs targetQpsPerReplica",
        ),
        "maxReplicas": ({"maxReplicas": 1}, "is 1, less than minReplicas 2"),
        "targetQpsPerReplica": ({"targetQpsPerReplica": 0}, "should be more than 0.0 (got 0)"),
        "baseOnDemand": ({"baseOnDemand": 3}, "is 3, more than minReplicas 2"),
    }
    for key, (fields, message) in cases.items():
        service = {k: v for k, v in _elastic(**fields).items() if v is not None}
        errors = _errors(elasticServices=[service])
        assert any(e.startswith(f"lmrun:elasticServices[0].{key}: {message}") for e in errors), (key, errors)
    # Scale to zero with a QPS target, and a fixed size without one, are what SkyServe accepts.
    zero = _elastic(minReplicas=0, baseOnDemand=0)
    fixed = {
        k: v for k, v in _elastic(name="fixed", maxReplicas=2, nodePort=30092).items() if k != "targetQpsPerReplica"
    }
    planned = _planned(elasticServices=[zero, fixed]).skypilot
    assert planned is not None
    assert [(e.name, e.min_replicas, e.max_replicas) for e in planned.elastic] == [("burst", 0, 8), ("fixed", 2, 2)]


def test_a_gated_model_is_refused_no_replica_can_read_a_token() -> None:
    [error] = _errors(elasticServices=[_elastic(modelAccess="gated")], huggingFaceToken="hf_x")
    assert error.startswith("lmrun:elasticServices[0].modelAccess: gated: SkyServe's replicas read no Hugging Face")


def test_the_on_demand_base_must_fit_the_gpu_pool() -> None:
    """Beyond the pool, SkyServe would put base replicas on on-demand VMs in the spot regions, which the baseline
    does not price: global's pool (one 1x L4 node) holds a base of 1, not 2, and no base of A10G at all."""
    assert _planned(elasticServices=[_elastic(minReplicas=2, baseOnDemand=1)])
    [error] = _errors(elasticServices=[_elastic(minReplicas=2, baseOnDemand=2)])
    assert error.startswith("lmrun:elasticServices[0].baseOnDemand: 2 replica(s) of 1x L4 on the K3s GPU pool, which")
    assert "holds 1" in error
    four_gpus = [
        {"name": "l4-pool", "gpu": "L4", "gpuCount": 4, "policy": "priority", "replicas": 1, "regions": ["us-east-1"]}
    ]
    assert _planned(elasticServices=[_elastic(minReplicas=2, baseOnDemand=2)], gpuPool=four_gpus)
    [error] = _errors(elasticServices=[_elastic(gpu="A10G", gpuCount=1, regions=["us-east-2"])])
    assert "baseOnDemand: 1 replica(s) of 1x A10G on the K3s GPU pool, which holds 0" in error
    assert _planned(elasticServices=[_elastic(baseOnDemand=0)])


def test_load_balancer_ports_are_refused_to_every_mesh_node_port() -> None:
    errors = _errors(
        phoenix={"uiNodePort": 30001},
        services=[{"name": "web", "node": "k3s-server", "appPort": 8080, "nodePort": 30020}],
    )
    assert [e.split(":")[1].split(" ")[0] for e in errors if "reserved for SkyServe" in e] == [
        "phoenix.uiNodePort",
        "services[0].nodePort",
    ]
    # Either side of the range stays usable.
    assert _planned(services=[{"name": "web", "node": "k3s-server", "appPort": 8080, "nodePort": 30021}])


def test_elastic_services_need_skypilot() -> None:
    assert _errors(skypilot={"enabled": False}) == [
        "lmrun:elasticServices: SkyServe runs the elastic services: set lmrun:skypilot.enabled true (the mesh as "
        "SkyPilot infrastructure)",
        # global's GPU pool (the services' on-demand base) needs it too: every error at once
        "lmrun:gpuPool: offers its GPUs to SkyPilot through Kubernetes: set lmrun:skypilot.enabled to true (or drop "
        "the pool)",
    ]


def test_models_pin_walks_elastic_services() -> None:
    targets, problems = model_targets({"elasticServices": [SERVICE]})
    assert problems == [] and [t.where for t in targets] == [("elasticServices", 0)]


# --- plan ---------------------------------------------------------------------------------------------------------


def test_spot_regions_follow_the_policy_and_private_regions_start_with_main() -> None:
    priority = _planned().skypilot
    assert priority is not None
    [qwen] = priority.elastic
    assert (qwen.name, qwen.node_port, qwen.gpu, qwen.base_on_demand) == ("qwen-elastic", 30090, "L4", 1)
    assert qwen.spot_regions == ("us-east-2", "us-west-2", "eu-west-2")
    assert priority.private_regions == ("us-east-1", "us-east-2", "us-west-2", "eu-west-2")

    spread = _planned(
        elasticServices=[_elastic(policy="spread", regions=["us-west-2", "eu-west-2", "us-east-1"])]
    ).skypilot
    assert spread is not None and spread.elastic[0].spot_regions == ("eu-west-2", "us-east-1", "us-west-2")
    assert spread.private_regions == ("us-east-1", "eu-west-2", "us-west-2")

    labels = {"eu-west-2": {"burst": "yes"}, "us-east-2": {"burst": "yes"}, "eu-west-1": {"burst": "yes"}}
    selected = _planned(labels=labels, elasticServices=[_elastic(regions=[], select={"burst": "yes"})]).skypilot
    # eu-west-1 carries the label but offers no L4: select keeps the regions that can run the service.
    assert selected is not None and selected.elastic[0].spot_regions == ("eu-west-2", "us-east-2")


def test_each_region_is_priced_like_a_spot_node_there() -> None:
    sky = _planned().skypilot
    assert sky is not None
    g6 = catalog.instance_type("g6.xlarge")
    for region in sky.elastic[0].regions:
        assert (region.instance_type, region.spot_usd_hour) == ("g6.xlarge", g6.spot_usd_hour)
        assert (region.on_demand_instance_type, region.on_demand_usd_hour) == ("g6.xlarge", g6.on_demand_usd_hour)
        assert region.offering_source == "recorded"


# --- render -------------------------------------------------------------------------------------------------------


def _service_file(rendered: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((rendered / "service-qwen-elastic.yaml").read_text())
    return document


def test_service_file_has_the_policy_order_the_base_the_probe_and_the_port(rendered: Path) -> None:
    task = _service_file(rendered)
    service, resources = task["service"], task["resources"]
    assert [entry["infra"] for entry in resources["any_of"]] == [
        "aws/us-east-2",
        "aws/us-west-2",
        "aws/eu-west-2",
        f"k8s/{k3s_context('global')}",
    ]
    assert service["replica_policy"] == {
        "min_replicas": 1,
        "max_replicas": 6,
        "target_qps_per_replica": 2.0,
        "base_ondemand_fallback_replicas": 1,
        "dynamic_ondemand_fallback": False,
        "spot_placer": "dynamic_fallback",
    }
    assert service["readiness_probe"] == {"path": "/v1/models", "initial_delay_seconds": 1200}
    assert service["ports"] == resources["ports"] == 8000
    assert (resources["accelerators"], resources["use_spot"]) == ("L4:1", True)
    run = task["run"]
    for piece in ("--revision a09a35458c702b33eeacc393d103063234e8bc28", "--served-model-name qwen-elastic",
                  "--max-model-len 8192", "--otlp-traces-endpoint http://localhost:30201"):  # fmt: skip
        assert piece in run
    # A pool pod serves untraced (it cannot read the VM's OTLP settings); a spot VM joins K3s and traces.
    pod, vm = run.split("\nfi\n")
    assert "--otlp-traces-endpoint" not in pod and "phoenix-client.env" in vm
    assert '[ -n "${KUBERNETES_SERVICE_HOST:-}" ] || sudo -E bash ~/lmrun/join.sh' in task["setup"]


def test_service_setup_and_run_pass_shellcheck(rendered: Path, tmp_path: Path) -> None:
    task = _service_file(rendered)
    scripts = []
    for part in ("setup", "run"):
        script = tmp_path / f"{part}.sh"
        script.write_text(f"#!/bin/bash\n{task[part]}")
        scripts.append(script)
    assert_shellcheck_clean(scripts)


@pytest.fixture
def in_rendered(rendered: Path) -> Iterator[Path]:
    before = Path.cwd()
    os.chdir(rendered)
    try:
        yield rendered
    finally:
        os.chdir(before)


def _offline_clouds(monkeypatch: pytest.MonkeyPatch) -> None:
    """SpotPlacer asks each cloud which locations are feasible (AWS's catalog, the cluster's spot label): nothing
    offline, so each answers none; every check of ``validate_service_task`` before and after runs for real."""
    from sky import clouds
    from sky.utils import resources_utils

    def none(self: Any, resources: Any, num_nodes: int = 1) -> Any:
        return resources_utils.FeasibleResources([], [], None)

    for cloud in (clouds.AWS, clouds.Kubernetes):
        monkeypatch.setattr(cloud, "get_feasible_launchable_resources", none)


def test_service_file_passes_skyservices_own_validation(in_rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sky
    from sky.serve import serve_utils
    from sky.serve.service_spec import SkyServiceSpec

    task = _service_file(in_rendered)
    spec = SkyServiceSpec.from_yaml_config(task["service"])
    assert (spec.min_replicas, spec.max_replicas, spec.base_ondemand_fallback_replicas) == (1, 6, 1)
    assert spec.readiness_path == "/v1/models" and spec.spot_placer == "dynamic_fallback"
    assert spec.use_ondemand_fallback and spec.load_balancing_policy == "least_load"

    _offline_clouds(monkeypatch)
    parsed = sky.Task.from_yaml_config(copy.deepcopy(task))
    serve_utils.validate_service_task(parsed, pool=False)
    assert sorted((str(r.cloud), r.region, r.use_spot) for r in parsed.resources) == sorted(
        [
            ("AWS", "us-east-2", True),
            ("AWS", "us-west-2", True),
            ("AWS", "eu-west-2", True),
            ("Kubernetes", "lmrun-global", True),
        ]
    )
    # The same checks refuse an any_of entry that differs in more than its location (SpotHedge needs that).
    broken = copy.deepcopy(task)
    broken["resources"]["any_of"][1]["accelerators"] = "L4:2"
    with pytest.raises(ValueError, match="same configuration except for cloud/region/zone"):
        serve_utils.validate_service_task(sky.Task.from_yaml_config(broken), pool=False)
    with pytest.raises(ValueError, match="max_replicas must be greater than"):
        SkyServiceSpec.from_yaml_config({**task["service"], "replica_policy": {"min_replicas": 3, "max_replicas": 2}})


def test_config_adds_the_controller_internal_ips_and_the_k3s_context(rendered: Path) -> None:
    from sky.utils import common_utils, schemas

    config = yaml.safe_load((rendered / "config.yaml").read_text())
    common_utils.validate_schema(config, schemas.get_config_schema(), "Invalid config YAML: ")
    assert config["allowed_clouds"] == ["aws", "kubernetes"]
    assert config["kubernetes"] == {
        "allowed_contexts": ["lmrun-global"],
        "ports": "podip",
        "remote_identity": "lmrun-skypilot-pods",  # an account the server applies, bound to nothing
    }
    assert config["serve"] == {"controller": {"resources": {"infra": "aws/us-east-1", "cpus": "2+"}}}
    assert config["aws"]["use_internal_ips"] is True
    # A stack without elastic services exports no controller and no private region either.
    exported = {
        **plan("global").outputs["skypilot"],
        "elastic": [],
        "controller_profile": None,
        "private_regions": [],
        "private_subnet_names": [],
    }
    without = SkyPilotMesh.from_json(exported)
    plain = sky_config(without)
    assert plain["allowed_clouds"] == ["aws"] and "serve" not in plain and "kubernetes" not in plain
    assert not {"use_internal_ips", "ssh_proxy_command", "post_provision_runcmd", "subnet_names"} & set(plain["aws"])
    assert plain["aws"]["remote_identity"] == "lmrun-global-skypilot" and plain["aws"]["use_ssm"] is True


def test_skypilot_output_round_trips_its_elastic_services() -> None:
    exported = plan("global").outputs["skypilot"]
    mesh = SkyPilotMesh.from_json(exported)
    assert [e.spot_regions for e in mesh.elastic] == [("us-east-2", "us-west-2", "eu-west-2")]
    assert SkyPilotMesh.from_json(mesh.to_json()) == mesh


# --- cost ---------------------------------------------------------------------------------------------------------


def test_estimate_shows_baseline_and_worst_case_per_service() -> None:
    spot, on_demand = catalog.instance_type("g6.xlarge").spot_usd_hour or 0.0, 0.0
    on_demand = catalog.instance_type("g6.xlarge").on_demand_usd_hour
    fallback = _elastic(dynamicOndemandFallback=True)
    report = plan("global", elasticServices=[fallback])
    exported = report.outputs["elasticServices"]["burst"]
    assert [r["region"] for r in exported["spot_regions"]] == ["us-west-2", "us-east-2"]
    cost = report.cost.to_json()["elastic"]
    [burst] = cost["services"]
    assert burst["baseline_usd_hour"] == round(1 * spot, 4)  # minReplicas 2 - baseOnDemand 1, at the first region
    assert burst["max_spot_usd_hour"] == round(7 * spot, 4)  # maxReplicas 8 - baseOnDemand 1
    assert burst["max_on_demand_usd_hour"] == round(7 * on_demand, 4)  # dynamic fallback: the worst case
    assert "K3s GPU pool ($0 extra" in burst["basis"] and "the first spot region" in burst["basis"]
    assert cost["controller_usd_hour"] == round(controller_usd_hour(), 4) > 0
    assert CONTROLLER_INSTANCE_TYPE in cost["controller"]
    assert cost["max_usd_hour"] == round(7 * spot + 7 * on_demand + controller_usd_hour(), 4)

    global_cost = plan("global").cost.to_json()["elastic"]
    [qwen] = global_cost["services"]
    assert (qwen["baseline_usd_hour"], qwen["max_on_demand_usd_hour"]) == (0.0, 0.0)  # the base is the pool's
    assert qwen["max_spot_usd_hour"] == round(5 * spot, 4)
    assert plan("global", elasticServices=[]).cost.to_json()["elastic"] is None


def test_plan_table_shows_each_service() -> None:
    out = io.StringIO()
    Console(file=out, width=400).print(cost_table(plan("global")))
    text = out.getvalue()
    assert "elastic qwen-elastic, baseline" in text and "elastic qwen-elastic, at max" in text
    assert "SkyServe controller" in text


# --- policy -------------------------------------------------------------------------------------------------------


def test_policy_rule_passes_global_and_catches_a_hand_edited_or_broken_stack() -> None:
    report = plan("global")
    resources = from_recording(report.recording)
    settings = report.outputs["policySettings"]
    assert not [v for v in evaluate(resources, None, settings) if v.policy == "elastic-spot-regions"]

    edited = copy.deepcopy(settings)
    edited["elasticServices"]["services"][0]["spotRegions"].append("ap-east-1")  # no VPC of the mesh there
    [violation] = [v for v in evaluate(resources, None, edited) if v.policy == "elastic-spot-regions"]
    assert violation.level == "mandatory" and "spot region ap-east-1: no mesh VPC there" in violation.message

    # A spoke whose peering with the main VPC is gone is not reached by the controller.
    unpeered = [r for r in resources if not (r.type.endswith("VpcPeeringConnection") and "us-west-2" in r.name)]
    assert len(unpeered) < len(resources)
    found = [v.message for v in evaluate(unpeered, None, settings) if v.policy == "elastic-spot-regions"]
    assert found == [
        "elastic service qwen-elastic: spot region us-west-2: no peering with the controller's region us-east-1"
    ]
