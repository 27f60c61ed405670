"""Sites keep their own networks: any private range clear of the mesh's ranges and of other sites is a site,
and everything the mesh builds for a site (routes, rules, tunnels, reachability) works the same for it.

Reproduces issue 12's first report: an external site on its real LAN 192.168.10.0/24 was refused ("outside the
site range 10.128.0.0/10 reserved for non-AWS sites"), so a lab or an existing network could not join.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.domain.addresses import (
    MESH_RANGES,
    PRIVATE_RANGES,
    RESERVED_BLOCKS,
    SITE_POOL,
    TUNNEL_POOL,
    TUNNEL_SLOTS,
    site_slot,
    site_tunnel_address,
)
from lmrun.mock_engine import Recording
from lmrun.plan import plan_mesh
from lmrun.spec import spec_from_config
from lmrun.spec.errors import PlanError
from lmrun.verify.reachability import reachability_from_resources
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import ROOT, plan, stack_config
from tests.test_sites_stack import GCP, GCP_NODE, LAB, MESH

Net = ipaddress.IPv4Network
MAIN = "us-east-1"
HOME = {"name": "lab-home", "kind": "external", "cidr": "192.168.10.0/24"}
HOME_TUNNEL = "10.192.64.12"  # slot 16,384 + 10: the 11th /24 of 192.168.0.0/16, right after the site range


def _global_sites() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"]["lmrun:sites"])


# --- tunnel addresses ---------------------------------------------------------------------------------------


def _site_24s() -> list[Net]:
    """Every /24 a site may start at: the private ranges minus the mesh's ranges."""
    blocked = [block for block, _ in MESH_RANGES.values()]
    return [
        net
        for private in PRIVATE_RANGES
        for net in private.subnets(new_prefix=24)
        if not any(net.subnet_of(block) for block in blocked)
    ]


def test_every_site_24_has_its_own_slot_and_the_site_range_comes_first() -> None:
    """A slot per /24, none shared: the slots of all 69,120 /24s a site may use are exactly 0..69,119."""
    nets = _site_24s()
    slots = sorted(site_slot(net) for net in nets)
    assert slots == list(range(len(nets))) and len(nets) == 69_120
    # Sites in the site range keep the address they always had: 2 + the index of their first /24 there.
    for cidr in ("10.128.0.0/20", "10.129.0.0/24", "10.191.255.0/24"):
        net = Net(cidr)
        old = TUNNEL_POOL.network_address + 2 + ((int(net.network_address) - int(SITE_POOL.network_address)) >> 8)
        assert site_tunnel_address(net) == old
    assert str(site_tunnel_address(Net(HOME["cidr"]))) == HOME_TUNNEL


def test_tunnel_addresses_stay_inside_the_tunnel_range_and_wrap_where_documented() -> None:
    addresses = {site_tunnel_address(net) for net in _site_24s()}
    assert len(addresses) == TUNNEL_SLOTS == TUNNEL_POOL.num_addresses - 3
    assert min(addresses) == TUNNEL_POOL.network_address + 2
    assert max(addresses) == TUNNEL_POOL.broadcast_address - 1, "never the hub's .1 nor the range's last address"
    # The one sharing the spec must refuse (lmrun.domain.addresses.site_tunnel_address's docstring).
    assert site_tunnel_address(Net("100.113.252.0/24")) == TUNNEL_POOL.broadcast_address - 1
    assert site_tunnel_address(Net("100.113.253.0/24")) == site_tunnel_address(Net("10.128.0.0/24"))
    assert site_tunnel_address(Net("100.127.255.0/24")) == site_tunnel_address(Net("10.142.2.0/24"))


@pytest.mark.parametrize("cidr", ["203.0.113.0/24", "10.64.5.0/24", "10.42.0.0/24", "10.192.3.0/24", "10.0.0.0/7"])
def test_a_cidr_no_site_may_have_has_no_slot(cidr: str) -> None:
    with pytest.raises(ValueError, match=cidr):
        site_slot(Net(cidr))


def test_the_mesh_ranges_are_the_reserved_blocks_but_the_sites_own() -> None:
    assert {name: block for name, (block, _) in MESH_RANGES.items()} == {
        name: block for name, block in RESERVED_BLOCKS.items() if block != SITE_POOL
    }


# --- the spec and the plan, through the real CLI ---------------------------------------------------------------

ACCEPTED = {
    f"{kind}-{cidr}": (kind, cidr)
    for kind in ("external", "gcp")
    for cidr in ("192.168.10.0/24", "172.20.0.0/16", "100.64.5.0/24")
}


@pytest.mark.parametrize(("kind", "cidr"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_site_on_its_own_private_network_plans_with_every_path_carried(
    kind: str, cidr: str, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: `lmrun:sites[0].cidr: ... is outside the site range 10.128.0.0/10`. Now the plan passes (policy
    included), and the recorded routes, rules and tunnels carry every path (the main region to the GCP site's
    node; the site to the K3s API) the same as for a site in 10.128.0.0/10."""
    site = {**(GCP if kind == "gcp" else LAB), "cidr": cidr}
    config = {**MESH, "sites": [site], "nodes": [GCP_NODE] if kind == "gcp" else []}
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.own.yaml", config), capsys)
    assert code == 0, err
    document = json.loads(out)
    assert document["violations"] == []
    assert document["sites"][site["name"]]["cidr"] == cidr
    assert document["sites"][site["name"]]["tunnel_address"] == str(site_tunnel_address(Net(cidr)))
    paths = {(p["from"], p["to"]): p for p in document["reachability"]}
    assert (site["name"], "k3s-api") in paths and (kind != "gcp" or (MAIN, "l4-gcp") in paths)
    for path in paths.values():
        assert (path["ok"], path["resources_ok"]) == (True, True), path


def _lab(cidr: str, name: str = "lab") -> dict[str, Any]:
    return {**LAB, "name": name, "cidr": cidr}


REFUSED: dict[str, Case] = {
    "main-region-vpc": Case(
        {**MESH, "sites": [_lab("10.64.128.0/24")]},
        (("lmrun:sites[0].cidr", "10.64.128.0/24 overlaps 10.64.0.0/16, the VPC of us-east-1 (lmrun:mainRegion)"),),
    ),
    "spoke-region-vpc": Case(
        {**MESH, "sites": [_lab("10.67.32.0/24")]},
        (("lmrun:sites[0].cidr", "10.67.32.0/24 overlaps 10.67.0.0/16, the VPC of us-west-2 (lmrun:regions[1])"),),
    ),
    "two-region-vpcs-at-once": Case(
        {**MESH, "sites": [{**GCP, "cidr": "10.64.0.0/15"}]},
        (
            ("lmrun:sites[0].cidr", "10.64.0.0/15 overlaps 10.64.0.0/16, the VPC of us-east-1 (lmrun:mainRegion)"),
            ("lmrun:sites[0].cidr", "10.64.0.0/15 overlaps 10.65.0.0/16, the VPC of us-east-2 (lmrun:regions[0])"),
        ),
    ),
    "a-region-added-later": Case(
        {**MESH, "sites": [_lab("10.100.0.0/24")]},
        (("lmrun:sites[0].cidr", "10.100.0.0/24 overlaps 10.64.0.0/10, reserved for the AWS regions' VPCs"),),
    ),
    "k3s-pods": Case(
        {**MESH, "sites": [_lab("10.42.7.0/24")]},
        (("lmrun:sites[0].cidr", "10.42.7.0/24 overlaps 10.42.0.0/16, reserved for the K3s pod network"),),
    ),
    "k3s-services-and-pods": Case(
        {**MESH, "sites": [{**GCP, "cidr": "10.40.0.0/13"}]},
        (
            ("lmrun:sites[0].cidr", "10.40.0.0/13 overlaps 10.42.0.0/16, reserved for the K3s pod network"),
            ("lmrun:sites[0].cidr", "10.40.0.0/13 overlaps 10.43.0.0/16, reserved for the K3s service network"),
        ),
    ),
    "tunnels": Case(
        {**MESH, "sites": [_lab("10.192.0.0/24")]},
        (("lmrun:sites[0].cidr", "overlaps 10.192.0.0/16, reserved for the WireGuard tunnel addresses"),),
    ),
    "another-site": Case(
        {**MESH, "sites": [_lab("192.168.0.0/16"), _lab("192.168.10.0/24", "lab-b")]},
        (("lmrun:sites[1].cidr", "192.168.10.0/24 overlaps lmrun:sites[0] (lab, 192.168.0.0/16)"),),
    ),
    "another-site-of-another-kind": Case(
        {**MESH, "sites": [{**GCP, "cidr": "172.20.0.0/16"}, _lab("172.20.8.0/24")]},
        (("lmrun:sites[1].cidr", "172.20.8.0/24 overlaps lmrun:sites[0] (gcp-a, 172.20.0.0/16)"),),
    ),
    "public": Case(
        {**MESH, "sites": [_lab("203.0.113.0/24")]},
        (("lmrun:sites[0].cidr", "203.0.113.0/24 is not a private range; a site's network must lie inside"),),
    ),
    "public-at-a-gcp-site": Case(
        {**MESH, "sites": [{**GCP, "cidr": "8.8.8.0/24"}]},
        (("lmrun:sites[0].cidr", "would take public addresses away from their owners"),),
    ),
    "just-past-the-shared-address-space": Case(
        {**MESH, "sites": [_lab("100.128.0.0/24")]},
        (("lmrun:sites[0].cidr", "100.64.0.0/10 (RFC 6598 shared address space)"),),
    ),
    "wider-than-a-private-range": Case(
        {**MESH, "sites": [_lab("172.0.0.0/8")]},
        (("lmrun:sites[0].cidr", "172.0.0.0/8 is not a private range"),),
    ),
    "sharing-a-tunnel-address": Case(
        {**MESH, "sites": [_lab("10.128.0.0/24"), _lab("100.113.253.0/24", "lab-b")]},
        (
            (
                "lmrun:sites[1].cidr",
                "100.113.253.0/24 would share the tunnel address 10.192.0.2 with lmrun:sites[0] (lab, 10.128.0.0/24)",
            ),
        ),
    ),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_site_range_the_mesh_cannot_carry_is_refused_naming_both_ranges(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


# --- `global` plus a site on its own LAN: the recorded resources ------------------------------------------------


def _with_home() -> Recording:
    return plan("global", sites=[*_global_sites(), HOME]).recording


def test_global_with_a_site_on_192_168_10_0_24_is_all_green() -> None:
    report = plan("global", sites=[*_global_sites(), HOME])
    document = report.to_json()
    assert document["violations"] == []
    assert document["sites"]["lab-home"] == {
        "cidr": "192.168.10.0/24",
        "kind": "external",
        "mtu": 1440,
        "tunnel_address": HOME_TUNNEL,
    }
    paths = document["reachability"]
    assert ("lab-home", "k3s-api") in {(p["from"], p["to"]) for p in paths}
    for path in paths:
        assert (path["ok"], path["resources_ok"]) == (True, True), path
    home = next(p for p in paths if p["from"] == "lab-home")
    assert "WireGuard lab-home -> hub" in home["resources_reason"]


def test_the_main_vpc_routes_and_admits_the_site_and_the_spokes_route_nothing_to_it() -> None:
    recording = _with_home()
    route = recording.named("mesh-sites-hub-route-lab-home").inputs
    hub_eni = recording.named("mesh-sites-hub-route-lab-onprem").inputs["networkInterfaceId"]
    assert route == {
        "destinationCidrBlock": "192.168.10.0/24",
        "routeTableId": "mesh-us-east-1-rt-id",
        "networkInterfaceId": hub_eni,
    }
    rule = recording.named("mesh-sites-hub-from-lab-home").inputs
    assert (rule["securityGroupId"], rule["ipProtocol"], rule["cidrIpv4"]) == (
        "mesh-us-east-1-sg-id",
        "-1",
        HOME["cidr"],
    )
    # Spokes peer only with the main VPC, which would drop a packet for a site: no spoke routes one.
    home = Net(HOME["cidr"])
    spokes = recording.by_type("aws:ec2/defaultRouteTable:DefaultRouteTable")
    assert len(spokes) == 17
    for table in spokes:
        assert [r["cidrBlock"] for r in table.inputs["routes"] if Net(r["cidrBlock"]).overlaps(home)] == [
            "0.0.0.0/0"
        ], table.name


def test_the_hub_and_the_join_bundle_carry_the_sites_range_in_allowed_ips() -> None:
    recording = _with_home()
    hub = recording.named("mesh-sites-hub-config").inputs["value"].value
    assert "# peer: lab-home\n[Peer]\nPublicKey = " in hub
    assert f"AllowedIPs = {HOME_TUNNEL}/32, 192.168.10.0/24" in hub  # in address order
    bundle = recording.outputs["joinBundles"].value["lab-home"]["config"]
    assert f"Address = {HOME_TUNNEL}/32" in bundle and "MTU = 1440" in bundle
    # The site routes only the main region and the tunnel range into its tunnel, whatever its own range.
    assert "AllowedIPs = 10.64.0.0/16, 10.192.0.0/16, 10.192.0.1/32" in bundle


def _failing(recording: Recording) -> dict[tuple[str, str], str]:
    verdicts = reachability_from_resources(recording, recording.outputs)
    return {(v.source, v.target): v.reason for v in verdicts if not v.ok}


def _without(recording: Recording, name: str) -> Recording:
    kept = [r for r in recording.resources if r.name != name]
    assert len(kept) == len(recording.resources) - 1
    return replace(recording, resources=kept)


def test_the_resource_walk_sees_a_missing_route_or_rule_for_the_sites_range() -> None:
    """The green verdicts above are earned: without the hub's route or rule for 192.168.10.0/24 the site loses
    the K3s API, and the reason names the range."""
    recording = _with_home()
    assert _failing(recording) == {}
    no_route = _failing(_without(recording, "mesh-sites-hub-route-lab-home"))
    assert set(no_route) == {("lab-home", "k3s-api")}
    assert "route table mesh-us-east-1-rt has no route for 192.168.10.0/24" in no_route[("lab-home", "k3s-api")]
    no_rule = _failing(_without(recording, "mesh-sites-hub-from-lab-home"))
    assert set(no_rule) == {("lab-home", "k3s-api")}
    assert "192.168.10.0/24" in no_rule[("lab-home", "k3s-api")]


def test_adding_a_site_on_its_own_lan_only_adds_resources_and_the_hubs_peer_entry() -> None:
    before = {r.urn: r.inputs for r in plan("global").recording.resources}
    after = {r.urn: r.inputs for r in _with_home().resources}
    assert set(before) < set(after)
    changed = sorted(urn.rsplit("::", 1)[-1] for urn in before if before[urn] != after[urn])
    assert changed == ["mesh-sites-hub-config"]
    added = sorted(urn.rsplit("::", 1)[-1] for urn in set(after) - set(before))
    assert added == [
        "mesh-sites-hub-from-lab-home",
        "mesh-sites-hub-route-lab-home",
        "mesh-sites-hub-route-private-lab-home",  # ... in the main region's private table too (SkyPilot's VMs)
        "mesh-sites-lab-home-key",
        "mesh-skypilot-us-east-1-from-site-lab-home",  # SkyPilot's main group admits the site (lmrun:skypilot)
    ]


def test_a_gcp_site_on_its_own_range_gets_its_subnet_firewall_gateway_and_routes() -> None:
    """GCP keeps the site's range too: its subnetwork, the rule admitting the site itself, the gateway's fixed
    address, and the main VPC's route and rule; the site's own routes still name only the AWS ranges."""
    sites = [{**site, "cidr": "172.20.0.0/16"} if site["kind"] == "gcp" else site for site in _global_sites()]
    report = plan("global", sites=sites)
    recording = report.recording
    assert recording.named("mesh-sites-gcp-usc1-subnet").inputs["ipCidrRange"] == "172.20.0.0/16"
    assert recording.named("mesh-sites-gcp-usc1-allow-internal").inputs["sourceRanges"] == ["172.20.0.0/16"]
    assert recording.named("mesh-sites-gcp-usc1-allow-mesh").inputs["sourceRanges"] == ["10.64.0.0/16", "10.192.0.0/16"]
    assert recording.named("mesh-sites-gcp-usc1-gateway-internal-ip").inputs["address"] == "172.20.0.10"
    assert sorted(r.inputs["destRange"] for r in recording.by_type("gcp:compute/route:Route")) == [
        "10.192.0.0/16",
        "10.64.0.0/16",
    ]
    assert recording.named("mesh-sites-hub-route-gcp-usc1").inputs["destinationCidrBlock"] == "172.20.0.0/16"
    assert recording.named("mesh-sites-hub-from-gcp-usc1").inputs["cidrIpv4"] == "172.20.0.0/16"
    tunnel = str(site_tunnel_address(Net("172.20.0.0/16")))
    assert f"AllowedIPs = {tunnel}/32, 172.20.0.0/16" in recording.named("mesh-sites-hub-config").inputs["value"].value
    document = report.to_json()
    assert document["violations"] == []
    for path in document["reachability"]:
        assert (path["ok"], path["resources_ok"]) == (True, True), path
    assert "WireGuard mesh-sites-hub-instance -> gcp-usc1" in next(
        p["resources_reason"] for p in document["reachability"] if (p["from"], p["to"]) == (MAIN, "qwen-gcp")
    )


def test_sites_on_their_own_ranges_count_against_the_main_route_table_quota() -> None:
    """Every site is one route in the main route table (no aggregate covers sites outside one range): `dev`
    (no spoke) has the internet route and the tunnel range, so 48 sites fill the default 50 routes, and the plan
    refuses the 49th before anything is created (Amazon VPC quotas: 50 routes per route table)."""

    def sites(count: int) -> list[dict[str, Any]]:
        ranges = ("192.168.{}.0/24", "172.20.{}.0/24", "100.64.{}.0/24")
        return [{"name": f"lab-{i}", "kind": "external", "cidr": ranges[i % 3].format(i)} for i in range(count)]

    full = plan_mesh(spec_from_config(stack_config("dev", sites=sites(48)).config), mesh="dev")
    assert full.main_routes == 50
    with pytest.raises(PlanError, match="the main route table would need 51 routes, more than the AWS default of 50"):
        plan_mesh(spec_from_config(stack_config("dev", sites=sites(49)).config), mesh="dev")
