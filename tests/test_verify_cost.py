"""The plan's cost estimate: exact figures on hand-built resources, and the example stacks through the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmrun.aws import prices
from lmrun.cli import main
from lmrun.mock_engine import RecordedResource, Secret
from lmrun.plan.backup import backup_copies, backup_storage, backup_storage_from_export
from lmrun.verify.cost import NAT_MONTHLY_GB_PER_GATEWAY, estimate_cost
from tests.conftest import ROOT, plan

H = prices.HOURS_PER_MONTH


def res(type_: str, name: str, inputs: dict[str, Any] | None = None, deps: tuple[str, ...] = ()) -> RecordedResource:
    return RecordedResource(f"urn:{name}", type_, name, inputs or {}, "", deps, "", True, False, False)


PUBLIC_SUBNET = res("aws:ec2/subnet:Subnet", "pub", {"mapPublicIpOnLaunch": True})
PRIVATE_SUBNET = res("aws:ec2/subnet:Subnet", "priv", {"mapPublicIpOnLaunch": False})


def test_fabric_prices_nat_tgw_vpn_and_interface_endpoints() -> None:
    eip = res("aws:ec2/eip:Eip", "nat-ip")
    resources = [
        res("aws:ec2/vpc:Vpc", "vpc"),
        res("aws:ec2/vpcPeeringConnection:VpcPeeringConnection", "peer"),
        res("aws:ec2/securityGroup:SecurityGroup", "sg"),
        eip,
        res("aws:ec2/natGateway:NatGateway", "nat", {"allocationId": "x"}, deps=(eip.urn,)),
        res("aws:ec2transitgateway/vpcAttachment:VpcAttachment", "tgw-a"),
        res("aws:ec2/vpnConnection:VpnConnection", "vpn"),
        res("aws:ec2/vpcEndpoint:VpcEndpoint", "ssm", {"vpcEndpointType": "Interface", "subnetIds": ["a", "b"]}),
        res("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"}),
    ]
    cost = estimate_cost(resources, {})
    nat = 0.045 * H  # ≈ $32.85
    tgw = 0.05 * H  # ≈ $36.50
    assert round(nat, 2) == 32.85 and round(tgw, 2) == 36.5
    assert cost.fabric_monthly_usd == pytest.approx(tgw + 0.05 * H + 2 * 0.01 * H)
    # The NAT gateway, its Elastic IP and the data it processes (assumed volume) are a line of their own.
    assert cost.nat_monthly_usd == pytest.approx(nat + 0.005 * H + NAT_MONTHLY_GB_PER_GATEWAY * 0.045)
    assert cost.nat is not None and cost.nat.gateways == 1
    assert cost.control_plane_monthly_usd == 0
    assert {i.resource for i in cost.items} == {"nat-ip", "nat", "tgw-a", "vpn", "ssm"}
    assert {i.resource for i in cost.items if i.category == "nat"} == {"nat-ip", "nat"}


def test_peering_only_fabric_is_free() -> None:
    resources = [res("aws:ec2/vpc:Vpc", "vpc"), res("aws:ec2/vpcPeeringConnection:VpcPeeringConnection", "p")]
    assert estimate_cost(resources, {}).fabric_monthly_usd == 0


def test_control_plane_instance_volumes_and_public_ip() -> None:
    server = res(
        "aws:ec2/instance:Instance",
        "server",
        {"instanceType": "t3.medium", "rootBlockDevice": {"volumeType": "gp3", "volumeSize": 30}},
        deps=(PUBLIC_SUBNET.urn,),
    )
    state = res("aws:ebs/volume:Volume", "state", {"type": "gp3", "size": 20, "iops": 4000, "throughput": 225})
    cost = estimate_cost([PUBLIC_SUBNET, server, state], {})
    expected = 0.0416 * H + 30 * 0.08 + 0.005 * H + (20 * 0.08 + 1000 * 0.005 + 100 * 0.04)
    assert cost.control_plane_monthly_usd == pytest.approx(expected)
    assert cost.unpriced == ()


def test_private_instance_has_no_public_ip_and_default_root_volume() -> None:
    box = res("aws:ec2/instance:Instance", "box", {"instanceType": "t3.small"}, deps=(PRIVATE_SUBNET.urn,))
    cost = estimate_cost([PRIVATE_SUBNET, box], {})
    assert cost.control_plane_monthly_usd == pytest.approx(0.0208 * H + prices.DEFAULT_ROOT_VOLUME_GB * 0.08)


def test_gateway_with_elastic_ip_pays_for_the_eip_only() -> None:
    gateway = res(
        "aws:ec2/instance:Instance",
        "wg-gateway",
        {"instanceType": "t3.small", "rootBlockDevice": {"volumeSize": 8}},
        deps=(PUBLIC_SUBNET.urn,),
    )
    eip = res("aws:ec2/eip:Eip", "wg-eip", {"instance": "i-1"}, deps=(gateway.urn,))
    cost = estimate_cost([PUBLIC_SUBNET, gateway, eip], {})
    assert cost.control_plane_monthly_usd == pytest.approx(0.0208 * H + 8 * 0.08 + 0.005 * H)
    assert [i.what for i in cost.items if "IP" in i.what] == ["Elastic IP"]


def test_gpu_groups_are_extras_and_cpu_groups_control_plane() -> None:
    gpu_lt = res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "gpu-lt",
        {"instanceType": "g6.xlarge", "blockDeviceMappings": [{"ebs": {"volumeType": "gp3", "volumeSize": "256"}}]},
    )
    gpu_asg = res("aws:autoscaling/group:Group", "gpu-asg", {"desiredCapacity": 2}, (gpu_lt.urn, PUBLIC_SUBNET.urn))
    cpu_lt = res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "cpu-lt",
        {"instanceType": "m6i.large", "networkInterfaces": [{"associatePublicIpAddress": "false"}]},
    )
    cpu_asg = res("aws:autoscaling/group:Group", "cpu-asg", {"minSize": 1}, (cpu_lt.urn, PUBLIC_SUBNET.urn))
    cost = estimate_cost([PUBLIC_SUBNET, gpu_lt, gpu_asg, cpu_lt, cpu_asg], {})
    assert cost.gpu_extras_hourly_usd == pytest.approx(2 * (256 * 0.08 + 0.005 * H) / H)
    assert cost.control_plane_monthly_usd == pytest.approx(0.096 * H + 8 * 0.08)


def test_gpu_hourly_from_the_nodes_export() -> None:
    nodes = {
        "a": {"region": "us-east-2", "instance_type": "g6.xlarge", "spot": True, "hourly_usd": 0.3783},
        "b": {"region": "us-west-2", "instance_type": "g6.xlarge", "spot": True, "hourly_usd": 0.3783},
        "c": {"region": "eu-west-1", "instance_type": "g5.xlarge", "spot": False, "hourly_usd": 1.006},
    }
    cost = estimate_cost([], {"nodes": Secret(nodes)})
    assert cost.gpu_hourly_usd_spot == pytest.approx(0.7566)
    assert cost.gpu_hourly_usd_on_demand == pytest.approx(1.006)
    assert cost.gpu_hourly_usd == pytest.approx(1.7626)


def test_unpriced_resources_are_listed_not_zeroed() -> None:
    resources = [
        res("aws:ec2/instance:Instance", "odd", {"instanceType": "x9.huge"}),
        res("aws:ebs/volume:Volume", "odd-vol", {"type": "fancy", "size": 1}),
        res("gcp:compute/instance:Instance", "gcp-node"),
    ]
    unpriced = estimate_cost(resources, {}).unpriced
    assert len(unpriced) == 3
    assert any("x9.huge" in u for u in unpriced) and any("gcp-node" in u for u in unpriced)


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["dev", "global"])
def test_example_stacks(stack: str) -> None:
    report = plan(stack)
    cost = report.cost
    assert cost.fabric_monthly_usd == 0  # no TGW: peering, VPCs, subnets, routes and SGs are free (NAT: apart)
    server = [i for i in cost.items if i.resource == "mesh-cluster-k3s-instance"]
    assert {i.what for i in server} >= {"t3.medium instance", "public IPv4 address"}
    assert cost.control_plane_monthly_usd >= 0.0416 * H
    nodes = report.nodes
    assert cost.gpu_hourly_usd == pytest.approx(sum(n["hourly_usd"] for n in nodes.values()))
    assert cost.gpu_hourly_usd_spot == pytest.approx(sum(n["hourly_usd"] for n in nodes.values() if n["spot"]))
    # Every AWS resource has a price; only GCP sites' machines (no GCP price table) may be listed unpriced.
    assert all("gcp:" in entry for entry in cost.unpriced), cost.unpriced


@pytest.mark.slow
def test_json_and_table_show_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert {"fabric_monthly_usd", "control_plane_monthly_usd", "gpu_hourly_usd"} <= set(cost)
    assert {"gpu_hourly_usd_spot", "gpu_hourly_usd_on_demand"} <= set(cost)
    assert cost["gpu_hourly_usd"] == pytest.approx(cost["gpu_hourly_usd_spot"] + cost["gpu_hourly_usd_on_demand"])
    assert cost["price_snapshot"] == prices.SNAPSHOT
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "global"]) == 0
    out = capsys.readouterr().out
    assert "Estimated cost" in out and f"snapshot {prices.SNAPSHOT}" in out
    assert "GPU fleet, spot" in out and "control plane" in out
    assert "Phoenix backups (S3)" in out and "265 copies" in out


def test_backup_storage_arithmetic() -> None:
    """Snapshots: retention + a noncurrent day + a day of lifecycle lag; overwritten latest versions: a noncurrent
    day + a day of lag; plus the current latest."""
    assert backup_copies(60, 7) == 24 * (7 + 1 + 1) + 24 * (1 + 1) + 1 == 265
    assert backup_copies(1440, 1) == 1 * 3 + 1 * 2 + 1
    storage = backup_storage(interval_minutes=60, retention_days=7, volume_gb=50)
    assert storage.usd_month_per_gb == pytest.approx(265 * prices.S3_STANDARD_USD_GB_MONTH)
    assert storage.usd_month_at_volume_size == pytest.approx(50 * storage.usd_month_per_gb)
    with pytest.raises(ValueError):
        backup_copies(0, 7)


def test_the_estimate_reads_the_backup_schedule_from_the_plans_export() -> None:
    export = {"backup_interval_minutes": 30, "backup_retention_days": 3, "volume_gb": 20}
    cost = estimate_cost([], {"phoenixBackup": export})
    assert cost.phoenix_backup == backup_storage(interval_minutes=30, retention_days=3, volume_gb=20)
    assert cost.to_json()["phoenix_backup"]["copies"] == 48 * 5 + 48 * 2 + 1
    assert estimate_cost([], {"phoenixBackup": None}).phoenix_backup is None
    assert estimate_cost([], {}).to_json()["phoenix_backup"] is None
    assert backup_storage_from_export({"backup_interval_minutes": "x"}) is None
