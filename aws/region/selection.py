"""Which regions may carry a spoke: the rogue list, and the pure part of ``lmrun regions sync``.

The live part (boto3 calls) is in :mod:`lmrun.aws.region.offerings`; this module decides from plain data
so it can be tested without any AWS API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lmrun.aws.network.cidr_blocks import MAX_AZ_NUMBER
from lmrun.aws.region.catalog import REGIONS

ROGUE_REGIONS: dict[str, str] = {
    "ap-east-1": (
        "Hong Kong is treated as mainland China under US export controls on advanced AI accelerators "
        "(since 2020); the mesh never plans GPU capacity there"
    ),
}
"""Regions that offer GPU instance types but that the mesh refuses, each with the reason."""


def is_usable(region: str) -> bool:
    """A region the mesh can plan: in the catalog (so it has a fixed CIDR) and not rogue."""
    return region in REGIONS and region not in ROGUE_REGIONS


def select_spoke_regions(
    offerings: Mapping[str, Iterable[str]],
    *,
    main_region: str,
    enabled_regions: Iterable[str],
) -> list[str]:
    """Spoke regions for a stack: every usable, enabled region offering any wanted instance type.

    ``offerings`` maps a region to the wanted instance types it offers (already filtered by the caller).
    The main region is never a spoke; the result is sorted so the stack file diff stays stable.
    """
    enabled = set(enabled_regions)
    return sorted(
        region
        for region, types in offerings.items()
        if region != main_region and region in enabled and is_usable(region) and any(True for _ in types)
    )


def plannable_az_ids(region: str, az_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split AZ ids offered in ``region`` into those the mesh can give a subnet and those it cannot.

    A subnet's /20 comes from the AZ id's zone number (1..MAX_AZ_NUMBER) inside the region's /16, and
    the spec refuses AZ ids of another region; so ``regions sync`` must never write such ids, whatever
    EC2 (or a proxy) answers. Returns ``(kept, rejected)``, both sorted and without duplicates.
    """
    prefix = REGIONS[region].az_ids[0].rpartition("-az")[0] + "-az"
    kept: list[str] = []
    rejected: list[str] = []
    for az_id in sorted(set(az_ids)):
        number = az_id.removeprefix(prefix)
        ok = az_id.startswith(prefix) and number.isdigit() and 1 <= int(number) <= MAX_AZ_NUMBER
        (kept if ok else rejected).append(az_id)
    return kept, rejected
