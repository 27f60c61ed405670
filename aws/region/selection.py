"""Which regions may carry a spoke: the rogue list, and the pure part of ``lmrun regions sync``.

The live part (boto3 calls) is in :mod:`lmrun.aws.region.offerings`; this module decides from plain data
so it can be tested without any AWS API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
