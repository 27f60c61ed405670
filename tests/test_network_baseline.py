"""Network least privilege and the audit trail, read from the recorded resources: every VPC's default security
group closed, flow logs of every VPC and GCP site subnet when `lmrun:flowLogs` is on (and none when off), the
bucket they land in, their config errors, the policy rules that hold them and their line in the cost estimate."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lmrun.aws import prices
from lmrun.components.buckets import bucket_policy_document
from lmrun.components.flow_logs import delivery_statements
from lmrun.gcp import catalog as gcp_catalog
from lmrun.mock_engine.aws_mocks import MOCK_ACCOUNT_ID
from lmrun.policy.rules import (
    Finding,
    default_security_group_closed,
    evaluate,
    flow_logs_cover_every_network,
    s3_tls_only,
)
from lmrun.spec import ConfigError, parse_spec
from lmrun.verify import tokens
from lmrun.verify.cost import estimate_cost
from lmrun.verify.offline import PlanReport
from lmrun.verify.resources import Resource, Snapshot
from tests.conftest import plan

MAIN = "us-east-1"
OFF = {"enabled": False}


def _vpc_of(report: PlanReport, resource: Resource) -> Resource:
    vpc = report.snapshot.ref(resource, "vpcId", (tokens.VPC,))
    assert vpc is not None, resource.name
    return vpc


# --- the default security group --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_every_vpc_adopts_its_default_security_group_with_no_rule(stack: str, preview: bool) -> None:
    """FSBP EC2.2: AWS's default group admits all traffic from itself and sends anywhere; every VPC of the mesh
    adopts it with both rule lists empty (``[]``, so a rule added by hand shows as drift)."""
    report = plan(stack, preview=preview)
    vpcs = report.snapshot.of_type(tokens.VPC)
    groups = report.snapshot.of_type(tokens.DEFAULT_SECURITY_GROUP)
    assert len(vpcs) == len(report.regions) and len(groups) == len(vpcs)
    owners = {_vpc_of(report, group).urn: group for group in groups}
    assert set(owners) == {vpc.urn for vpc in vpcs}
    for group in groups:
        assert group.inputs["ingress"] == [] and group.inputs["egress"] == [], group.name
        assert group.provider_urn == _vpc_of(report, group).provider_urn, group.name


def test_no_machine_relies_on_a_default_security_group() -> None:
    """Closing the default group changes no traffic: every instance and launch template names its groups."""
    recording = plan("global").recording
    for resource in [*recording.by_type(tokens.INSTANCE), *recording.by_type(tokens.LAUNCH_TEMPLATE)]:
        assert resource.inputs.get("vpcSecurityGroupIds"), resource.name


# --- flow logs on and off --------------------------------------------------------------------------------


def test_global_logs_the_flows_of_every_vpc_into_one_bucket_and_of_its_gcp_subnet(preview: bool) -> None:
    report = plan("global", preview=preview)
    snapshot = report.snapshot
    bucket = snapshot.by_urn[next(r.urn for r in snapshot.of_type(*tokens.S3_BUCKETS) if "flow-logs" in r.name)]
    policy = next(r for r in snapshot.of_type(tokens.S3_BUCKET_POLICY) if r.name == "mesh-flow-logs-bucket-policy")
    flow_logs = snapshot.of_type(tokens.FLOW_LOG)
    by_vpc = {_vpc_of(report, flow_log).urn: flow_log for flow_log in flow_logs}
    assert set(by_vpc) == {vpc.urn for vpc in snapshot.of_type(tokens.VPC)}
    assert len(flow_logs) == len(by_vpc) == 18
    for vpc_urn, flow_log in by_vpc.items():
        assert flow_log.inputs["trafficType"] == "ALL"
        assert flow_log.inputs["logDestinationType"] == "s3"
        assert flow_log.inputs["maxAggregationInterval"] == 600
        assert bucket.urn in flow_log.property_dependencies["logDestination"]
        assert policy.urn in flow_log.dependencies, "the policy must exist before EC2 writes its own"
        assert flow_log.provider_urn == snapshot.by_urn[vpc_urn].provider_urn, flow_log.name
    (subnet,) = snapshot.of_type(tokens.GCP_SUBNETWORK)
    assert subnet.inputs["logConfig"] == {
        "aggregationInterval": "INTERVAL_10_MIN",
        "flowSampling": 1,
        "metadata": "INCLUDE_ALL_METADATA",
    }


@pytest.mark.parametrize(
    ("settings", "interval", "sampling"),
    [({"aggregationIntervalSeconds": 60, "sampling": 0.25}, "INTERVAL_1_MIN", 0.25)],
)
def test_the_one_option_sets_both_clouds(settings: dict[str, Any], interval: str, sampling: float) -> None:
    recording = plan("global", flowLogs={"enabled": True, **settings}).recording
    assert {r.inputs["maxAggregationInterval"] for r in recording.by_type(tokens.FLOW_LOG)} == {60}
    (subnet,) = recording.by_type(tokens.GCP_SUBNETWORK)
    assert subnet.inputs["logConfig"]["aggregationInterval"] == interval
    assert subnet.inputs["logConfig"]["flowSampling"] == sampling


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("global", {"flowLogs": OFF})])
def test_no_flow_log_and_no_bucket_when_the_option_is_off(stack: str, overrides: dict[str, Any]) -> None:
    report = plan(stack, **overrides)
    recording = report.recording
    assert not recording.by_type(tokens.FLOW_LOG)
    assert not [r for r in recording.resources if r.name.startswith("mesh-flow-logs")]
    assert all("logConfig" not in s.inputs for s in recording.by_type(tokens.GCP_SUBNETWORK))
    assert report.outputs["flowLogs"] is None
    assert report.cost.flow_logs is None and report.cost.flow_logs_monthly_usd == 0


# --- the bucket ------------------------------------------------------------------------------------------


def _named(report: PlanReport, suffix: str) -> Any:
    return report.recording.named(f"mesh-flow-logs-{suffix}")


def test_the_bucket_is_private_encrypted_versioned_expiring_and_outlives_the_stack() -> None:
    report = plan("global")
    bucket = _named(report, "bucket")
    access = _named(report, "bucket-public-access").inputs
    assert all(
        access[key] for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    encryption = _named(report, "bucket-encryption").inputs["rules"]
    assert encryption == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    assert _named(report, "bucket-versioning").inputs["versioningConfiguration"] == {"status": "Enabled"}
    (rule,) = _named(report, "bucket-lifecycle").inputs["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": "AWSLogs/"}
    assert rule["expiration"] == {"days": 90} and rule["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    kept = [r for r in report.recording.resources if r.name.startswith("mesh-flow-logs-bucket")]
    assert len(kept) == 6 and all(r.retain_on_delete for r in kept)
    assert bucket.provider_urn.endswith(f"mesh-aws-{MAIN}")
    assert plan("global", flowLogs={"enabled": True, "retentionDays": 400}).recording.named(
        "mesh-flow-logs-bucket-lifecycle"
    ).inputs["rules"][0]["expiration"] == {"days": 400}


def bucket_policy(arn: str, account: str) -> str:
    return bucket_policy_document(arn, *delivery_statements(arn, account))


def test_the_bucket_policy_admits_flow_log_delivery_from_this_account_only_and_never_plain_http() -> None:
    report = plan("global")
    arn = report.recording.named("mesh-flow-logs-bucket").outputs["arn"]
    document = json.loads(_named(report, "bucket-policy").inputs["policy"])
    assert document == json.loads(bucket_policy(arn, MOCK_ACCOUNT_ID)), "the account is the main VPC's owner"
    statements = {s["Sid"]: s for s in json.loads(bucket_policy("arn:aws:s3:::logs", "111122223333"))["Statement"]}
    assert set(statements) == {"AWSLogDeliveryWrite", "AWSLogDeliveryAclCheck", "DenyInsecureTransport"}
    source = {
        "StringEquals": {"aws:SourceAccount": "111122223333"},
        "ArnLike": {"aws:SourceArn": "arn:aws:logs:*:111122223333:*"},
    }
    write = statements["AWSLogDeliveryWrite"]
    assert write["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert write["Action"] == "s3:PutObject" and write["Resource"] == "arn:aws:s3:::logs/AWSLogs/111122223333/*"
    assert write["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "111122223333", "s3:x-amz-acl": "bucket-owner-full-control"},
        "ArnLike": source["ArnLike"],
    }
    check = statements["AWSLogDeliveryAclCheck"]
    assert check["Action"] == ["s3:GetBucketAcl", "s3:ListBucket"]
    assert check["Resource"] == "arn:aws:s3:::logs" and check["Condition"] == source
    deny = statements["DenyInsecureTransport"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
    assert deny["Resource"] == ["arn:aws:s3:::logs", "arn:aws:s3:::logs/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Another partition's bucket names that partition's log sources.
    china = json.loads(bucket_policy("arn:aws-cn:s3:::logs", "111122223333"))["Statement"][0]
    assert china["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws-cn:logs:*:111122223333:*"}


# --- config ----------------------------------------------------------------------------------------------


def test_flow_log_settings_are_refused_with_their_config_paths_all_at_once() -> None:
    raw = {
        "mainRegion": MAIN,
        "flowLogs": {
            "enabled": "sometimes",
            "retentionDays": 0,
            "aggregationIntervalSeconds": 300,
            "sampling": 0,
            "monthlyGbPerVm": -1,
            "retention": 30,
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_spec(raw)
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "lmrun:flowLogs.aggregationIntervalSeconds",
        "lmrun:flowLogs.enabled",
        "lmrun:flowLogs.monthlyGbPerVm",
        "lmrun:flowLogs.retention",
        "lmrun:flowLogs.retentionDays",
        "lmrun:flowLogs.sampling",
    ]
    messages = {issue.path: issue.message for issue in caught.value.issues}
    assert "60" in messages["lmrun:flowLogs.aggregationIntervalSeconds"]
    assert "600" in messages["lmrun:flowLogs.aggregationIntervalSeconds"]


def test_flow_logs_are_off_by_default_in_the_spec_and_on_in_global_only() -> None:
    spec = parse_spec({"mainRegion": MAIN})
    assert not spec.flow_logs.enabled and spec.flow_logs.retention_days == 90
    assert plan("dev").outputs["flowLogs"] is None
    assert plan("global").outputs["flowLogs"] == {
        "retention_days": 90,
        "aggregation_interval_seconds": 600,
        "sampling": 1.0,
        "monthly_gb_per_vm": 0.25,
    }


# --- policy ----------------------------------------------------------------------------------------------


def _without(report: PlanReport, *names: str) -> Snapshot:
    return Snapshot([r for r in report.snapshot.resources if r.name not in names], report.outputs)


def test_a_vpc_whose_default_group_is_not_adopted_or_has_a_rule_fails_the_policy() -> None:
    report = plan("dev")
    assert default_security_group_closed(report.snapshot) == []
    findings = default_security_group_closed(_without(report, "mesh-us-east-1-default-sg"))
    assert [f.message for f in findings] == [
        "the VPC's default security group is not adopted: it keeps AWS's default rules"
    ]
    assert "mesh-us-east-1-vpc" in findings[0].resource
    group = report.snapshot.by_urn[report.recording.named("mesh-us-east-1-default-sg").urn]
    opened = dataclasses.replace(group, inputs={**group.inputs, "ingress": [{"protocol": "-1", "self": True}]})
    rules = [opened if r is group else r for r in report.snapshot.resources]
    assert default_security_group_closed(Snapshot(rules)) == [
        Finding(group.label, "default security group has rules (1 ingress); it must have none")
    ]


def test_flow_logs_must_cover_every_network_once_any_network_logs(preview: bool) -> None:
    report = plan("global", preview=preview)
    assert flow_logs_cover_every_network(report.snapshot) == []
    findings = flow_logs_cover_every_network(_without(report, "mesh-flow-logs-eu-west-2"))
    assert [f.message for f in findings] == ["VPC has no flow log"]
    assert "mesh-eu-west-2-vpc" in findings[0].resource
    # Off everywhere: nothing to cover, unless the pack's config demands flow logs.
    dev = plan("dev").snapshot
    assert flow_logs_cover_every_network(dev) == []
    demanded = flow_logs_cover_every_network(dev, {"requireFlowLogs": True})
    assert [f.message for f in demanded] == ["VPC has no flow log"]


def test_a_gcp_subnet_without_log_config_beside_logged_vpcs_fails_the_policy() -> None:
    report = plan("global")
    subnet = report.snapshot.by_urn[report.recording.named("mesh-sites-gcp-usc1-subnet").urn]
    unlogged = dataclasses.replace(subnet, inputs={k: v for k, v in subnet.inputs.items() if k != "logConfig"})
    resources = [unlogged if r is subnet else r for r in report.snapshot.resources]
    assert flow_logs_cover_every_network(Snapshot(resources)) == [
        Finding(subnet.label, "subnetwork has no logConfig (no flow logs)")
    ]


def test_both_rules_pass_on_the_example_stacks_through_the_pack() -> None:
    for stack in ("dev", "global"):
        names = {v.policy for v in evaluate(plan(stack).snapshot)}
        assert not names & {"default-security-group-closed", "flow-logs-cover-every-network"}, stack


# --- cost ------------------------------------------------------------------------------------------------


def _flow_log_items(report: PlanReport) -> dict[str, tuple[str, float]]:
    return {i.resource: (i.what, i.monthly_usd) for i in report.cost.items if i.category == "flow_logs"}


def test_the_cost_estimate_prices_flow_logs_per_vm_from_the_stated_assumption(preview: bool) -> None:
    report = plan("global", preview=preview)
    gb = 0.25
    kept_months = (90 + 1 + 1) / (365 / 12)
    per_aws_vm = gb * prices.VENDED_LOGS_TO_S3_USD_GB + gb * kept_months * prices.S3_STANDARD_USD_GB_MONTH
    per_gcp_vm = gb * 1e9 / 2**30 * gcp_catalog.CLOUD_LOGGING_USD_GIB
    items = _flow_log_items(report)
    # The main VPC holds the K3s server, Phoenix, the WireGuard hub and the GPU pool's node; three spokes one GPU
    # group each; the GCP site its gateway and one GPU node. The other 14 spokes hold no VM: nothing to log, no line.
    vms = {
        "mesh-flow-logs-us-east-1": 4,
        "mesh-flow-logs-us-east-2": 1,
        "mesh-flow-logs-us-west-2": 1,
        "mesh-flow-logs-eu-west-1": 1,
        "mesh-sites-gcp-usc1-subnet": 2,
    }
    assert set(items) == set(vms)
    for name, count in vms.items():
        what, usd = items[name]
        assert what.startswith(f"{count} VM(s) x 0.25 GB/month"), what
        expected = count * (per_gcp_vm if "gcp" in name else per_aws_vm)
        assert usd == pytest.approx(expected), name
    assert report.cost.flow_logs_monthly_usd == pytest.approx(7 * per_aws_vm + 2 * per_gcp_vm)
    assumption = report.to_json()["cost"]["flow_logs"]
    assert assumption["monthly_gb_per_vm"] == 0.25 and assumption["source"] == "lmrun:flowLogs.monthlyGbPerVm"
    assert (assumption["networks"], assumption["vms"]) == (19, 9)


def test_the_flow_log_cost_follows_the_users_volume_and_sampling() -> None:
    base = plan("global").cost.flow_logs_monthly_usd
    doubled = plan("global", flowLogs={"enabled": True, "monthlyGbPerVm": 0.5})
    assert doubled.cost.flow_logs_monthly_usd == pytest.approx(2 * base, abs=0.01)
    sampled = _flow_log_items(plan("global", flowLogs={"enabled": True, "sampling": 0.5}))
    assert sampled["mesh-sites-gcp-usc1-subnet"][1] == pytest.approx(
        _flow_log_items(plan("global"))["mesh-sites-gcp-usc1-subnet"][1] / 2
    )


def test_without_the_export_the_estimate_says_it_used_the_built_in_default() -> None:
    report = plan("global")
    cost = estimate_cost(report.snapshot, {**report.outputs, "flowLogs": None})
    assert cost.flow_logs is not None and cost.flow_logs.source.startswith("built-in default")
    assert cost.flow_logs.monthly_gb_per_vm == 0.25


def test_flow_logs_to_another_destination_are_listed_as_unpriced() -> None:
    report = plan("global")
    flow_log = report.snapshot.by_urn[report.recording.named("mesh-flow-logs-us-east-2").urn]
    other = dataclasses.replace(flow_log, inputs={**flow_log.inputs, "logDestinationType": "cloud-watch-logs"})
    resources = [other if r is flow_log else r for r in report.snapshot.resources]
    cost = estimate_cost(Snapshot(resources, report.outputs))
    assert "mesh-flow-logs-us-east-2: flow logs to cloud-watch-logs (priced for S3 only)" in cost.unpriced
    assert "mesh-flow-logs-us-east-2" not in {i.resource for i in cost.items}


def test_a_bucket_that_accepts_plain_http_fails_the_policy() -> None:
    """FSBP S3.5: both buckets of `global` deny requests without TLS; without the policy, or with one that
    denies on the objects only, the rule names the bucket."""
    report = plan("global")
    assert s3_tls_only(report.snapshot) == []
    backups = report.recording.named("mesh-cluster-phoenix-store-backups").urn
    assert s3_tls_only(_without(report, "mesh-cluster-phoenix-store-backups-policy")) == [
        Finding(backups, "bucket has no BucketPolicy (plain HTTP requests are not refused)")
    ]
    policy = report.snapshot.by_urn[report.recording.named("mesh-cluster-phoenix-store-backups-policy").urn]
    document = json.loads(policy.inputs["policy"])
    document["Statement"][0]["Resource"] = [r for r in document["Statement"][0]["Resource"] if r.endswith("/*")]
    weak = dataclasses.replace(policy, inputs={**policy.inputs, "policy": json.dumps(document)})
    findings = s3_tls_only(Snapshot([weak if r is policy else r for r in report.snapshot.resources]))
    assert [f.resource for f in findings] == [backups]
    assert "does not deny requests without TLS" in findings[0].message
