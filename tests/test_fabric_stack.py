"""Whole-stack tests of the fabric on the `global` stack: peering hub, providers, tags, blast radius."""

from __future__ import annotations

import inspect
from collections import Counter

import pulumi
import pulumi_aws as aws
import pytest

from lmrun.aws.images import PUBLIC_IMAGES
from lmrun.mock_engine import (
    MESH_LOOKUPS,
    RecordedResource,
    Recording,
    UnmockedCallError,
    mesh_mocks,
    run_program,
)
from tests.conftest import plan

PEERING = "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
ACCEPTER = "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
DEFAULT_ROUTE_TABLE = "aws:ec2/defaultRouteTable:DefaultRouteTable"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
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


def _peering_routes(recording: Recording) -> list[tuple[str, str, str]]:
    """(region of the table, destination CIDR, peering id) of every route into a peering: standalone
    `Route`s (the main side) and inline entries of adopted main route tables (the spokes)."""
    regions = _provider_regions(recording)
    by_id = _by_id(recording)
    found = []
    for route in recording.by_type(ROUTE):
        if "vpcPeeringConnectionId" in route.inputs:
            table = by_id[route.inputs["routeTableId"]]
            assert regions[route.provider_urn] == regions[table.provider_urn]
            found.append(
                (
                    regions[table.provider_urn],
                    route.inputs["destinationCidrBlock"],
                    route.inputs["vpcPeeringConnectionId"],
                )
            )
    for table in recording.by_type(DEFAULT_ROUTE_TABLE):
        for entry in table.inputs["routes"]:
            if "vpcPeeringConnectionId" in entry:
                found.append((regions[table.provider_urn], entry["cidrBlock"], entry["vpcPeeringConnectionId"]))
    return found


def test_routes_both_ways_through_the_peering(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    cidrs = {name: info["cidr"] for name, info in plan("global").regions.items()}
    routes = _peering_routes(recording)

    seen: set[tuple[str, str]] = set()
    for table_region, cidr, peering in routes:
        destination = next(name for name, c in cidrs.items() if c == cidr)
        spoke = destination if table_region == MAIN else table_region
        assert peering == f"mesh-peering-{spoke}-id", (table_region, destination)
        seen.add((table_region, destination))
    spokes = {name for name in cidrs if name != MAIN}
    expected = {(MAIN, spoke) for spoke in spokes} | {(spoke, MAIN) for spoke in spokes}
    assert seen == expected
    # The main region has two tables with a route into every peering: its own and SkyPilot's private one.
    private = {
        (r.inputs["destinationCidrBlock"], r.inputs["vpcPeeringConnectionId"])
        for r in recording.by_type(ROUTE)
        if r.inputs["routeTableId"] == f"mesh-{MAIN}-private-rt-id" and "vpcPeeringConnectionId" in r.inputs
    }
    assert private == {(cidr, peering) for region, cidr, peering in routes if region == MAIN}
    assert len(routes) == len(expected) + len(private) == len(expected) + len(spokes)


def test_spoke_routes_are_inline_in_the_adopted_main_table_and_wait_for_the_accepter(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    regions = _provider_regions(recording)
    spokes = {name for name, info in plan("global").regions.items() if info["role"] == "spoke"}
    tables = {regions[t.provider_urn]: t for t in recording.by_type(DEFAULT_ROUTE_TABLE)}
    assert set(tables) == spokes
    by_urn = {r.urn: r for r in recording.resources}
    for spoke, table in tables.items():
        routes = {entry["cidrBlock"]: entry for entry in table.inputs["routes"]}
        assert set(routes) == {"0.0.0.0/0", plan("global").regions[MAIN]["cidr"]}
        assert routes["0.0.0.0/0"]["gatewayId"] == f"mesh-{spoke}-igw-id"
        depends = {by_urn[urn].name for urn in table.dependencies}
        assert {f"mesh-{spoke}-vpc", f"mesh-{spoke}-igw", f"mesh-peering-{spoke}-accept"} <= depends
    # Public subnets of a spoke use its main table implicitly; only the main region keeps a table of its own,
    # beside the private table of SkyPilot's subnets in each private region (global's elastic service: the main
    # region and its three spot regions).
    private = plan("global").outputs["skypilot"]["private_regions"]
    assert private[0] == MAIN and len(private) == 4
    associated = {_by_id(recording)[a.inputs["subnetId"]].name for a in recording.by_type(ASSOCIATION)}
    assert associated and all(
        name.startswith(f"mesh-{MAIN}-") or any(name.startswith(f"mesh-{r}-private-") for r in private)
        for name in associated
    )
    assert sorted((regions[t.provider_urn], t.name) for t in recording.by_type(ROUTE_TABLE)) == sorted(
        [(MAIN, f"mesh-{MAIN}-rt"), *((r, f"mesh-{r}-private-rt") for r in private)]
    )


def _inbound_cidrs(recording: Recording) -> dict[str, set[str]]:
    """Region -> CIDRs the mesh security group of the region admits, from standalone and inline rules."""
    regions = _provider_regions(recording)
    by_id = _by_id(recording)
    mesh_groups = {f"mesh-{region}-sg" for region in plan("global").regions}
    inbound: dict[str, set[str]] = {}
    for rule in recording.by_type(INGRESS):
        group = by_id[rule.inputs["securityGroupId"]]
        if group.name in mesh_groups:  # else the hub's and the K3s API's own groups (tests/test_sites_stack.py)
            inbound.setdefault(regions[group.provider_urn], set()).add(rule.inputs["cidrIpv4"])
    for group in recording.by_type(SECURITY_GROUP):
        if SKYPILOT_INFRA in group.urn:  # SkyPilot's own groups: tests/test_skypilot.py
            continue
        for entry in group.inputs.get("ingress") or []:
            assert group.name in mesh_groups
            assert (entry["protocol"], entry["fromPort"], entry["toPort"]) == ("-1", 0, 0)
            assert len(entry["cidrBlocks"]) == 1, "one CIDR per inline rule, each with its description"
            assert entry["description"]
            inbound.setdefault(regions[group.provider_urn], set()).update(entry["cidrBlocks"])
    return inbound


def test_security_group_rules_both_ways_and_main_side_within_limit() -> None:
    recording = plan("global").recording
    regions = _provider_regions(recording)
    cidrs = {name: info["cidr"] for name, info in plan("global").regions.items()}
    inbound = _inbound_cidrs(recording)
    assert all("0.0.0.0/0" not in admitted for admitted in inbound.values())
    sites = {info["cidr"] for info in plan("global").to_json()["sites"].values()}
    assert inbound[MAIN] == set(cidrs.values()) | sites | {"10.192.0.0/16"}
    assert len([r for r in recording.by_type(INGRESS) if regions[r.provider_urn] == MAIN]) <= 60
    for spoke, cidr in cidrs.items():
        if spoke != MAIN:
            assert inbound[spoke] == {cidr, cidrs[MAIN]}
            group = recording.named(f"mesh-{spoke}-sg")
            assert [(e["cidrBlocks"], e["protocol"]) for e in group.inputs["egress"]] == [(["0.0.0.0/0"], "-1")]


def test_the_main_regions_limits_count_what_is_recorded() -> None:
    """The plan's AWS-limit checks (60 inbound rules per group, 50 routes per table) count the main side,
    the only table and group that grow with the mesh; a spoke's stay at two inbound rules and two routes."""
    report = plan("global")
    recording = report.recording
    regions = _provider_regions(recording)
    spokes = [name for name, info in report.regions.items() if info["role"] == "spoke"]
    sites = len(report.to_json()["sites"])
    main_sg = f"{recording.named(f'mesh-{MAIN}-sg').name}-id"
    main_rt = f"{recording.named(f'mesh-{MAIN}-rt').name}-id"
    main_rules = [r for r in recording.by_type(INGRESS) if r.inputs["securityGroupId"] == main_sg]
    main_routes = [r for r in recording.by_type(ROUTE) if r.inputs["routeTableId"] == main_rt]
    # = MeshPlan.main_inbound_rules and MeshPlan.main_routes (plan/mesh.py)
    assert len(main_rules) == 1 + len(spokes) + sites + (1 if sites else 0)
    assert len(main_routes) == 1 + len(spokes) + sites + (1 if sites else 0)
    for spoke in spokes:
        assert len(recording.named(f"mesh-{spoke}-sg").inputs["ingress"]) == 2
        assert len(recording.named(f"mesh-{spoke}-rt").inputs["routes"]) == 2
    assert all(regions[r.provider_urn] == MAIN for r in [*main_rules, *main_routes])


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_no_route_table_or_security_group_mixes_inline_and_standalone_entries(stack: str) -> None:
    """The provider overwrites one with the other (Pulumi registry: RouteTable, SecurityGroup): a table or a
    group is either all-inline or all-standalone."""
    recording = plan(stack).recording
    routed = {r.inputs["routeTableId"] for r in recording.by_type(ROUTE)}
    associated = {a.inputs["routeTableId"] for a in recording.by_type(ASSOCIATION)}
    for table in recording.by_type(ROUTE_TABLE):
        # An association is no route: a table with inline routes (a spoke's private one) still needs its own.
        if table.inputs.get("routes"):
            assert f"{table.name}-id" not in routed, table.name
    for table in recording.by_type(DEFAULT_ROUTE_TABLE):
        # A spoke's public subnets use its main table implicitly: no association, no standalone route.
        assert f"{table.name}-id" not in routed | associated, table.name
    ruled = {r.inputs["securityGroupId"] for r in [*recording.by_type(INGRESS), *recording.by_type(EGRESS)]}
    for group in recording.by_type(SECURITY_GROUP):
        if group.inputs.get("ingress") or group.inputs.get("egress"):
            assert f"{group.name}-id" not in ruled, group.name


SKYPILOT_INFRA = "lmrun:index:SkyPilotInfra$"
"""In the URN of every resource of the opt-in SkyPilot part (``lmrun:skypilot``, on in `global`)."""


def _resources_of_spoke(spoke: str) -> tuple[Counter[str], Counter[str]]:
    """What exists because a spoke exists: the resources that go when the spoke is dropped from `global`,
    by type (components, which make no provider call, apart under their own type): the fabric's, and the
    SkyPilot part's."""
    before = {r.urn: r for r in plan("global").recording.resources}
    spokes = [r for r in plan("global").regions if r not in (MAIN, spoke)]
    after = {r.urn for r in plan("global", regions=spokes).recording.resources}
    gone = set(before) - after
    fabric = Counter(before[urn].type for urn in gone if SKYPILOT_INFRA not in urn)
    return fabric, Counter(before[urn].type for urn in gone if SKYPILOT_INFRA in urn)


# Spokes no elastic service bursts into (global's bursts into us-east-2, us-west-2 and eu-west-2, which cannot go).
@pytest.mark.parametrize(("spoke", "azs"), [("eu-west-3", 3), ("ap-northeast-2", 4)])
def test_a_spoke_costs_eleven_resources_plus_one_per_az(spoke: str, azs: int) -> None:
    """Ten for the fabric, the adopted default security group (closed) and, with `lmrun:flowLogs` on as in
    `global`, the VPC's flow log: 14 for a spoke of 3 AZs, 15 with 4 (SkyPilot's part counted apart)."""
    removed, skypilot = _resources_of_spoke(spoke)
    # SkyPilot's group in the spoke and the main region's group's rule admitting the spoke.
    assert skypilot == {SECURITY_GROUP: 1, INGRESS: 1}
    components = {t: n for t, n in removed.items() if t.startswith("lmrun:index:")}
    resources = {t: n for t, n in removed.items() if not t.startswith("lmrun:index:")}
    assert components == {"lmrun:index:RegionalVpc": 1}
    assert resources == {
        "pulumi:providers:aws": 1,
        VPC: 1,
        "aws:ec2/internetGateway:InternetGateway": 1,
        "aws:ec2/subnet:Subnet": azs,
        DEFAULT_ROUTE_TABLE: 1,  # internet and main region inline
        SECURITY_GROUP: 1,  # its VPC and the main region in, everything out: inline
        PEERING: 1,
        ACCEPTER: 1,
        ROUTE: 2,  # the main side's route to the spoke, in its table and in SkyPilot's private one
        INGRESS: 1,  # the main side's rule admitting the spoke
        DEFAULT_SECURITY_GROUP: 1,  # adopted with no rule (FSBP EC2.2)
        FLOW_LOG: 1,  # into the one bucket in the main region
    }
    assert sum(resources.values()) == 12 + azs <= 16


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
    assert "aws:ec2transitgateway/transitGateway:TransitGateway" not in types
    # The NAT gateways are those of SkyPilot's private subnets (one per private region: the main region and the
    # elastic service's three spot regions), priced on their own line; the other Elastic IP belongs to the control
    # plane (the WireGuard hub), never to the network fabric.
    private = plan("global").outputs["skypilot"]["private_regions"]
    nats = sorted(r.name for r in recording.by_type("aws:ec2/natGateway:NatGateway"))
    assert nats == sorted(f"mesh-{r}-nat" for r in private) and len(nats) == 4
    eips = sorted(r.name for r in recording.by_type("aws:ec2/eip:Eip"))
    assert eips == sorted([*(f"mesh-{r}-nat-eip" for r in private), "mesh-sites-hub-eip"])
    cost = plan("global").to_json()["cost"]
    assert cost["fabric_monthly_usd"] == 0 and cost["nat"]["gateways"] == 4


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
    after = _state(plan("global", regions=[s for s in spokes if s != "eu-west-3"]).recording)
    assert set(after) < set(before)
    assert all("eu-west-3" in urn for urn in set(before) - set(after))
    assert all(before[urn] == after[urn] for urn in after)


def test_reordering_regions_changes_nothing() -> None:
    spokes = [r for r in plan("global").regions if r != MAIN]
    assert _state(plan("global", regions=list(reversed(spokes))).recording) == _state(plan("global").recording)


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_program_makes_no_lookup_at_all(stack: str, preview: bool) -> None:
    """Images are pinned in config (``lmrun:images``): what the program declares never depends on the day it
    runs, so `pulumi preview` is deterministic and an image upgrade is a config change."""
    assert plan(stack, preview=preview).recording.calls == []
    assert MESH_LOOKUPS == {}


def _program_with_a_lookup() -> None:
    provider = aws.Provider("east", region=MAIN)
    aws.ssm.get_parameter_output(
        name=PUBLIC_IMAGES["server"].parameter, opts=pulumi.InvokeOutputOptions(provider=provider)
    ).value.apply(str)


def test_an_unmocked_lookup_fails_the_run() -> None:
    """The harness never answers a lookup it was not told about (a silent default would hide one): a lookup
    that creeps back into the program fails every plan under the mesh's own mocks."""
    with pytest.raises(UnmockedCallError, match="no mock for lookup 'aws:ssm/getParameter:getParameter'"):
        run_program(_program_with_a_lookup, mocks=mesh_mocks(), preview=False)
