"""The GPU catalog: gpu x count -> instance types, prices, and which regions offer them."""

from __future__ import annotations

import pytest

from lmrun.aws.instances import catalog
from lmrun.aws.region.catalog import REGIONS


@pytest.mark.parametrize(
    ("gpu", "count", "expected"),
    [
        ("L4", 1, "g6.xlarge"),
        ("A10G", 1, "g5.xlarge"),
        ("L4", 4, "g6.12xlarge"),
        ("L4", 8, "g6.48xlarge"),
        ("T4", 1, "g4dn.xlarge"),
        ("T4", 4, "g4dn.12xlarge"),
        ("L40S", 1, "g6e.xlarge"),
        ("A100", 8, "p4d.24xlarge"),
        ("A100-80GB", 8, "p4de.24xlarge"),
        ("H100", 1, "p5.4xlarge"),
        ("H100", 8, "p5.48xlarge"),
        ("l4", 1, "g6.xlarge"),
        ("a10", 1, "g5.xlarge"),
    ],
)
def test_smallest_instance_type(gpu: str, count: int, expected: str) -> None:
    assert catalog.smallest_instance_type(gpu, count).name == expected


def test_unknown_gpu_is_a_key_error_listing_known_gpus() -> None:
    with pytest.raises(KeyError, match="known GPUs: T4, A10G, L4"):
        catalog.instance_types_for("K80", 1)


@pytest.mark.parametrize(("gpu", "count"), [("L4", 3), ("A100", 1), ("H100", 2), ("L4", 0)])
def test_count_no_instance_type_has_is_a_value_error(gpu: str, count: int) -> None:
    with pytest.raises(ValueError):
        catalog.instance_types_for(gpu, count)


def test_candidates_are_cheapest_first_and_exact() -> None:
    types = catalog.instance_types_for("A10G", 1)
    assert [t.name for t in types] == ["g5.xlarge", "g5.2xlarge", "g5.4xlarge", "g5.8xlarge", "g5.16xlarge"]
    assert all(t.gpu == "A10G" and t.gpu_count == 1 for t in types)


def test_instance_facts() -> None:
    g6 = catalog.instance_type("g6.12xlarge")
    assert (g6.vcpus, g6.memory_gib, g6.gpu_memory_gib, g6.family) == (48, 192, 96, "g6")
    assert g6.spot_usd_hour is not None and g6.spot_usd_hour < g6.on_demand_usd_hour
    assert g6.hourly_usd(spot=True) == g6.spot_usd_hour
    assert g6.hourly_usd(spot=False) == g6.on_demand_usd_hour
    p5 = catalog.instance_type("p5.4xlarge")
    assert p5.spot_usd_hour is None and p5.hourly_usd(spot=True) == p5.on_demand_usd_hour
    with pytest.raises(KeyError):
        catalog.instance_type("m7i.large")


def test_every_entry_is_consistent() -> None:
    assert catalog.gpu_names()[:3] == ("T4", "A10G", "L4")
    for t in catalog.INSTANCE_TYPES.values():
        assert t.family in catalog.FAMILY_REGIONS, t.name
        assert t.family in catalog.GPUS[t.gpu].families, t.name
        assert t.gpu_memory_gib == catalog.GPUS[t.gpu].memory_gib * t.gpu_count
        assert t.on_demand_usd_hour > 0
        assert t.spot_usd_hour is None or 0 < t.spot_usd_hour < t.on_demand_usd_hour
        assert "us-east-1" in catalog.FAMILY_REGIONS[t.family], "prices are us-east-1 figures"
    for gpu in catalog.GPUS.values():
        assert any(t.gpu == gpu.name for t in catalog.INSTANCE_TYPES.values()), gpu.name


def test_regions_are_known_regions() -> None:
    for family, regions in catalog.FAMILY_REGIONS.items():
        assert regions <= set(REGIONS), (family, sorted(regions - set(REGIONS)))


def test_offered_in() -> None:
    assert catalog.offered_in("g6.xlarge", "us-east-1")
    assert catalog.offered_in("g5.xlarge", "eu-west-1")
    assert not catalog.offered_in("g6e.xlarge", "af-south-1")
    assert not catalog.offered_in("p4de.24xlarge", "sa-east-1")
    assert "us-west-2" in catalog.gpu_regions("h100")
    with pytest.raises(KeyError):
        catalog.offered_in("g7.xlarge", "us-east-1")


def _alternatives(chosen: str, region: str) -> list[str]:
    return [t.name for t in catalog.alternative_instance_types(catalog.instance_type(chosen), region)]


def test_spot_alternatives_carry_the_same_gpus_and_cost_at_most_half_again() -> None:
    assert _alternatives("g6.xlarge", "us-east-2") == ["g6.2xlarge"]  # g6.4xlarge is 1.64x the price
    assert _alternatives("g4dn.xlarge", "us-east-1") == ["g4dn.2xlarge"]
    assert _alternatives("g6.12xlarge", "us-east-2") == ["g6.24xlarge"]
    assert _alternatives("g6.48xlarge", "us-east-2") == []  # 8x L4: one type, one pool per AZ
    assert _alternatives("p5.48xlarge", "us-east-1") == []
    for chosen in catalog.INSTANCE_TYPES.values():
        for region in catalog.regions_offering(chosen.name):
            for alternative in catalog.alternative_instance_types(chosen, region):
                assert (alternative.gpu, alternative.gpu_count) == (chosen.gpu, chosen.gpu_count)
                assert alternative.spot_usd_hour is not None and catalog.offered_in(alternative.name, region)
                assert alternative.on_demand_usd_hour <= chosen.on_demand_usd_hour * catalog.MAX_ALTERNATIVE_PRICE_RATIO
