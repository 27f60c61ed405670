"""The address plan: fixed, disjoint region /16s, reserved ranges kept clear, subnets keyed by AZ id."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrun.aws.network.cidr_blocks import (
    AZ_SUBNET_PREFIX,
    MAX_AZ_NUMBER,
    REGION_CIDRS,
    az_subnet_cidr,
    region_cidr,
)
from lmrun.aws.region.catalog import REGIONS, az_prefix
from lmrun.aws.region.selection import ROGUE_REGIONS
from lmrun.domain.addresses import (
    K3S_POD_CIDR,
    K3S_SERVICE_CIDR,
    REGION_POOL,
    RESERVED_BLOCKS,
    SITE_POOL,
    TUNNEL_POOL,
    overlapping_pairs,
)
from lmrun.plan import plan_mesh
from lmrun.spec import MeshSpec
from tests.conftest import pinned_images

Net = ipaddress.IPv4Network

# The table as shipped. A region's CIDR must never change once deployed: renumbering one fails here.
# New regions are appended (to the code table and to this literal), never inserted with a shifted number.
PINNED_REGION_CIDRS: dict[str, str] = {
    "us-east-1": "10.64.0.0/16",
    "us-east-2": "10.65.0.0/16",
    "us-west-1": "10.66.0.0/16",
    "us-west-2": "10.67.0.0/16",
    "ca-central-1": "10.68.0.0/16",
    "ca-west-1": "10.69.0.0/16",
    "mx-central-1": "10.70.0.0/16",
    "sa-east-1": "10.71.0.0/16",
    "eu-west-1": "10.72.0.0/16",
    "eu-west-2": "10.73.0.0/16",
    "eu-west-3": "10.74.0.0/16",
    "eu-central-1": "10.75.0.0/16",
    "eu-central-2": "10.76.0.0/16",
    "eu-south-1": "10.77.0.0/16",
    "eu-south-2": "10.78.0.0/16",
    "eu-north-1": "10.79.0.0/16",
    "il-central-1": "10.80.0.0/16",
    "me-south-1": "10.81.0.0/16",
    "me-central-1": "10.82.0.0/16",
    "af-south-1": "10.83.0.0/16",
    "ap-south-1": "10.84.0.0/16",
    "ap-south-2": "10.85.0.0/16",
    "ap-southeast-1": "10.86.0.0/16",
    "ap-southeast-2": "10.87.0.0/16",
    "ap-southeast-3": "10.88.0.0/16",
    "ap-southeast-4": "10.89.0.0/16",
    "ap-southeast-5": "10.90.0.0/16",
    "ap-southeast-6": "10.91.0.0/16",
    "ap-southeast-7": "10.92.0.0/16",
    "ap-northeast-1": "10.93.0.0/16",
    "ap-northeast-2": "10.94.0.0/16",
    "ap-northeast-3": "10.95.0.0/16",
    "ap-east-1": "10.96.0.0/16",
    "ap-east-2": "10.97.0.0/16",
}

# The 34 public commercial regions the issue names as the floor (AWS, late 2026).
PUBLIC_REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1",
        "sa-east-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-south-1",
        "eu-south-2", "eu-north-1", "il-central-1", "me-south-1", "me-central-1", "af-south-1", "ap-south-1",
        "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
        "ap-southeast-6", "ap-southeast-7", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-east-1",
        "ap-east-2",
    }
)  # fmt: skip

USABLE_REGIONS = sorted(set(REGIONS) - set(ROGUE_REGIONS))


def test_region_table_is_pinned() -> None:
    assert {region: str(cidr) for region, cidr in REGION_CIDRS.items()} == PINNED_REGION_CIDRS


def test_region_table_only_appends() -> None:
    """Octets rise in table order with no gaps: a new region goes at the end, after the highest octet."""
    octets = [int(str(cidr).split(".")[1]) for cidr in REGION_CIDRS.values()]
    assert octets == list(range(64, 64 + len(octets)))


def test_every_catalog_region_has_a_cidr() -> None:
    assert set(REGIONS) == set(REGION_CIDRS)
    for region in REGIONS:
        assert region_cidr(region) == REGION_CIDRS[region]


def test_the_34_public_regions_are_covered() -> None:
    assert len(PUBLIC_REGIONS) == 34
    assert set(REGION_CIDRS) >= PUBLIC_REGIONS
    assert region_cidr("mx-central-1") == Net("10.70.0.0/16")
    assert region_cidr("ap-southeast-7") == Net("10.92.0.0/16")


def test_unknown_region_has_no_cidr() -> None:
    with pytest.raises(KeyError):
        region_cidr("eu-west-9")


def test_region_cidrs_are_disjoint_16s_inside_the_region_pool() -> None:
    assert all(cidr.prefixlen == 16 and cidr.subnet_of(REGION_POOL) for cidr in REGION_CIDRS.values())
    assert overlapping_pairs(REGION_CIDRS.items()) == []
    assert len(set(REGION_CIDRS.values())) == len(REGION_CIDRS)


def test_reserved_blocks_are_the_documented_ones_and_disjoint() -> None:
    assert {name: str(net) for name, net in RESERVED_BLOCKS.items()} == {
        "k3s-pods": "10.42.0.0/16",
        "k3s-services": "10.43.0.0/16",
        "aws-regions": "10.64.0.0/10",
        "sites": "10.128.0.0/10",
        "wireguard-tunnels": "10.192.0.0/16",
    }
    assert tuple(RESERVED_BLOCKS.values()) == (K3S_POD_CIDR, K3S_SERVICE_CIDR, REGION_POOL, SITE_POOL, TUNNEL_POOL)
    assert all(net.subnet_of(Net("10.0.0.0/8")) for net in RESERVED_BLOCKS.values())
    assert overlapping_pairs(RESERVED_BLOCKS.items()) == []


@pytest.mark.parametrize("region", sorted(REGION_CIDRS))
def test_region_cidr_clears_every_reserved_block_but_its_pool(region: str) -> None:
    cidr = region_cidr(region)
    others = {name: net for name, net in RESERVED_BLOCKS.items() if name != "aws-regions"}
    assert [name for name, net in others.items() if cidr.overlaps(net)] == []


def test_region_pool_has_room_for_the_table() -> None:
    free = [net for net in REGION_POOL.subnets(new_prefix=16) if net not in set(REGION_CIDRS.values())]
    assert len(free) == 64 - len(REGION_CIDRS) == 30


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_every_catalog_az_gets_a_subnet_inside_its_region(region: str) -> None:
    subnets = {az: az_subnet_cidr(region, az) for az in REGIONS[region].az_ids}
    reserved_slot = next(region_cidr(region).subnets(new_prefix=AZ_SUBNET_PREFIX))
    assert subnets, f"{region} has no AZ ids in the catalog"
    for az, subnet in subnets.items():
        assert az.startswith(az_prefix(region) + "-az")
        assert subnet.prefixlen == AZ_SUBNET_PREFIX == 20
        assert subnet.subnet_of(region_cidr(region))
        assert not subnet.overlaps(reserved_slot), "10.R.0.0/20 is kept for infrastructure subnets"
    assert overlapping_pairs(subnets.items()) == []


def test_subnet_is_the_az_number_slot() -> None:
    assert az_subnet_cidr("us-east-1", "use1-az1") == Net("10.64.16.0/20")
    assert az_subnet_cidr("us-east-1", "use1-az4") == Net("10.64.64.0/20")
    assert az_subnet_cidr("us-east-1", "use1-az6") == Net("10.64.96.0/20")
    assert az_subnet_cidr("ap-southeast-7", "apse7-az3") == Net("10.92.48.0/20")
    assert az_subnet_cidr("us-west-2", f"usw2-az{MAX_AZ_NUMBER}") == Net("10.67.240.0/20")


@pytest.mark.parametrize("az_id", ["use1-az0", "use1-az16", "use1-a", "us-east-1a"])
def test_az_without_a_subnet_slot_is_refused(az_id: str) -> None:
    with pytest.raises(ValueError, match=az_id):
        az_subnet_cidr("us-east-1", az_id)


def _subnets(spec: MeshSpec, region: str) -> dict[str, str]:
    plan = plan_mesh(spec, mesh="t")
    return {s.az_id: s.cidr for s in plan.regions[region].subnets}


def test_adding_or_reordering_az_ids_never_moves_another_subnet() -> None:
    before = _subnets(
        MeshSpec(
            images=pinned_images("us-east-1"),
            main_region="us-east-1",
            availability_zones={"us-east-1": ("use1-az2", "use1-az4")},
        ),
        "us-east-1",
    )
    after = _subnets(
        MeshSpec(
            images=pinned_images("us-east-1"),
            main_region="us-east-1",
            availability_zones={"us-east-1": ("use1-az6", "use1-az4", "use1-az1", "use1-az2")},
        ),
        "us-east-1",
    )
    assert before == {"use1-az2": "10.64.32.0/20", "use1-az4": "10.64.64.0/20"}
    assert after == {**before, "use1-az1": "10.64.16.0/20", "use1-az6": "10.64.96.0/20"}


def test_catalog_azs_are_the_default_subnets() -> None:
    assert _subnets(MeshSpec(images=pinned_images("us-east-1"), main_region="us-east-1"), "us-east-1") == {
        "use1-az1": "10.64.16.0/20",
        "use1-az2": "10.64.32.0/20",
        "use1-az4": "10.64.64.0/20",
        "use1-az5": "10.64.80.0/20",
        "use1-az6": "10.64.96.0/20",
    }


def test_adding_a_spoke_never_changes_another_region() -> None:
    small = plan_mesh(
        MeshSpec(images=pinned_images("eu-west-1"), main_region="eu-west-1", regions=("us-west-2",)), mesh="t"
    ).regions
    big = plan_mesh(
        MeshSpec(
            images=pinned_images("eu-west-1"),
            main_region="eu-west-1",
            regions=("ap-southeast-7", "us-west-2", "mx-central-1"),
        ),
        mesh="t",
    )
    assert {name: big.regions[name] for name in small} == small
    assert [s.name for s in big.spokes] == ["ap-southeast-7", "mx-central-1", "us-west-2"]


def test_overlapping_pairs_names_each_overlap_in_input_order() -> None:
    blocks = [
        ("a", Net("10.0.0.0/16")),
        ("b", Net("10.1.0.0/16")),
        ("c", Net("10.0.128.0/17")),
        ("d", Net("10.0.0.0/8")),
    ]
    assert overlapping_pairs(blocks) == [("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")]


@st.composite
def meshes(draw: st.DrawFn) -> MeshSpec:
    """A random main region, a random subset of the other usable regions, random AZ ids for some."""
    chosen = draw(st.lists(st.sampled_from(USABLE_REGIONS), min_size=1, unique=True))
    main, spokes = chosen[0], chosen[1:]
    overrides = {}
    for region in draw(st.lists(st.sampled_from(chosen), unique=True, max_size=4)):
        numbers = draw(st.lists(st.integers(1, MAX_AZ_NUMBER), min_size=1, max_size=6, unique=True))
        overrides[region] = tuple(f"{az_prefix(region)}-az{n}" for n in numbers)
    return MeshSpec(main_region=main, regions=tuple(spokes), availability_zones=overrides, images=pinned_images(main))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes())
def test_any_mesh_has_disjoint_vpcs_and_subnets_inside_them(spec: MeshSpec) -> None:
    plan = plan_mesh(spec, mesh="prop")
    regions = plan.regions

    assert set(regions) == {spec.main_region, *spec.regions}
    assert plan.main.name == spec.main_region and plan.main.role == "main"
    assert all(spoke.role == "spoke" for spoke in plan.spokes)
    vpcs = {name: Net(r.cidr) for name, r in regions.items()}
    assert overlapping_pairs(vpcs.items()) == []
    assert not any(
        vpc.overlaps(net) for vpc in vpcs.values() for name, net in RESERVED_BLOCKS.items() if name != "aws-regions"
    )

    all_subnets = []
    for name, region in regions.items():
        expected_azs = set(spec.availability_zones.get(name) or REGIONS[name].az_ids)
        assert {s.az_id for s in region.subnets} == expected_azs
        for subnet in region.subnets:
            net = Net(subnet.cidr)
            assert net.subnet_of(vpcs[name])
            assert net == az_subnet_cidr(name, subnet.az_id)
            all_subnets.append((f"{name}/{subnet.az_id}", net))
    assert overlapping_pairs(all_subnets) == []
    assert len(all_subnets) == sum(len(r.subnets) for r in regions.values())


def test_every_usable_region_at_once() -> None:
    """The biggest mesh the catalog allows: 33 usable regions, all disjoint, every subnet in place."""
    main, *spokes = USABLE_REGIONS
    plan = plan_mesh(MeshSpec(main_region=main, regions=tuple(spokes), images=pinned_images(main)), mesh="all")
    assert len(plan.regions) == len(USABLE_REGIONS) == 33
    nets = [(f"{r.name}/{s.az_id}", Net(s.cidr)) for r in plan.regions.values() for s in r.subnets]
    assert overlapping_pairs(nets) == []
    assert len(nets) == sum(len(REGIONS[r].az_ids) for r in USABLE_REGIONS) == 102
