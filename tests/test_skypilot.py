"""The mesh as SkyPilot infrastructure: spec, resources, the plan's check of the config's names, and the rendered
config and tasks validated by SkyPilot's own code (the pinned ``skypilot`` of requirements-dev.txt)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.cli.sky import render_stack
from lmrun.components.instance_role import SSM_MANAGED_INSTANCE_CORE
from lmrun.domain.secrets import SecretPaths
from lmrun.domain.skypilot import skypilot_role_reads
from lmrun.mock_engine import RecordedResource
from lmrun.render.skypilot import SkyPilotMesh, bundle, sky_config
from lmrun.spec.errors import ConfigError
from lmrun.verify import tokens
from lmrun.verify.offline import PlanReport
from lmrun.verify.skypilot import skypilot_names_exist
from lmrun.verify.sources import from_recording
from tests.conftest import ROOT, plan
from tests.validators import assert_shellcheck_clean

SKY = "mesh-skypilot"


def _resources(report: Any, prefix: str = SKY) -> list[Any]:
    return [r for r in report.recording.resources if r.name.startswith(prefix)]


def _mesh(report: Any) -> SkyPilotMesh:
    return SkyPilotMesh.from_json(report.outputs["skypilot"])


def test_render_writes_the_config_and_three_task_kinds(rendered: Path) -> None:
    names = {p.name for p in rendered.iterdir()}
    assert {"config.yaml", "client.yaml", "job.yaml", "serve-qwen.yaml", "lmrun"} <= names
    assert os.stat(rendered / "lmrun" / "join.sh").st_mode & 0o777 == 0o755
    assert os.stat(rendered / "config.yaml").st_mode & 0o777 == 0o644


def test_config_passes_skypilots_schema_and_a_typo_does_not(rendered: Path) -> None:
    from sky.utils import common_utils, schemas

    config = yaml.safe_load((rendered / "config.yaml").read_text())
    common_utils.validate_schema(config, schemas.get_config_schema(), "Invalid config YAML: ")
    config["aws"]["vpc_nmae"] = config["aws"].pop("vpc_names")
    with pytest.raises(ValueError, match="vpc_nmae"):
        common_utils.validate_schema(config, schemas.get_config_schema(), "Invalid config YAML: ")


def test_config_names_the_stacks_resources(rendered: Path) -> None:
    report = plan("global")
    mesh = _mesh(report)
    aws = yaml.safe_load((rendered / "config.yaml").read_text())["aws"]
    assert aws["security_group_name"] == mesh.name == "lmrun-global-skypilot"
    # With elastic services, SkyServe's controller has a profile of its own and every other cluster the VMs'.
    assert aws["remote_identity"] == [
        {"sky-serve-controller-*": "lmrun-global-skyserve"},
        {"*": "lmrun-global-skypilot"},
    ]
    assert mesh.controller_profile == "lmrun-global-skyserve"
    assert aws["vpc_names"] == list(mesh.vpc_names.values()) and len(aws["vpc_names"]) == 18
    # Private addresses, reached through Session Manager from the API server (the proxy per region).
    assert aws["use_ssm"] is False and aws["use_internal_ips"] is True and aws["disk_encrypted"] is True
    assert list(aws["ssh_proxy_command"]) == list(mesh.private_regions)
    assert aws["labels"]["lmrun:mesh"] == "global"
    vpc_tags = {
        r.inputs["tags"]["lmrun:region"]: r.inputs["tags"]["Name"] for r in report.recording.by_type(tokens.VPC)
    }
    assert mesh.vpc_names == vpc_tags


@pytest.fixture
def in_rendered(rendered: Path) -> Iterator[Path]:
    # SkyPilot resolves a relative file_mounts source from the current directory (the README says: run from DIR).
    before = Path.cwd()
    os.chdir(rendered)
    try:
        yield rendered
    finally:
        os.chdir(before)


@pytest.mark.parametrize("name", ["serve-qwen.yaml", "serve-phi-euw1.yaml", "client.yaml", "job.yaml"])
def test_tasks_parse_as_skypilot_tasks(in_rendered: Path, name: str) -> None:
    import sky

    task = sky.Task.from_yaml(str(in_rendered / name))
    task.expand_and_validate_file_mounts()
    assert task.file_mounts == {"~/lmrun": str(in_rendered / "lmrun")}
    [resources] = list(task.resources)
    assert str(resources.cloud) == "AWS"
    assert "join.sh" in (task.setup or "")


def test_serve_task_replicates_the_declared_service(rendered: Path) -> None:
    task = yaml.safe_load((rendered / "serve-qwen.yaml").read_text())
    assert task["envs"]["SERVICE"] == "qwen" and task["envs"]["NODE_PORT"] == "30080"
    assert 'join.sh "$SERVICE"' in task["setup"]
    run = task["run"]
    for piece in ("Qwen/Qwen2.5-7B-Instruct", "--revision a09a35458c702b33eeacc393d103063234e8bc28",
                  "--served-model-name qwen", "--port 8000", "--host 0.0.0.0", "--max-model-len 8192"):  # fmt: skip
        assert piece in run
    assert task["resources"]["accelerators"] == "L4:1"


def test_job_checkpoints_every_minute_and_exports_to_phoenix(rendered: Path) -> None:
    task = yaml.safe_load((rendered / "job.yaml").read_text())
    assert task["envs"]["CHECKPOINT_EVERY"] == "60"
    assert "checkpoint.sh restore" in task["run"] and "checkpoint.sh every" in task["run"]
    assert "phoenix-client.env" in task["run"]
    env_script = (rendered / "lmrun" / "phoenix-client-env.sh").read_text()
    assert "/lmrun/global/phoenix/ingest-key" in env_script
    assert "http://localhost:30201" in (rendered / "lmrun" / "join.sh").read_text()


def test_bundle_scripts_pass_shellcheck(rendered: Path) -> None:
    assert_shellcheck_clean(sorted((rendered / "lmrun").glob("*.sh")))


def test_role_reads_only_the_agent_credential_and_the_ingest_key() -> None:
    report = plan("global")
    recorded = report.recording
    [policy] = [r for r in _resources(report) if r.type == "aws:iam/rolePolicy:RolePolicy"]
    document = json.loads(policy.inputs["policy"])
    [reads] = [s for s in document["Statement"] if s["Sid"] == "ReadParameters"]
    by_name = {r.inputs["name"]: r for r in recorded.by_type("aws:ssm/parameter:Parameter")}
    intended = skypilot_role_reads(SecretPaths.for_mesh("global"), phoenix=True)
    assert sorted(reads["Resource"]) == sorted(by_name[name].outputs["arn"] for name in intended)
    *allows, deny = document["Statement"]
    assert {a for s in allows for a in s["Action"]} == {"ssm:GetParameter", "s3:GetObject",
                                                         "s3:PutObject", "s3:ListBucket"}  # fmt: skip
    assert deny == {"Sid": "DenyOtherParameters", "Effect": "Deny", "Action": ["ssm:GetParameter*"],
                    "NotResource": reads["Resource"]}  # fmt: skip
    objects = next(s for s in document["Statement"] if s["Sid"] == "CheckpointObjects")
    assert objects["Resource"] == ["arn:aws:s3:::lmrun-global-skypilot/checkpoints/*"]
    assert objects["Condition"] == {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}
    [profile] = [r for r in _resources(report) if r.type == tokens.IAM_INSTANCE_PROFILE]
    assert profile.inputs["name"] == "lmrun-global-skypilot"
    attached = [r.inputs["policyArn"] for r in _resources(report) if r.type.endswith("RolePolicyAttachment")]
    assert attached == [SSM_MANAGED_INSTANCE_CORE.arn]


def test_one_group_per_mesh_vpc_admitting_the_mesh_and_no_ssh() -> None:
    report = plan("global")
    groups = [r for r in _resources(report) if r.type == tokens.SECURITY_GROUP]
    assert len(groups) == 18 and {g.inputs["name"] for g in groups} == {"lmrun-global-skypilot"}
    by_region = {g.inputs["tags"]["lmrun:region"]: g for g in groups}
    sources = [rule.get("cidrBlocks") or rule["securityGroups"] for rule in by_region["us-east-2"].inputs["ingress"]]
    # ... and all traffic from the VPC's mesh group, so SkyPilot's open_ports adds no 0.0.0.0/0 rule.
    assert sources == [["10.65.0.0/16"], ["10.64.0.0/16"], ["mesh-us-east-2-sg-id"]]
    # The main region's group admits every region and site through standalone rules (adding one adds a rule).
    main_group = by_region["us-east-1"]
    assert "ingress" not in main_group.inputs and "egress" not in main_group.inputs
    main_rules = _standalone_rules(report, main_group)
    by_cidr = [r for r in main_rules[INGRESS_RULE] if "cidrIpv4" in r.inputs]
    main_sources = {r.inputs["cidrIpv4"] for r in by_cidr}
    assert {"10.128.0.0/20", "10.129.0.0/24", "10.192.0.0/16", "10.64.0.0/16"} <= main_sources
    assert len(main_sources) == len(by_cidr) == 18 + 2 + 1  # regions, sites, tunnels
    [by_group] = [r for r in main_rules[INGRESS_RULE] if r not in by_cidr]
    assert by_group.inputs["referencedSecurityGroupId"] == "mesh-us-east-1-sg-id"
    assert [r.inputs["cidrIpv4"] for r in main_rules[EGRESS_RULE]] == ["0.0.0.0/0"]
    assert all(r.inputs["ipProtocol"] == "-1" for r in main_rules[INGRESS_RULE])
    assert all(rule["protocol"] == "-1" for g in groups for rule in g.inputs.get("ingress", []))
    assert not report.violations


INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def _standalone_rules(report: PlanReport, group: RecordedResource) -> dict[str, list[RecordedResource]]:
    """Rule type -> the standalone rules of ``group`` (the mocks' id of a resource is ``<name>-id``)."""
    rules: dict[str, list[RecordedResource]] = {INGRESS_RULE: [], EGRESS_RULE: []}
    for kind, found in rules.items():
        found += [r for r in report.recording.by_type(kind) if r.inputs["securityGroupId"] == f"{group.name}-id"]
    return rules


def test_bucket_is_private_versioned_encrypted_and_expires_checkpoints() -> None:
    report = plan("global")
    types = {r.type: r for r in _resources(report, f"{SKY}-checkpoints")}
    assert types["aws:s3/bucket:Bucket"].inputs["bucket"] == "lmrun-global-skypilot"
    [rule] = types["aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"].inputs["rules"]
    assert rule["filter"] == {"prefix": "checkpoints/"} and rule["expiration"] == {"days": 30}
    assert "aws:s3/bucketVersioning:BucketVersioning" in types
    assert "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock" in types


def test_ssh_mode_admits_ssh_from_operator_cidrs_only_and_drops_session_manager() -> None:
    report = plan("global", skypilot={"enabled": True, "useSsm": False}, operatorCidrs=["203.0.113.0/24"])
    groups = [r for r in _resources(report) if r.type == tokens.SECURITY_GROUP]
    ssh = [rule for g in groups for rule in g.inputs.get("ingress", []) if rule["protocol"] == "tcp"]
    ssh += [
        {"fromPort": r.inputs["fromPort"], "toPort": r.inputs["toPort"], "cidrBlocks": [r.inputs["cidrIpv4"]]}
        for g in groups
        for r in _standalone_rules(report, g)[INGRESS_RULE]
        if r.inputs["ipProtocol"] == "tcp"
    ]
    assert len(ssh) == 18 and {(r["fromPort"], r["toPort"], tuple(r["cidrBlocks"])) for r in ssh} == {
        (22, 22, ("203.0.113.0/24",))
    }
    assert not [r for r in _resources(report) if r.type.endswith("RolePolicyAttachment")]
    # Said explicitly (global has elastic services, so private addresses): SkyPilot would fall back to Session Manager.
    assert sky_config(_mesh(report))["aws"]["use_ssm"] is False
    assert not [
        r for r in report.recording.resources if r.name.startswith("mesh-skyserve") and "session-manager" in r.name
    ]
    assert [v.policy for v in report.violations] == ["no-ssh"] * 18


def test_spec_refuses_ssh_without_operator_cidrs_and_sky_node_names() -> None:
    with pytest.raises(ConfigError) as caught:
        plan(
            "dev",
            skypilot={"enabled": True, "useSsm": False},
            nodes=[
                {
                    "name": "sky-a",
                    "region": "us-east-1",
                    "gpu": "L4",
                    "model": "Qwen/Qwen2.5-7B-Instruct",
                    "modelRevision": "a" * 40,
                    "nodePort": 30080,
                }
            ],
        )
    paths = [issue.path for issue in caught.value.issues]
    assert "lmrun:skypilot.useSsm" in paths and "lmrun:nodes[0].name" in paths


def test_disabled_adds_nothing() -> None:
    report = plan("dev")
    assert not _resources(report) and report.outputs.get("skypilot") is None
    with pytest.raises(Exception, match="enabled: true"):
        render_stack(ROOT, stack="dev", config_file=None)


def test_the_check_catches_a_name_or_a_rule_the_config_uses_but_the_resources_lack() -> None:
    report = plan("global")
    outputs = dict(report.outputs)
    resources = list(from_recording(report.recording, outputs).resources)
    assert all(r.ok for r in skypilot_names_exist(resources, outputs))

    renamed = replace(_mesh(report), vpc_names={**_mesh(report).vpc_names, "us-east-2": "lmrun"})
    broken = [r for r in skypilot_names_exist(resources, {**outputs, "skypilot": renamed.to_json()}) if not r.ok]
    assert [(r.resource, r.value) for r in broken] == [("skypilot:vpc:us-east-2", "lmrun")]

    # SkyServe's controller profile (its own remote_identity) goes missing.
    without = [r for r in resources if not (r.type == tokens.IAM_INSTANCE_PROFILE and "skyserve" in r.name)]
    broken = [r for r in skypilot_names_exist(without, outputs) if not r.ok]
    assert [(r.resource, r.value) for r in broken] == [
        ("skypilot:controller-instance-profile", "lmrun-global-skyserve")
    ]

    group = next(r for r in resources if r.name == f"{SKY}-us-east-2-sg")
    narrowed = [
        {**rule, "protocol": "tcp", "fromPort": 8000, "toPort": 8000} if rule.get("cidrBlocks") else rule
        for rule in group.inputs["ingress"]
    ]
    at = resources.index(group)
    resources[at] = replace(group, inputs={**group.inputs, "ingress": narrowed})
    broken = [r for r in skypilot_names_exist(resources, outputs) if not r.ok]
    assert [r.resource for r in broken] == ["skypilot:security-group:us-east-2"]
    assert "tcp/30080 from 10.65.0.0/16" in broken[0].value
    resources[at] = group

    # The main region's group: its standalone rule admitting a spoke goes missing.
    dropped = next(r for r in resources if r.name == f"{SKY}-us-east-1-from-region-us-east-2")
    broken = [r for r in skypilot_names_exist([r for r in resources if r is not dropped], outputs) if not r.ok]
    assert [r.resource for r in broken] == ["skypilot:security-group:us-east-1"]
    assert "tcp/30080 from 10.65.0.0/16" in broken[0].value


def test_bundle_without_phoenix_writes_no_key_fetch() -> None:
    mesh = replace(_mesh(plan("global")), ingest_key_parameter=None, phoenix_grpc_node_port=None)
    files = bundle(mesh)
    assert "phoenix-client-env.sh" not in files
    assert "PHOENIX_ENV=()" in files["join.sh"]


def test_the_computed_access_table_lists_skypilot_reading_only_the_agent_token_and_the_ingest_key() -> None:
    """From the recorded policies (the access evaluator), not from the intended list: SkyPilot's profile is a
    principal of its own and reads exactly these two secrets (never the server token)."""
    secrets = plan("global").to_json()["secrets"]
    read_by_skypilot = sorted(name for name, line in secrets.items() if "skypilot" in line["readers"])
    assert read_by_skypilot == ["k3s/agent-token", "phoenix/ingest-key"]
    assert "skypilot" not in secrets["k3s/server-token"]["readers"]
