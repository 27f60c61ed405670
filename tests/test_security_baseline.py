"""The README's Security section against the recorded resources: each baseline control is checked on `dev` and
`global`, and the controls the resources deviate from must be exactly the rows of the README's table of
deviations kept. Closing a deviation, or opening a new one, fails here until the README says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from lmrun.policy.rules import RULES, default_security_group_closed, s3_tls_only
from lmrun.verify import tokens
from lmrun.verify.resources import Resource, Snapshot, flag, get, items
from tests.conftest import ROOT, plan

STACKS = ("dev", "global")
WORLD = ("0.0.0.0/0", "::/0")
AUTHORIZED_PUBLIC_PORTS = {80, 443}
"""FSBP EC2.18's default authorized ports."""
GCP_VMS = (tokens.GCP_INSTANCE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE)
BUCKET_LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")


def _subnet_public(snapshot: Snapshot, resource: Resource, path: str) -> bool:
    return any(flag(s.get("mapPublicIpOnLaunch")) for s in snapshot.refs(resource, path, (tokens.SUBNET,)))


def _public_ipv4(snapshot: Snapshot) -> list[str]:
    """FSBP EC2.9: VMs with a public IPv4 address, auto-assigned by their subnet or an Elastic IP."""
    found = [
        r.name
        for r in snapshot.of_type(tokens.INSTANCE)
        if _subnet_public(snapshot, r, "subnetId") or snapshot.dependents(r, tokens.EIP_ASSOCIATION)
    ]
    found += [
        r.name for r in snapshot.of_type(tokens.AUTOSCALING_GROUP) if _subnet_public(snapshot, r, "vpcZoneIdentifiers")
    ]
    return found


def _world_ingress(snapshot: Snapshot) -> list[str]:
    """FSBP EC2.18: inbound from anywhere to a port other than 80 and 443."""
    found = []
    for group in snapshot.of_type(tokens.SECURITY_GROUP, tokens.DEFAULT_SECURITY_GROUP):
        for rule in items(group.get("ingress")):
            sources = [*items(get(rule, "cidrBlocks")), *items(get(rule, "ipv6CidrBlocks"))]
            ports = {get(rule, "fromPort"), get(rule, "toPort")}
            if set(map(str, sources)) & set(WORLD) and not ports <= AUTHORIZED_PUBLIC_PORTS:
                found.append(group.name)
    for rule in snapshot.of_type(tokens.SG_INGRESS_RULE):
        ports = {rule.get("fromPort"), rule.get("toPort")}
        world = rule.get("cidrIpv4") in WORLD or rule.get("cidrIpv6") in WORLD
        if world and not ports <= AUTHORIZED_PUBLIC_PORTS:
            found.append(rule.name)
    return found


def _gcp_flow_logs(snapshot: Snapshot) -> list[str]:
    """CIS GCP 3.8: every subnet logs its flows with 5-second aggregation, all flows sampled, all metadata."""
    recommended = {"aggregationInterval": "INTERVAL_5_SEC", "flowSampling": 1, "metadata": "INCLUDE_ALL_METADATA"}
    return [
        s.name
        for s in snapshot.of_type(tokens.GCP_SUBNETWORK)
        if any(get(s.inputs, "logConfig", key) != value for key, value in recommended.items())
    ]


def _metadata(resource: Resource, key: str) -> str:
    return str(get(resource.inputs, "metadata", key) or "").upper()


CONTROLS: dict[str, Callable[[Snapshot], list[str]]] = {
    "FSBP EC2.2": lambda s: [f.resource for f in default_security_group_closed(s)],
    "FSBP EC2.6": lambda s: [v.name for v in s.of_type(tokens.VPC) if not s.dependents(v, tokens.FLOW_LOG)],
    "FSBP EC2.8": lambda s: [
        r.name
        for r in s.of_type(tokens.INSTANCE, tokens.LAUNCH_TEMPLATE)
        if get(r.inputs, "metadataOptions", "httpTokens") != "required"
    ],
    "FSBP EC2.9": _public_ipv4,
    "FSBP EC2.15": lambda s: [r.name for r in s.of_type(tokens.SUBNET) if flag(r.get("mapPublicIpOnLaunch"))],
    "FSBP EC2.18": _world_ingress,
    "FSBP S3.5": lambda s: [f.resource for f in s3_tls_only(s)],
    "FSBP S3.9": lambda s: [b.name for b in s.of_type(*tokens.S3_BUCKETS) if not s.dependents(b, *BUCKET_LOGGING)],
    "CIS GCP 3.8": _gcp_flow_logs,
    "CIS GCP 4.3": lambda s: [r.name for r in s.of_type(*GCP_VMS) if _metadata(r, "block-project-ssh-keys") != "TRUE"],
    "CIS GCP 4.4": lambda s: [r.name for r in s.of_type(*GCP_VMS) if _metadata(r, "enable-oslogin") != "TRUE"],
    "CIS GCP 4.6": lambda s: [r.name for r in s.of_type(*GCP_VMS) if flag(r.get("canIpForward"))],
    "CIS GCP 4.8": lambda s: [
        r.name
        for r in s.of_type(*GCP_VMS)
        if not all(
            flag(get(r.inputs, "shieldedInstanceConfig", key))
            for key in ("enableSecureBoot", "enableVtpm", "enableIntegrityMonitoring")
        )
    ],
    "CIS GCP 4.9": lambda s: [
        r.name
        for r in s.of_type(*GCP_VMS)
        if any(items(get(i, "accessConfigs")) for i in items(r.get("networkInterfaces")))
    ],
}
"""Baseline control -> the resources of a snapshot that deviate from it (empty: compliant)."""


def _security_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Security\n")
    return text[start : text.index("\n## ", start + 1)]


def _deviation_rows() -> dict[str, list[str]]:
    """README table of deviations kept: control -> its cells (where, why, bounded by)."""
    rows = {}
    for line in _security_section().splitlines():
        match = re.match(r"^\| ((?:FSBP|CIS GCP) [A-Z]*[0-9.]+?) \(", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip("|").split("|")[1:]]
    return rows


def _deviations(stack: str) -> dict[str, list[str]]:
    snapshot = plan(stack).snapshot
    return {control: found for control, check in CONTROLS.items() if (found := check(snapshot))}


def test_the_readme_lists_exactly_the_deviations_the_stacks_keep() -> None:
    kept = {control for stack in STACKS for control in _deviations(stack)}
    assert set(_deviation_rows()) == kept


def test_every_row_is_a_checked_control_and_every_rule_named_exists() -> None:
    rows = _deviation_rows()
    assert len(rows) >= 9 and set(rows) <= set(CONTROLS)
    for control, (where, why, bounded) in rows.items():
        assert where and why and bounded, control
    # Hyphenated words in backticks are rule names (resource names, which start with `mesh-`, aside).
    named = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`", _security_section()))
    rules = {name for name in named if not name.startswith("mesh-")}
    assert len(rules) >= 10 and rules <= set(RULES), sorted(rules - set(RULES))


@pytest.mark.parametrize(
    ("control", "stack", "expected"),
    [
        ("FSBP EC2.2", "global", []),
        ("FSBP EC2.8", "global", []),
        ("FSBP S3.5", "global", []),
        ("FSBP EC2.6", "global", []),
        ("FSBP EC2.6", "dev", ["mesh-us-east-1-vpc"]),
        ("FSBP EC2.18", "global", ["mesh-sites-hub-sg-wireguard"]),
        ("FSBP EC2.18", "dev", []),
        ("CIS GCP 4.6", "global", ["mesh-sites-gcp-usc1-gateway"]),
        ("CIS GCP 4.8", "global", ["mesh-sites-gcp-usc1-node-l4-gcp-template"]),
        ("CIS GCP 4.9", "global", ["mesh-sites-gcp-usc1-gateway"]),
        ("CIS GCP 3.8", "global", ["mesh-sites-gcp-usc1-subnet"]),
        ("CIS GCP 4.3", "global", []),
        ("CIS GCP 4.4", "global", []),
    ],
)
def test_each_check_finds_what_the_readme_says(control: str, stack: str, expected: list[str]) -> None:
    """The checks can fail: they find the resources the README names, and nothing where it claims none."""
    assert sorted(CONTROLS[control](plan(stack).snapshot)) == expected


def test_public_addresses_and_access_logging_cover_every_vm_and_bucket() -> None:
    snapshot = plan("global").snapshot
    public = set(CONTROLS["FSBP EC2.9"](snapshot))
    machines = {r.name for r in snapshot.of_type(tokens.INSTANCE, tokens.AUTOSCALING_GROUP)}
    assert public == machines and "mesh-sites-hub-instance" in public
    unlogged = set(CONTROLS["FSBP S3.9"](snapshot))
    buckets = {b.name for b in snapshot.of_type(*tokens.S3_BUCKETS)}
    assert unlogged == buckets and {"mesh-cluster-phoenix-store-backups", "mesh-flow-logs-bucket"} <= buckets


def test_turning_flow_logs_on_in_dev_closes_ec2_6() -> None:
    snapshot = plan("dev", flowLogs={"enabled": True}).snapshot
    assert CONTROLS["FSBP EC2.6"](snapshot) == []


def test_the_flow_log_figures_in_the_readme_are_the_plans() -> None:
    cost: Any = plan("global").cost
    match = re.search(r"For `global`: (\d+) VMs in (\d+) networks, ~\$([0-9.]+)/month", _security_section())
    assert match is not None
    assert (int(match[1]), int(match[2])) == (cost.flow_logs.vms, cost.flow_logs.networks)
    assert float(match[3]) == round(cost.flow_logs_monthly_usd, 2)
