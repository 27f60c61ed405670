"""SkyPilot's private subnets: one per AZ in every region of ``SkyPilotPlan.private_regions`` (the main region in
``global``; a spoke through :func:`lmrun.plan.skypilot.private_regions`), a NAT gateway and a private route table
with the public table's mesh routes; the SkyPilot groups' rule that keeps ``open_ports`` from opening anything.

SkyPilot's own code decides: its subnet selection (``sky.provision.aws.config``) and ``open_ports``
(``sky.provision.aws.instance``) run against moto, on a VPC and a security group built from the recorded
resources.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from rich.console import Console

from lmrun.aws.network.cidr_blocks import REGION_CIDRS, az_subnet_cidr, private_subnet_cidr
from lmrun.aws.network_model import skypilot_endpoints
from lmrun.cli.plan_view import cost_table
from lmrun.mock_engine import Recording
from lmrun.plan import skypilot as skypilot_plan
from lmrun.plan.skypilot import private_regions
from lmrun.plan.validate import checked_plan
from lmrun.render.skypilot import SkyPilotMesh, sky_config
from lmrun.spec.errors import ConfigError
from lmrun.verify import tokens
from lmrun.verify.cost import NAT_MONTHLY_GB_PER_GATEWAY
from lmrun.verify.offline import PlanReport, plan_stack
from lmrun.verify.reachability import Fabric, walk_hosts
from lmrun.verify.skypilot import OPEN_PORTS_CONTRACT, skypilot_names_exist
from lmrun.verify.sources import from_recording
from tests.conftest import ROOT, moto_aws, plan, stack_config
from tests.test_blast_radius import _changes
from tests.test_security_baseline import CONTROLS

MAIN, SPOKE = "us-east-1", "us-east-2"
MAIN_AZS = ("use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6")
SKY_NAME = "lmrun-global-skypilot"
K3S_API = 6443


def _spot_in(region: str) -> PlanReport:
    """``global`` with its elastic service bursting into ``region`` only: private subnets in the main region and
    there (``global`` itself bursts into three spoke regions; the plan refuses a spot region without them)."""
    [service] = json.loads(stack_config("global").config["lmrun:elasticServices"])
    return plan("global", elasticServices=[{**service, "regions": [region]}])


@pytest.fixture(scope="module")
def with_spoke() -> PlanReport:
    """Private subnets in the main region and one spot region (``us-east-2``)."""
    return _spot_in(SPOKE)


def _main_only() -> PlanReport:
    """Private subnets in the main region only (the elastic service bursts into the main region): the figures
    below are those of one private region."""
    return _spot_in(MAIN)


def _named(report: PlanReport | Recording, name: str) -> Any:
    recording = report.recording if isinstance(report, PlanReport) else report
    return recording.named(name)


def _of_type(report: PlanReport, type_: str, prefix: str = "") -> list[Any]:
    return [r for r in report.recording.by_type(type_) if r.name.startswith(prefix)]


# --- the plan ------------------------------------------------------------------------------------------------
def test_private_regions_put_the_main_region_first_and_list_each_once() -> None:
    assert private_regions(MAIN, []) == (MAIN,)
    assert private_regions(MAIN, [SPOKE, MAIN, "us-west-2", SPOKE]) == (MAIN, SPOKE, "us-west-2")


def test_private_subnets_lie_in_the_reserved_slot_and_never_overlap_a_public_one() -> None:
    for region, cidr in REGION_CIDRS.items():
        reserved = next(cidr.subnets(new_prefix=20))
        public = [az_subnet_cidr(region, f"x-az{n}") for n in range(1, 16)]
        private = [private_subnet_cidr(region, f"x-az{n}") for n in range(1, 16)]
        assert all(p.subnet_of(reserved) and p.prefixlen == 24 for p in private)
        for a, b in itertools.combinations(public + private, 2):
            assert not a.overlaps(b), (region, a, b)
    assert private_subnet_cidr(MAIN, "use1-az4") == ipaddress.IPv4Network("10.64.4.0/24")


def test_a_private_region_without_a_mesh_vpc_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(skypilot_plan, "private_regions", lambda main, spot: (main, "ap-east-2"))
    with pytest.raises(Exception, match="need a mesh VPC in ap-east-2"):
        plan_stack(ROOT, stack_config("global"), preview=False)


# --- the resources -------------------------------------------------------------------------------------------
def test_main_region_gets_a_private_subnet_per_az_a_nat_gateway_and_the_public_tables_mesh_routes() -> None:
    report = _main_only()
    subnets = {s.inputs["availabilityZoneId"]: s for s in _of_type(report, tokens.SUBNET, f"mesh-{MAIN}-private-")}
    assert tuple(sorted(subnets)) == MAIN_AZS
    for az_id, subnet in subnets.items():
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
        assert subnet.inputs["cidrBlock"] == str(private_subnet_cidr(MAIN, az_id))
        assert subnet.inputs["tags"]["Name"] == f"mesh-{MAIN}-vpc-private-{az_id}"
    nat = _named(report, f"mesh-{MAIN}-nat")
    assert nat.inputs["subnetId"] == f"mesh-{MAIN}-use1-az1-id" and nat.inputs["connectivityType"] == "public"
    assert [r.name for r in _of_type(report, tokens.NAT_GATEWAY)] == [nat.name]  # one per private region
    associations = _of_type(report, tokens.ROUTE_TABLE_ASSOCIATION, f"mesh-{MAIN}-private-")
    assert {a.inputs["subnetId"] for a in associations} == {f"{s.name}-id" for s in subnets.values()}
    assert {a.inputs["routeTableId"] for a in associations} == {f"mesh-{MAIN}-private-rt-id"}

    # The hub's private table: standalone routes only (never inline beside them), the public table's mesh routes.
    table = _named(report, f"mesh-{MAIN}-private-rt")
    assert not table.inputs.get("routes")
    routes = {
        t: {
            r.inputs["destinationCidrBlock"]: r for r in _of_type(report, tokens.ROUTE) if r.inputs["routeTableId"] == t
        }
        for t in (f"mesh-{MAIN}-rt-id", f"mesh-{MAIN}-private-rt-id")
    }
    public, private = routes.values()
    assert set(public) == set(private) and len(private) == 1 + 17 + 2 + 1  # internet, spokes, sites, tunnels
    assert private["0.0.0.0/0"].inputs["natGatewayId"] == nat.name + "-id"
    for destination, route in private.items():
        if destination != "0.0.0.0/0":
            target = {k: v for k, v in route.inputs.items() if k not in ("routeTableId", "destinationCidrBlock")}
            assert target == {k: v for k, v in public[destination].inputs.items() if k in target}, destination
    assert not report.violations


def test_a_spoke_through_private_regions_gets_an_inline_private_table(with_spoke: PlanReport) -> None:
    table = _named(with_spoke, f"mesh-{SPOKE}-private-rt")
    assert table.inputs["routes"] == [
        {"cidrBlock": "0.0.0.0/0", "natGatewayId": f"mesh-{SPOKE}-nat-id"},
        {"cidrBlock": REGION_CIDRS[MAIN].with_prefixlen, "vpcPeeringConnectionId": f"mesh-peering-{SPOKE}-id"},
    ]
    assert not [r for r in _of_type(with_spoke, tokens.ROUTE) if r.inputs["routeTableId"] == f"{table.name}-id"]
    subnets = _of_type(with_spoke, tokens.SUBNET, f"mesh-{SPOKE}-private-")
    assert len(subnets) == 3 and all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    names = with_spoke.outputs["skypilot"]["private_subnet_names"]
    assert [n for n in names if SPOKE in n] == [f"mesh-{SPOKE}-vpc-private-use2-az{n}" for n in (1, 2, 3)]
    assert not with_spoke.violations


def test_private_subnets_only_add_resources() -> None:
    """Blast radius: private subnets in the main region, then in a spoke, add resources and change none."""
    without = plan("global", elasticServices=[])  # no elastic service: no private network, no controller
    main = _main_only()
    assert _changes(without, main, adds=True) == {}
    spoke = _spot_in(SPOKE)
    # Beside the additions, SkyServe's controller may launch into the new private region's VPC: its inline policy
    # names the VPC (an update in place, no replacement).
    assert _changes(main, spoke, adds=True) == {"mesh-skyserve-identity-parameters": {"policy"}}
    added = {r.name for r in spoke.recording.resources} - {r.name for r in main.recording.resources}
    assert len(added) == 3 + 2 * 3 and all(name.startswith(f"mesh-{SPOKE}-") for name in added)


def test_the_private_network_passes_the_baseline_and_its_vpc_logs_its_flows(with_spoke: PlanReport) -> None:
    snapshot = with_spoke.snapshot
    private = {r.name for r in snapshot.of_type(tokens.SUBNET) if "-private-" in r.name}
    assert len(private) == len(MAIN_AZS) + 3
    assert not private & set(CONTROLS["FSBP EC2.15"](snapshot))  # no public address on launch
    assert CONTROLS["FSBP EC2.6"](snapshot) == []  # the flow log of each VPC covers its private subnets too
    assert CONTROLS["FSBP EC2.2"](snapshot) == [] and not with_spoke.violations


def test_the_config_lists_the_private_subnets_with_internal_addresses() -> None:
    mesh = SkyPilotMesh.from_json(_main_only().outputs["skypilot"])
    assert mesh.private_subnet_names == [f"mesh-{MAIN}-vpc-private-{az}" for az in MAIN_AZS]
    aws = sky_config(mesh)["aws"]
    assert aws["subnet_names"] == mesh.private_subnet_names and aws["use_internal_ips"] is True
    assert "subnet_names" not in sky_config(replace(mesh, private_subnet_names=[]))["aws"]


def test_the_estimate_prices_the_nat_gateway_on_a_line_of_its_own() -> None:
    cost = _main_only().cost
    hours = 730
    assert cost.nat is not None and cost.nat.gateways == 1
    expected = 0.045 * hours + 0.005 * hours + NAT_MONTHLY_GB_PER_GATEWAY * 0.045
    assert cost.nat_monthly_usd == pytest.approx(expected)
    assert cost.fabric_monthly_usd == 0
    assert {i.resource for i in cost.items if i.category == "nat"} == {f"mesh-{MAIN}-nat", f"mesh-{MAIN}-nat-eip"}
    console = Console(width=400, record=True)
    console.print(cost_table(_main_only()))
    [line] = [row for row in console.export_text().splitlines() if "NAT gateways" in row]
    assert f"{expected:.2f}" in line and "100 GB/month each" in line


def test_the_plan_checks_the_subnet_names_and_the_rule_that_stops_open_ports() -> None:
    report = _main_only()
    outputs = dict(report.outputs)
    resources = list(from_recording(report.recording, outputs).resources)
    results = skypilot_names_exist(resources, outputs)
    assert all(r.ok for r in results)
    assert len([r for r in results if r.contract == OPEN_PORTS_CONTRACT]) == 18
    assert len([r for r in results if r.resource.startswith("skypilot:subnet:")]) == len(MAIN_AZS)

    def broken(changed: list[Any]) -> list[tuple[str, str]]:
        return [(r.resource, r.contract) for r in skypilot_names_exist(changed, outputs) if not r.ok]

    # The main region's standalone rule from the mesh group, then a spoke's inline one, go missing.
    main_rule = next(r for r in resources if r.name == f"mesh-skypilot-{MAIN}-from-mesh-group")
    assert broken([r for r in resources if r is not main_rule]) == [
        (f"skypilot:security-group:{MAIN}", OPEN_PORTS_CONTRACT)
    ]
    group = next(r for r in resources if r.name == f"mesh-skypilot-{SPOKE}-sg")
    cidr_only = replace(
        group, inputs={**group.inputs, "ingress": [i for i in group.inputs["ingress"] if i.get("cidrBlocks")]}
    )
    changed = [cidr_only if r is group else r for r in resources]
    assert broken(changed) == [(f"skypilot:security-group:{SPOKE}", OPEN_PORTS_CONTRACT)]

    # A private subnet that assigns public addresses (or is missing) fails its row.
    subnet = next(r for r in resources if r.name == f"mesh-{MAIN}-private-use1-az1")
    public = replace(subnet, inputs={**subnet.inputs, "mapPublicIpOnLaunch": True})
    name = f"mesh-{MAIN}-vpc-private-use1-az1"
    assert [b for b, _ in broken([public if r is subnet else r for r in resources])] == [f"skypilot:subnet:{name}"]
    assert [b for b, _ in broken([r for r in resources if r is not subnet])] == [f"skypilot:subnet:{name}"]


# --- SkyPilot's own subnet selection, on a moto VPC built from the recorded resources --------------------------
def _moto_region(report: PlanReport, region: str, client: Any) -> dict[str, str]:
    """The region's VPC as recorded (subnets, internet and NAT gateways, route tables, their internet/NAT routes
    and associations) created in moto; returns recorded id (``<name>-id``) -> moto id."""
    mine = [r for r in report.recording.resources if r.name.startswith(f"mesh-{region}-")]
    zones = {z["ZoneId"]: z["ZoneName"] for z in client.describe_availability_zones()["AvailabilityZones"]}
    ids: dict[str, str] = {}

    def tagged(resource: Any, kind: str) -> list[dict[str, Any]]:
        tags = [{"Key": k, "Value": v} for k, v in (resource.inputs.get("tags") or {}).items()]
        return [{"ResourceType": kind, "Tags": tags}]

    def of(type_: str) -> list[Any]:
        return [r for r in mine if r.type == type_]

    [vpc] = of(tokens.VPC)
    vpc_id = client.create_vpc(CidrBlock=vpc.inputs["cidrBlock"], TagSpecifications=tagged(vpc, "vpc"))["Vpc"]["VpcId"]
    ids[f"{vpc.name}-id"] = vpc_id
    for igw in of(tokens.INTERNET_GATEWAY):
        ids[f"{igw.name}-id"] = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        client.attach_internet_gateway(InternetGatewayId=ids[f"{igw.name}-id"], VpcId=vpc_id)
    for subnet in of(tokens.SUBNET):
        zone = zones[subnet.inputs["availabilityZoneId"]]
        created = client.create_subnet(
            VpcId=vpc_id,
            CidrBlock=subnet.inputs["cidrBlock"],
            AvailabilityZone=zone,
            TagSpecifications=tagged(subnet, "subnet"),
        )["Subnet"]["SubnetId"]
        client.modify_subnet_attribute(
            SubnetId=created, MapPublicIpOnLaunch={"Value": subnet.inputs["mapPublicIpOnLaunch"]}
        )
        ids[f"{subnet.name}-id"] = created
    for nat in of(tokens.NAT_GATEWAY):
        allocation = client.allocate_address(Domain="vpc")["AllocationId"]
        made = client.create_nat_gateway(SubnetId=ids[nat.inputs["subnetId"]], AllocationId=allocation)
        ids[f"{nat.name}-id"] = made["NatGateway"]["NatGatewayId"]
    main_table = client.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"][0]["RouteTableId"]
    routes: list[tuple[str, dict[str, Any]]] = []
    for table in of(tokens.DEFAULT_ROUTE_TABLE) + of(tokens.ROUTE_TABLE):
        if table.type == tokens.DEFAULT_ROUTE_TABLE:
            ids[f"{table.name}-id"] = main_table
        else:
            ids[f"{table.name}-id"] = client.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        routes += [
            (f"{table.name}-id", {**r, "destinationCidrBlock": r["cidrBlock"]})
            for r in table.inputs.get("routes") or []
        ]
    routes += [(r.inputs["routeTableId"], r.inputs) for r in of(tokens.ROUTE)]
    for table_id, route in routes:  # what SkyPilot reads: routes to an internet gateway (and NAT, for realism)
        target = {"GatewayId": ids.get(route.get("gatewayId", ""))} if route.get("gatewayId") else {}
        if route.get("natGatewayId"):
            target = {"NatGatewayId": ids[route["natGatewayId"]]}
        if target:
            client.create_route(
                RouteTableId=ids[table_id], DestinationCidrBlock=route["destinationCidrBlock"], **target
            )
    for association in of(tokens.ROUTE_TABLE_ASSOCIATION):
        client.associate_route_table(
            RouteTableId=ids[association.inputs["routeTableId"]], SubnetId=ids[association.inputs["subnetId"]]
        )
    return ids


def _select(region: str, *, internal: bool, names: list[str] | None) -> list[str]:
    from sky.provision.aws import config as sky_aws

    ec2 = boto3.resource("ec2", region_name=region)
    subnets, _ = sky_aws._get_subnet_and_vpc_id(  # SkyPilot's own selection is under test
        ec2,
        None,
        region,
        availability_zone=None,
        use_internal_ips=internal,
        vpc_name=f"mesh-{region}-vpc",
        subnet_names=names,
    )
    return sorted(next(t["Value"] for t in s.tags if t["Key"] == "Name") for s in subnets)


@pytest.mark.parametrize("region", [MAIN, SPOKE])
def test_skypilot_with_internal_ips_picks_exactly_the_private_subnets(with_spoke: PlanReport, region: str) -> None:
    names = list(with_spoke.outputs["skypilot"]["private_subnet_names"])
    here = sorted(n for n in names if n.startswith(f"mesh-{region}-"))
    with moto_aws():
        client = boto3.client("ec2", region_name=region)
        _moto_region(with_spoke, region, client)
        assert _select(region, internal=True, names=names) == here
        assert _select(region, internal=True, names=None) == here  # the VPC's private subnets are exactly those
        with pytest.raises(RuntimeError, match="did you mean to set use_internal_ips"):
            _select(region, internal=False, names=names)


def test_skypilot_refuses_internal_ips_in_a_vpc_without_the_private_subnets() -> None:
    """``us-east-2`` without private subnets (no elastic service bursting there): public subnets only."""
    report = _main_only()
    with moto_aws():
        _moto_region(report, SPOKE, boto3.client("ec2", region_name=SPOKE))
        with pytest.raises(RuntimeError, match="all candidate subnets are public"):
            _select(SPOKE, internal=True, names=None)
        assert len(_select(SPOKE, internal=False, names=None)) == 3  # the public ones, as before


# --- SkyPilot's open_ports on the stack's group ---------------------------------------------------------------
def _moto_group(report: PlanReport, region: str, client: Any, ids: dict[str, str], *, old_shape: bool) -> str:
    """The region's SkyPilot group as recorded (inline or standalone rules) and the mesh group it references;
    ``old_shape``: without rules whose source is a group (the group as it was before the mesh-group rule)."""
    vpc_id = ids[f"mesh-{region}-vpc-id"]
    mesh_group = client.create_security_group(GroupName=f"mesh-{region}-sg", Description="mesh", VpcId=vpc_id)
    ids[f"mesh-{region}-sg-id"] = mesh_group["GroupId"]
    [group] = _of_type(report, tokens.SECURITY_GROUP, f"mesh-skypilot-{region}-")
    made = client.create_security_group(GroupName=group.inputs["name"], Description="sky", VpcId=vpc_id)
    standalone = [
        {
            "protocol": r.inputs["ipProtocol"],
            "fromPort": r.inputs.get("fromPort"),
            "toPort": r.inputs.get("toPort"),
            "cidrBlocks": [r.inputs["cidrIpv4"]] if "cidrIpv4" in r.inputs else [],
            "securityGroups": [r.inputs[k] for k in ("referencedSecurityGroupId",) if k in r.inputs],
        }
        for r in report.recording.by_type(tokens.SG_INGRESS_RULE)
        if r.inputs["securityGroupId"] == f"{group.name}-id"
    ]
    rules = standalone + list(group.inputs.get("ingress") or [])
    assert rules and any(rule.get("securityGroups") for rule in rules)
    for rule in rules:
        if old_shape and rule.get("securityGroups"):
            continue
        permission: dict[str, Any] = {"IpProtocol": rule["protocol"]}
        if rule["protocol"] != "-1":
            permission.update(FromPort=rule["fromPort"], ToPort=rule["toPort"])
        permission["IpRanges"] = [{"CidrIp": c} for c in rule.get("cidrBlocks") or []]
        permission["UserIdGroupPairs"] = [{"GroupId": ids[g]} for g in rule.get("securityGroups") or []]
        client.authorize_security_group_ingress(GroupId=made["GroupId"], IpPermissions=[permission])
    return str(made["GroupId"])


def _opened(report: PlanReport, region: str, *, old_shape: bool) -> list[dict[str, Any]]:
    """The permissions SkyPilot's ``open_ports`` adds for a task's port and the SkyServe load balancer's range, to
    the group of a cluster's instance launched in the region's first private subnet."""
    from sky.provision import constants
    from sky.provision.aws import instance as sky_instance

    with moto_aws():
        client = boto3.client("ec2", region_name=region)
        ids = _moto_region(report, region, client)
        group_id = _moto_group(report, region, client, ids, old_shape=old_shape)
        subnet = min(_of_type(report, tokens.SUBNET, f"mesh-{region}-private-"), key=lambda s: s.name)
        cluster = "svc-ab12"
        client.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            SubnetId=ids[f"{subnet.name}-id"],
            SecurityGroupIds=[group_id],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": constants.TAG_RAY_CLUSTER_NAME, "Value": cluster}]}
            ],
        )
        before = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
        provider = {"region": region, "security_group": {"GroupName": SKY_NAME}, "vpc_name": f"mesh-{region}-vpc"}
        sky_instance.open_ports(cluster, ["8000", "30001-30020"], provider)
        after = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
    return [p for p in after if p not in before]


@pytest.mark.parametrize("region", [MAIN, SPOKE])
def test_open_ports_opens_nothing_on_the_stacks_skypilot_group(with_spoke: PlanReport, region: str) -> None:
    """Main region: standalone rules; the spoke: inline rules. Either way the mesh-group rule stops open_ports."""
    assert _opened(with_spoke, region, old_shape=False) == []


def test_open_ports_opened_the_internet_on_the_old_group() -> None:
    opened = _opened(plan("global"), MAIN, old_shape=True)
    world = [p for p in opened if {"CidrIp": "0.0.0.0/0"} in [{"CidrIp": r["CidrIp"]} for r in p["IpRanges"]]]
    assert {(p["FromPort"], p["ToPort"]) for p in world} == {(8000, 8000), (30001, 30020)}


# --- reachability of a VM in a private subnet ----------------------------------------------------------------
def _replica(fabric: Fabric, region: str) -> Any:
    node = next(n for n, info in fabric.nodes.items() if info.get("region") == region)
    return fabric.machine_hosts(node)[0]


def _server(fabric: Fabric) -> Any:
    replicas = fabric.replicas("k3s-api")
    assert isinstance(replicas, list) and len(replicas) == 1, replicas
    return replicas[0]


def test_a_private_skypilot_vm_reaches_and_is_reached_like_a_public_one(with_spoke: PlanReport) -> None:
    recording = with_spoke.recording
    fabric = Fabric(recording, recording.outputs)
    main_vms = skypilot_endpoints(fabric, MAIN)
    assert len(main_vms) == len(MAIN_AZS) and all("private" in h.label for h in main_vms)
    spoke_vms = skypilot_endpoints(fabric, SPOKE)
    assert len(spoke_vms) == 3
    server, replica = _server(fabric), _replica(fabric, SPOKE)
    model = fabric.by_cloud["aws"]
    for vm in main_vms + spoke_vms:
        assert walk_hosts(fabric, vm, server, K3S_API).ok, vm.label
        assert walk_hosts(fabric, server, vm, 10250).ok, vm.label  # the server reaches its kubelet
        assert "NAT gateway" in model.internet_egress(vm.where.subnet)  # type: ignore[attr-defined]
    for vm in main_vms:  # the main region reaches every spoke, and every spoke reaches it
        assert walk_hosts(fabric, vm, replica, 8000).ok and walk_hosts(fabric, replica, vm, 8000).ok
    assert len(skypilot_endpoints(fabric, MAIN, private=False)) == len(MAIN_AZS)  # the public ones, for contrast


def test_a_private_table_without_its_mesh_route_breaks_reachability(with_spoke: PlanReport) -> None:
    recording = with_spoke.recording
    # The main region's private table loses the route to the spoke.
    kept = [r for r in recording.resources if r.name != f"mesh-peering-{SPOKE}-route-main-private"]
    assert len(kept) == len(recording.resources) - 1
    broken = replace(recording, resources=kept)
    fabric = Fabric(broken, broken.outputs)
    vm = skypilot_endpoints(fabric, MAIN)[0]
    verdict = walk_hosts(fabric, vm, _replica(fabric, SPOKE), 8000)
    assert verdict.ok is False and "has no route for" in verdict.reason and "NAT gateway" in verdict.reason
    assert walk_hosts(fabric, skypilot_endpoints(fabric, MAIN, private=False)[0], _replica(fabric, SPOKE), 8000).ok

    # The spoke's private table loses its inline route to the main region.
    table = recording.named(f"mesh-{SPOKE}-private-rt")
    cut = replace(table, inputs={**table.inputs, "routes": table.inputs["routes"][:1]})
    broken = replace(recording, resources=[cut if r is table else r for r in recording.resources])
    fabric = Fabric(broken, broken.outputs)
    verdict = walk_hosts(fabric, skypilot_endpoints(fabric, SPOKE)[0], _server(fabric), K3S_API)
    assert verdict.ok is False and "has no route for" in verdict.reason


def test_a_nat_gateway_outside_a_public_subnet_gives_no_internet(with_spoke: PlanReport) -> None:
    recording = with_spoke.recording
    nat = recording.named(f"mesh-{SPOKE}-nat")
    private = min(_of_type(with_spoke, tokens.SUBNET, f"mesh-{SPOKE}-private-"), key=lambda s: s.name)
    moved = replace(nat, inputs={**nat.inputs, "subnetId": f"{private.name}-id"}, dependencies=(private.urn,))
    broken = replace(recording, resources=[moved if r is nat else r for r in recording.resources])
    fabric = Fabric(broken, broken.outputs)
    vm = skypilot_endpoints(fabric, SPOKE)[0]
    with pytest.raises(Exception, match="needs a public subnet"):
        fabric.by_cloud["aws"].internet_egress(vm.where.subnet)  # type: ignore[attr-defined]


def test_the_mesh_group_rule_counts_against_the_main_groups_inbound_rule_limit() -> None:
    """Main's SkyPilot group: 21 mesh ranges in ``global``, one SSH rule per operator CIDR, the mesh-group rule."""

    def attempt(operators: int) -> None:
        cidrs = [f"203.0.{i}.0/24" for i in range(operators)]
        stack = stack_config("global", skypilot={"enabled": True, "useSsm": False}, operatorCidrs=cidrs)
        checked_plan(stack.config, stack.secret_keys, mesh="global")

    attempt(60 - 21 - 1)
    with pytest.raises(ConfigError, match="SkyPilot security group of us-east-1 would need more than 60"):
        attempt(60 - 21)


def test_a_site_reaches_a_private_skypilot_vm_through_the_hubs_route_in_the_private_table() -> None:
    recording = plan("global").recording
    fabric = Fabric(recording, recording.outputs)
    [site] = fabric.location_hosts("gcp-usc1")[:1]
    vm = skypilot_endpoints(fabric, MAIN)[0]
    assert walk_hosts(fabric, site, vm, 8000).ok
    kept = [r for r in recording.resources if r.name != "mesh-sites-hub-route-private-gcp-usc1"]
    broken = replace(recording, resources=kept)
    fabric = Fabric(broken, broken.outputs)
    verdict = walk_hosts(fabric, site, skypilot_endpoints(fabric, MAIN)[0], 8000)
    assert verdict.ok is False and verdict.reason.startswith("the reply ") and "10.128.0." in verdict.reason
