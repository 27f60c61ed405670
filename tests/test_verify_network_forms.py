"""The AWS network model reads both ways a stack can declare routes and security-group rules: standalone
resources (``ec2.Route``, ``vpc.SecurityGroupIngressRule``/``EgressRule``, ``ec2.SecurityGroupRule``) and inline
entries (``routes`` of a ``RouteTable``/``DefaultRouteTable``, ``ingress``/``egress`` of a ``SecurityGroup``/
``DefaultSecurityGroup``), from a recording and from a preview whose ids are unknown."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from lmrun.mock_engine import RecordedResource, Recording
from lmrun.verify import tokens
from lmrun.verify.reachability import reachability_from_resources
from lmrun.verify.sources import from_preview
from tests.conftest import plan, stack_config
from tests.pulumi_documents import preview_document

MAIN = "us-east-1"


@functools.cache
def _global() -> Recording:
    return plan("global").recording


def _verdicts(source: Any, outputs: Any = None) -> dict[tuple[str, str], tuple[bool | None, str]]:
    return {(v.source, v.target): (v.ok, v.reason) for v in reachability_from_resources(source, outputs)}


def _by_id(recording: Recording) -> dict[str, RecordedResource]:
    return {r.id: r for r in recording.resources if r.id}


def _rebuild(
    recording: Recording, dropped: set[str], changed: dict[str, RecordedResource], added: list[RecordedResource] = ()
) -> Recording:
    kept = [changed.get(r.urn, r) for r in recording.resources if r.urn not in dropped]
    return replace(recording, resources=[*kept, *added])


def _with_entries(
    owner: RecordedResource, key: str, entries: list[dict[str, Any]], deps: list[str]
) -> RecordedResource:
    inputs = {**owner.inputs, key: entries}
    # The entries the owner already carries inline keep their dependencies (a spoke's private table's NAT).
    kept = owner.property_dependencies.get(key, ())
    property_dependencies = {**owner.property_dependencies, key: tuple(dict.fromkeys((*kept, *deps)))}
    return replace(
        owner,
        inputs=inputs,
        property_dependencies=property_dependencies,
        dependencies=tuple(dict.fromkeys((*owner.dependencies, *deps))),
    )


def inline_routes(recording: Recording) -> Recording:
    """Every ``ec2.Route`` moved into its table's ``routes`` (the dependencies of its targets with it), beside
    the entries a table already carries inline."""
    ids = _by_id(recording)
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    deps: dict[str, list[str]] = defaultdict(list)
    routes = recording.by_type(tokens.ROUTE)
    for route in routes:
        table = ids[route.inputs["routeTableId"]]
        entry = {k: v for k, v in route.inputs.items() if k not in ("routeTableId", "destinationCidrBlock")}
        entries[table.urn].append({"cidrBlock": route.inputs["destinationCidrBlock"], **entry})
        deps[table.urn] += [u for k, urns in route.property_dependencies.items() if k != "routeTableId" for u in urns]
    changed = {
        table.urn: _with_entries(
            table, "routes", [*(table.inputs.get("routes") or []), *entries[table.urn]], deps[table.urn]
        )
        for table in recording.by_type(tokens.ROUTE_TABLE)
    }
    return _rebuild(recording, {r.urn for r in routes}, changed)


def default_route_tables(recording: Recording) -> Recording:
    """Each VPC's first route table adopted as its main table (``DefaultRouteTable``), with no subnet
    associations; a VPC's further tables (SkyPilot's private one) keep theirs (a VPC has one main table)."""
    ids = _by_id(recording)
    changed = {}
    adopted: set[str] = set()
    for table in recording.by_type(tokens.ROUTE_TABLE):
        vpc = ids[table.inputs["vpcId"]]
        if vpc.urn in adopted:
            continue
        adopted.add(vpc.urn)
        inputs = {k: v for k, v in table.inputs.items() if k != "vpcId"}
        changed[table.urn] = replace(
            table,
            type=tokens.DEFAULT_ROUTE_TABLE,
            inputs={**inputs, "defaultRouteTableId": f"rtb-main-of-{vpc.name}"},  # the VPC's output
            property_dependencies={
                **{k: v for k, v in table.property_dependencies.items() if k != "vpcId"},
                "defaultRouteTableId": (vpc.urn,),
            },
        )
    associations = {
        r.urn for r in recording.by_type(tokens.ROUTE_TABLE_ASSOCIATION) if ids[r.inputs["routeTableId"]].urn in changed
    }
    return _rebuild(recording, associations, changed)


def _permission(rule: RecordedResource) -> dict[str, Any]:
    """A standalone rule as an inline entry: its CIDR, or the group it names (SkyPilot's groups name the mesh's)."""
    if "cidrIpv4" in rule.inputs:
        source: dict[str, Any] = {"cidrBlocks": [rule.inputs["cidrIpv4"]]}
    else:
        source = {"securityGroups": [rule.inputs["referencedSecurityGroupId"]]}
    return {
        "protocol": rule.inputs.get("ipProtocol", "-1"),
        "fromPort": rule.inputs.get("fromPort", 0),
        "toPort": rule.inputs.get("toPort", 0),
        **source,
        "description": rule.inputs.get("description", ""),
    }


def inline_security_groups(recording: Recording) -> Recording:
    """Every ``vpc.SecurityGroupIngressRule``/``EgressRule`` moved into its group's ``ingress``/``egress``
    (beside the entries a group already carries inline: the spokes' groups)."""
    ids = _by_id(recording)
    entries: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    rules = recording.by_type(tokens.SG_INGRESS_RULE) + recording.by_type(tokens.SG_EGRESS_RULE)
    for rule in rules:
        key = "ingress" if rule.type == tokens.SG_INGRESS_RULE else "egress"
        entries[(ids[rule.inputs["securityGroupId"]].urn, key)].append(_permission(rule))
    changed = {}
    for group in recording.by_type(tokens.SECURITY_GROUP):
        changed[group.urn] = replace(
            group,
            inputs={
                **group.inputs,
                "ingress": [*(group.inputs.get("ingress") or []), *entries[(group.urn, "ingress")]],
                "egress": [*(group.inputs.get("egress") or []), *entries[(group.urn, "egress")]],
            },
        )
    return _rebuild(recording, {r.urn for r in rules}, changed)


def ec2_security_group_rules(recording: Recording) -> Recording:
    """Every ``vpc.SecurityGroup*Rule`` as the older ``ec2.SecurityGroupRule`` (``type`` ingress/egress)."""
    changed = {}
    for rule in recording.by_type(tokens.SG_INGRESS_RULE) + recording.by_type(tokens.SG_EGRESS_RULE):
        direction = "ingress" if rule.type == tokens.SG_INGRESS_RULE else "egress"
        permission = _permission(rule)
        for group in permission.pop("securityGroups", ()):  # ec2.SecurityGroupRule names one source group
            permission["sourceSecurityGroupId"] = group
        inputs = {"type": direction, "securityGroupId": rule.inputs["securityGroupId"], **permission}
        changed[rule.urn] = replace(rule, type=tokens.SECURITY_GROUP_RULE, inputs=inputs)
    return _rebuild(recording, set(), changed)


FORMS: dict[str, Callable[[Recording], Recording]] = {
    "inline routes": inline_routes,
    "default route tables": lambda r: default_route_tables(inline_routes(r)),
    "default route tables, standalone routes": default_route_tables,
    "inline security group rules": inline_security_groups,
    "ec2.SecurityGroupRule": ec2_security_group_rules,
    "everything inline": lambda r: inline_security_groups(default_route_tables(inline_routes(r))),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_carries_the_same_paths_as_standalone_resources(form: str) -> None:
    recording = _global()
    transformed = FORMS[form](recording)
    assert len(transformed.resources) != len(recording.resources) or form == "ec2.SecurityGroupRule"
    assert _verdicts(transformed) == _verdicts(recording)


@pytest.mark.parametrize("form", ["inline routes", "everything inline"])
def test_every_form_read_from_a_preview_with_unknown_ids(form: str) -> None:
    """Inline entries of a first preview hold unknown ids, and the table's ``routes`` depends on every target:
    the model picks the peering that joins the table's VPC to each entry's destination."""
    transformed = FORMS[form](_global())
    config = stack_config("global").config
    snapshot, _ = from_preview(preview_document(transformed, config, show_secrets=True, stack_outputs=True))
    assert _verdicts(snapshot) == _verdicts(transformed) == _verdicts(_global())


def _drop_entry(recording: Recording, owner_name: str, key: str, match: Callable[[dict[str, Any]], bool]) -> Recording:
    owner = recording.named(owner_name)
    entries = [e for e in owner.inputs[key] if not match(e)]
    assert len(entries) == len(owner.inputs[key]) - 1
    return _rebuild(recording, set(), {owner.urn: replace(owner, inputs={**owner.inputs, key: entries})})


def test_without_an_inline_route_main_cannot_reach_the_spoke() -> None:
    for form in ("inline routes", "everything inline"):
        broken = _drop_entry(
            FORMS[form](_global()), "mesh-us-east-1-rt", "routes", lambda e: e["cidrBlock"] == "10.65.0.0/16"
        )
        failing = {key: reason for key, (ok, reason) in _verdicts(broken).items() if not ok}
        assert set(failing) == {(MAIN, "qwen"), ("us-east-2", "k3s-api")}, form
        assert "route table mesh-us-east-1-rt has no route for 10.65." in failing[(MAIN, "qwen")]
        assert (
            "peering mesh-peering-us-east-2 to mesh-us-east-2-vpc (10.65.0.0/16) would carry it"
            in failing[(MAIN, "qwen")]
        )


def test_without_an_inline_ingress_entry_main_cannot_reach_the_spokes_services() -> None:
    broken = _drop_entry(
        inline_security_groups(_global()), "mesh-us-east-2-sg", "ingress", lambda e: e["cidrBlocks"] == ["10.64.0.0/16"]
    )
    verdicts = _verdicts(broken)
    assert {key for key, (ok, _) in verdicts.items() if not ok} == {(MAIN, "qwen")}
    reason = verdicts[(MAIN, "qwen")][1]
    assert "no ingress rule of the security groups of node qwen-use2 in mesh-us-east-2-use2-" in reason
    assert "(mesh-us-east-2-sg) admits tcp/8000 from 10.64." in reason


def test_inline_ingress_is_checked_by_the_policy_pack() -> None:
    from lmrun.policy.rules import evaluate
    from lmrun.verify.sources import from_recording

    recording = inline_security_groups(_global())
    group = recording.named("mesh-us-east-2-sg")
    opened = {
        **group.inputs,
        "ingress": [
            *group.inputs["ingress"],
            {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]},
        ],
    }
    broken = _rebuild(recording, set(), {group.urn: replace(group, inputs=opened)})
    fired = {
        (v.policy, v.resource.rsplit("::", 1)[-1]) for v in evaluate(from_recording(broken)) if v.level == "mandatory"
    }
    assert fired == {("no-public-ingress", "mesh-us-east-2-sg"), ("no-ssh", "mesh-us-east-2-sg")}
