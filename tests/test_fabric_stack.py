"""Whole-stack tests of the fabric on the `global` stack: peering hub, providers, tags, blast radius."""

from __future__ import annotations

import inspect
from collections import Counter

import pulumi_aws as aws
import pytest

from lmrun.mock_engine import RecordedResource, Recording, RecordingMocks
from lmrun.verify.offline import plan_stack
from tests.conftest import ROOT, plan, stack_config

PEERING = "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
ACCEPTER = "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
ROUTE = "aws:ec2/route:Route"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
VPC = "aws:ec2/vpc:Vpc"
MAIN = "us-east-1"


def _provider_regions(recording: Recording) -> dict[str, str]:
    """Provider URN -> region it is configured for."""
    return {r.urn: r.inputs["region"] for r in recording.resources if r.type == "pulumi:providers:aws"}


def _by_id(recording: Recording) -> dict[str, RecordedResource]:
    """Mock ids are `<name>-id`; map them back to resources to follow references."""
    return {f"{r.name}-id": r for r in recording.resources}


def _vpc_region(recording: Recording, vpc_id: str) -> str:
    vpc = _by_id(recording)[vpc_id]
    return _provider_regions(recording)[vpc.provider_urn]


def test_global_declares_at_least_fifteen_spokes() -> None:
    regions = plan("global").regions
    assert regions[MAIN]["role"] == "main"
    spokes = [name for name, info in regions.items() if info["role"] == "spoke"]
    assert len(spokes) >= 15
    assert len(plan("global").recording.by_type(VPC)) == len(regions)


def test_every_spoke_has_exactly_one_peering_with_accepter_in_main(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    regions = _provider_regions(recording)
    spokes = sorted(name for name, info in plan("global").regions.items() if info["role"] == "spoke")

    peerings_by_spoke = Counter(regions[p.provider_urn] for p in recording.by_type(PEERING))
    assert peerings_by_spoke == Counter(spokes)
    by_id = _by_id(recording)
    for peering in recording.by_type(PEERING):
        spoke = regions[peering.provider_urn]
        assert peering.inputs["peerRegion"] == MAIN
        assert peering.inputs["autoAccept"] is False
        assert _vpc_region(recording, peering.inputs["vpcId"]) == spoke
        assert _vpc_region(recording, peering.inputs["peerVpcId"]) == MAIN
        accepters = [
            a for a in recording.by_type(ACCEPTER) if a.inputs["vpcPeeringConnectionId"] == f"{peering.name}-id"
        ]
        assert len(accepters) == 1, spoke
        assert regions[accepters[0].provider_urn] == MAIN
        assert accepters[0].inputs["autoAccept"] is True
        assert by_id[f"{peering.name}-id"] is peering


def test_routes_both_ways_through_the_peering(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    regions = _provider_regions(recording)
    cidrs = {name: info["cidr"] for name, info in plan("global").regions.items()}
    by_id = _by_id(recording)
    peering_routes = [r for r in recording.by_type(ROUTE) if "vpcPeeringConnectionId" in r.inputs]

    seen: set[tuple[str, str]] = set()
    for route in peering_routes:
        table = by_id[route.inputs["routeTableId"]]
        table_region = regions[table.provider_urn]
        assert regions[route.provider_urn] == table_region
        destination = next(name for name, cidr in cidrs.items() if cidr == route.inputs["destinationCidrBlock"])
        seen.add((table_region, destination))
    spokes = {name for name in cidrs if name != MAIN}
    expected = {(MAIN, spoke) for spoke in spokes} | {(spoke, MAIN) for spoke in spokes}
    assert seen == expected
    assert len(peering_routes) == len(expected)


def test_security_group_rules_both_ways_and_main_side_within_limit() -> None:
    recording = plan("global").recording
    regions = _provider_regions(recording)
    cidrs = {name: info["cidr"] for name, info in plan("global").regions.items()}
    by_id = _by_id(recording)
    inbound: dict[str, set[str]] = {}
    mesh_groups = {f"mesh-{region}-sg" for region in cidrs}
    for rule in recording.by_type(INGRESS):
        group = by_id[rule.inputs["securityGroupId"]]
        if group.name not in mesh_groups:
            continue  # the hub's and the K3s API's own groups (tests/test_sites_stack.py)
        inbound.setdefault(regions[group.provider_urn], set()).add(rule.inputs["cidrIpv4"])
        assert rule.inputs["cidrIpv4"] != "0.0.0.0/0"
    sites = {info["cidr"] for info in plan("global").to_json()["sites"].values()}
    assert inbound[MAIN] == set(cidrs.values()) | sites | {"10.192.0.0/16"}
    assert len([r for r in recording.by_type(INGRESS) if regions[r.provider_urn] == MAIN]) <= 60
    for spoke, cidr in cidrs.items():
        if spoke != MAIN:
            assert inbound[spoke] == {cidr, cidrs[MAIN]}


def _tags(resource: RecordedResource) -> dict[str, str]:
    """Tags as a mapping (auto-scaling groups take a list of key/value entries)."""
    tags = resource.inputs.get("tags") or {}
    if isinstance(tags, list):
        return {tag["key"]: tag["value"] for tag in tags}
    return dict(tags)


def test_every_resource_uses_an_explicit_provider_and_aws_ones_that_of_their_region(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    regions = _provider_regions(recording)
    assert len(regions) == len(plan("global").regions)
    explicit = {r.urn for r in recording.resources if r.is_provider}
    for resource in recording.custom:
        assert resource.provider_urn in explicit, f"{resource.name} uses a default provider"
        if not resource.type.startswith("aws:"):
            continue
        assert resource.provider_urn in regions, f"{resource.name} uses no explicit AWS provider"
        tagged_region = _tags(resource).get("lmrun:region")
        if tagged_region:
            assert regions[resource.provider_urn] == tagged_region, resource.name


def test_fabric_costs_nothing_per_month() -> None:
    recording = plan("global").recording
    types = {r.type for r in recording.custom}
    assert not types & {"aws:ec2/natGateway:NatGateway", "aws:ec2transitgateway/transitGateway:TransitGateway"}
    # Elastic IPs belong to the control plane (the WireGuard hub), never to the network fabric.
    assert [r.name for r in recording.by_type("aws:ec2/eip:Eip")] == ["mesh-sites-hub-eip"]
    assert plan("global").to_json()["cost"]["fabric_monthly_usd"] == 0


def _taggable(type_token: str) -> bool:
    if not type_token.startswith("aws:"):
        return False
    module, _, cls = type_token.removeprefix("aws:").partition(":")
    package = getattr(aws, module.split("/")[0])
    return "tags" in inspect.signature(getattr(package, cls).__init__).parameters


def test_every_taggable_resource_carries_the_mesh_tags() -> None:
    recording = plan("global").recording
    for resource in recording.custom:
        if _taggable(resource.type):
            tags = _tags(resource)
            assert tags.get("lmrun:mesh") == "global", resource.name
            assert tags.get("lmrun:managed-by") == "pulumi", resource.name
            assert tags.get("team") == "ml-platform", resource.name


def test_components_follow_the_naming_conventions() -> None:
    recording = plan("global").recording
    by_urn = {r.urn: r for r in recording.resources}
    for resource in recording.resources:
        if not resource.custom:
            assert resource.type.startswith("lmrun:index:"), resource.type
        parent = by_urn.get(resource.parent)
        if parent is not None:
            assert resource.name.startswith(f"{parent.name}-"), (parent.name, resource.name)
    # Unique even across types, so a name in a preview diff points at one resource.
    names = Counter(r.name for r in recording.resources)
    assert max(names.values()) == 1, [name for name, count in names.items() if count > 1]


def _state(recording: Recording) -> dict[str, dict[str, object]]:
    return {r.urn: r.inputs for r in recording.resources}


def test_adding_a_spoke_only_adds_resources() -> None:
    before = _state(plan("global").recording)
    regions = list(plan("global").regions)
    spokes = [r for r in regions if r != MAIN]
    assert "ap-southeast-3" not in spokes
    after = _state(plan("global", regions=[*spokes, "ap-southeast-3"]).recording)
    changed = {urn for urn in before if urn in after and before[urn] != after[urn]}
    assert not changed
    assert set(before) < set(after)
    added = set(after) - set(before)
    assert all("ap-southeast-3" in urn for urn in added)


def test_removing_a_spoke_only_removes_its_resources() -> None:
    before = _state(plan("global").recording)
    spokes = [r for r in plan("global").regions if r != MAIN]
    after = _state(plan("global", regions=[s for s in spokes if s != "eu-west-2"]).recording)
    assert set(after) < set(before)
    assert all("eu-west-2" in urn for urn in set(before) - set(after))
    assert all(before[urn] == after[urn] for urn in after)


def test_reordering_regions_changes_nothing() -> None:
    spokes = [r for r in plan("global").regions if r != MAIN]
    assert _state(plan("global", regions=list(reversed(spokes))).recording) == _state(plan("global").recording)


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_program_looks_up_only_public_ssm_image_parameters(stack: str) -> None:
    calls = plan(stack).recording.calls
    assert calls, "AMI ids come from lookups"
    assert {call.token for call in calls} == {"aws:ssm/getParameter:getParameter"}
    assert all(call.args["name"].startswith("/aws/service/") for call in calls)


def test_an_unmocked_lookup_fails_the_run() -> None:
    """The harness never answers a lookup it was not told about (a silent default would hide one)."""
    with pytest.raises(Exception, match="no mock for lookup 'aws:ssm/getParameter:getParameter'"):
        plan_stack(ROOT, stack_config("dev"), preview=False, mocks=RecordingMocks())
