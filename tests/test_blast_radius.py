"""Blast radius of each kind of metadata edit on `global`: two mock recordings compared, and exactly which
resources (and which of their inputs) may change.

What a changed input means in a real `pulumi up`: a launch template's user data rolls its node (instance
refresh), a GCP instance template is immutable (its group replaces the VM), an instance's user data replaces
it (``user_data_replace_on_change``). Tags and labels update in place everywhere except on those templates,
which is why the templates carry only identity tags (``lmrun.components.naming.identity_tags``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
import yaml

from lmrun.verify.offline import PlanReport, plan_stack
from tests.conftest import ROOT, plan, stack_config

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
GCP_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GCP_GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
ROLLING = {LAUNCH_TEMPLATE, GCP_TEMPLATE, GCP_GROUP}
"""Types whose every change replaces or rolls a node."""
TAG_INPUTS = ("tags", "tags.", "labels", "labels.", "rootBlockDevice.tags")


def _changes(before: PlanReport, after: PlanReport, *, adds: bool = False) -> dict[str, set[str]]:
    """Resource name -> the inputs that differ, one level into a map (``tags.owner``, ``metadata.user-data``);
    every resource of one recording must be in the other (an edit of metadata adds and removes nothing), or,
    with ``adds``, every resource of ``before`` in ``after``."""
    old = {r.urn: r for r in before.recording.resources}
    new = {r.urn: r for r in after.recording.resources}
    if adds:
        assert set(old) <= set(new), sorted(set(old) - set(new))
    else:
        assert set(old) == set(new), sorted(set(old) ^ set(new))
    changed: dict[str, set[str]] = {}
    for urn, resource in old.items():
        a, b = resource.inputs, new[urn].inputs
        keys = set()
        for key in set(a) | set(b):
            if a.get(key) == b.get(key):
                continue
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                nested = {k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k)}
                keys |= {f"{key}.{k}" for k in nested}
            else:
                keys.add(key)
        if keys:
            changed[resource.name] = keys
    return changed


def _global_config(key: str) -> Any:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"][f"lmrun:{key}"]


def _types(report: PlanReport) -> dict[str, str]:
    return {r.name: r.type for r in report.recording.resources}


def test_a_tag_changes_tags_and_labels_only_and_no_template() -> None:
    """Adding a tag updates tags in place (instances, volumes, VPCs, ...) and the GPU groups' propagated tags
    (new instances get it); no launch template, instance template or user data changes: no node rolls."""
    before = plan("global")
    after = plan("global", tags={**_global_config("tags"), "owner": "platform-team"})
    changes = _changes(before, after)
    types = _types(before)
    assert changes, "the new tag reaches the taggable resources"
    for name, keys in changes.items():
        assert all(key.startswith(TAG_INPUTS) for key in keys), (name, keys)
        assert types[name] not in ROLLING, name
    groups = {name for name, type_ in types.items() if type_ == "aws:autoscaling/group:Group"}
    assert groups and groups <= set(changes), "the GPU groups propagate the new tag to the instances they launch"
    for name in groups:
        tags = {t["key"]: t for t in after.recording.named(name).inputs["tags"]}
        assert tags["owner"] == {"key": "owner", "value": "platform-team", "propagateAtLaunch": True}


def test_the_hugging_face_token_changes_its_secret_only() -> None:
    """Setting `huggingFaceToken` changes the SSM parameter's value and the GCP site's secret version: no
    launch template, instance template or IAM policy (nodes read the token at every vLLM start)."""
    config = stack_config("global", huggingFaceToken="hf_BlastRadiusTestToken0123456789")
    config = dataclasses.replace(config, secret_keys=(*config.secret_keys, "lmrun:huggingFaceToken"))
    after = plan_stack(ROOT, config, preview=False)
    assert _changes(plan("global"), after) == {
        "mesh-cluster-hf-token": {"value"},
        "mesh-sites-gcp-usc1-hf-token-version": {"secretData"},
    }


def test_a_k3s_version_bump_changes_exactly_every_k3s_machine() -> None:
    """A new K3s release must reach the server and every agent (an agent newer than the server is refused):
    the server and the Phoenix node are replaced, every GPU node rolls (AWS launch templates, the GCP
    template); nothing else changes: no volume, no gateway, no parameter."""
    changes = _changes(plan("global"), plan("global", k3sVersion="v1.33.7+k3s1"))
    assert changes == {
        "mesh-cluster-k3s-instance": {"userDataBase64"},
        "mesh-cluster-phoenix-instance": {"userDataBase64"},
        "mesh-cluster-node-qwen-use2-lt": {"userData"},
        "mesh-cluster-node-qwen-usw2-lt": {"userData"},
        "mesh-cluster-node-phi-euw1-lt": {"userData"},
        "mesh-cluster-node-l4-pool-use1-0-lt": {"userData"},
        "mesh-sites-gcp-usc1-node-l4-gcp-template": {"metadata.user-data"},
    }


def test_the_token_split_keeps_the_clusters_server_token() -> None:
    """The one-time migration from one join token to a server and an agent token: the server token answers to the
    old token's name with the same arguments, so Pulumi adopts it with its value (pulumi-random replaces a
    password only when an argument changes): the cluster's bootstrap data on the state volume, encrypted with it,
    stays readable. The agent token is new; what else the upgrade replaces is listed in the README."""
    recording = plan("global").recording
    server_token = recording.named("mesh-cluster-k3s-server-token")
    assert server_token.aliases == ("mesh-cluster-k3s-token",)
    assert server_token.inputs == {"length": 64, "special": False}
    agent_token = recording.named("mesh-cluster-k3s-agent-token")
    assert agent_token.aliases == () and agent_token.inputs == server_token.inputs


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"backupRetentionDays": 14}, {"mesh-cluster-phoenix-store-backups-lifecycle": {"rules"}}),
        # Trace retention and the backup schedule are Phoenix's own settings: its node is replaced (the data
        # volume, protected and retained, is attached to the new one), nothing else.
        ({"retentionDays": 14}, {"mesh-cluster-phoenix-instance": {"userDataBase64"}}),
        ({"backupIntervalMinutes": 30}, {"mesh-cluster-phoenix-instance": {"userDataBase64"}}),
    ],
    ids=["backup-retention", "trace-retention", "backup-interval"],
)
def test_a_phoenix_retention_edit_changes_phoenix_only(edit: dict[str, int], expected: dict[str, set[str]]) -> None:
    assert _changes(plan("global"), plan("global", phoenix=edit)) == expected


@pytest.mark.parametrize(
    ("site", "expected"),
    [
        (
            "lab-onprem",
            {"mesh-sites-lab-onprem-key": {"keepers.keyEpoch"}, "mesh-sites-hub-config": {"value"}},
        ),
        (
            "gcp-usc1",
            {
                "mesh-sites-gcp-usc1-key": {"keepers.keyEpoch"},
                "mesh-sites-hub-config": {"value"},
                # The gateway re-reads its config from Secret Manager (wireguard-refresh): no new VM.
                "mesh-sites-gcp-usc1-wireguard-version": {"secretData"},
            },
        ),
    ],
)
def test_a_key_epoch_bump_changes_that_sites_key_and_the_hubs_peer_entry_only(
    site: str, expected: dict[str, set[str]]
) -> None:
    sites = [{**s, "keyEpoch": 1} if s["name"] == site else s for s in _global_config("sites")]
    assert _changes(plan("global"), plan("global", sites=sites)) == expected


def test_turning_flow_logs_on_adds_the_logs_and_their_bucket_and_rolls_no_node() -> None:
    """`lmrun:flowLogs.enabled`: one flow log per VPC and the bucket's six resources are added; the only change
    to an existing resource is the GCP site's subnetwork (``logConfig``, updated in place): no instance, launch
    template, instance template or group changes."""
    before = plan("global", flowLogs={"enabled": False})
    after = plan("global")
    assert _changes(before, after, adds=True) == {"mesh-sites-gcp-usc1-subnet": {"logConfig"}}
    old = {r.urn for r in before.recording.resources}
    added = [r for r in after.recording.resources if r.urn not in old]
    assert all(r.name.startswith("mesh-flow-logs") for r in added), [r.name for r in added]
    counts = Counter(r.type for r in added)
    assert counts.pop("aws:ec2/flowLog:FlowLog") == len(after.regions)
    assert counts == Counter(
        {
            "lmrun:index:FlowLogs": 1,
            "aws:s3/bucket:Bucket": 1,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
            "aws:s3/bucketVersioning:BucketVersioning": 1,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
            "aws:s3/bucketPolicy:BucketPolicy": 1,
        }
    )
    assert not ROLLING & {r.type for r in added}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"retentionDays": 30}, {"mesh-flow-logs-bucket-lifecycle": {"rules"}}),
        ({"monthlyGbPerVm": 2}, {}),  # the cost estimate's assumption only
        ({"sampling": 0.5}, {"mesh-sites-gcp-usc1-subnet": {"logConfig.flowSampling"}}),
    ],
    ids=["retention", "volume-assumption", "sampling"],
)
def test_a_flow_log_setting_changes_the_logs_only(edit: dict[str, object], expected: dict[str, set[str]]) -> None:
    assert _changes(plan("global"), plan("global", flowLogs={"enabled": True, **edit})) == expected
