"""The AWS commercial regions this mesh knows, with the availability zones it uses by default.

AZs are named by **AZ id** (``use1-az4``), not AZ name (``us-east-1a``): AZ names are shuffled per
account, AZ ids are the same physical zone everywhere, so subnets keyed by AZ id mean the same thing in
every account. The number of AZs decides how many subnets a region gets, so it must be known before the
program runs: it comes from here, or from ``lmrun:availabilityZones`` (written by ``lmrun regions sync``
from ``describe_availability_zones``), never from a lookup during ``pulumi up``.

Default AZ ids are the zones open to new accounts as of the snapshot below (some old zones, such as
``use1-az3`` or ``apne1-az3``, are closed to new accounts and are left out on purpose).
Snapshot: 2026-11, from the AWS "Regions and Availability Zones" documentation and
``aws ec2 describe-availability-zones --all-availability-zones``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegionInfo:
    """What the mesh needs to know about one AWS region before any API call."""

    name: str
    location: str
    az_ids: tuple[str, ...]
    opt_in: bool
    """True for regions an account must opt into before use (launched after March 2019)."""


def _region(name: str, location: str, prefix: str, az_numbers: tuple[int, ...], *, opt_in: bool) -> RegionInfo:
    return RegionInfo(name, location, tuple(f"{prefix}-az{n}" for n in az_numbers), opt_in)


REGIONS: dict[str, RegionInfo] = {
    r.name: r
    for r in (
        _region("us-east-1", "N. Virginia", "use1", (1, 2, 4, 5, 6), opt_in=False),
        _region("us-east-2", "Ohio", "use2", (1, 2, 3), opt_in=False),
        _region("us-west-1", "N. California", "usw1", (1, 3), opt_in=False),
        _region("us-west-2", "Oregon", "usw2", (1, 2, 3, 4), opt_in=False),
        _region("ca-central-1", "Canada Central", "cac1", (1, 2, 4), opt_in=False),
        _region("ca-west-1", "Calgary", "caw1", (1, 2, 3), opt_in=True),
        _region("mx-central-1", "Mexico", "mxc1", (1, 2, 3), opt_in=True),
        _region("sa-east-1", "Sao Paulo", "sae1", (1, 2, 3), opt_in=False),
        _region("eu-west-1", "Ireland", "euw1", (1, 2, 3), opt_in=False),
        _region("eu-west-2", "London", "euw2", (1, 2, 3), opt_in=False),
        _region("eu-west-3", "Paris", "euw3", (1, 2, 3), opt_in=False),
        _region("eu-central-1", "Frankfurt", "euc1", (1, 2, 3), opt_in=False),
        _region("eu-central-2", "Zurich", "euc2", (1, 2, 3), opt_in=True),
        _region("eu-south-1", "Milan", "eus1", (1, 2, 3), opt_in=True),
        _region("eu-south-2", "Spain", "eus2", (1, 2, 3), opt_in=True),
        _region("eu-north-1", "Stockholm", "eun1", (1, 2, 3), opt_in=False),
        _region("il-central-1", "Tel Aviv", "ilc1", (1, 2, 3), opt_in=True),
        _region("me-south-1", "Bahrain", "mes1", (1, 2, 3), opt_in=True),
        _region("me-central-1", "UAE", "mec1", (1, 2, 3), opt_in=True),
        _region("af-south-1", "Cape Town", "afs1", (1, 2, 3), opt_in=True),
        _region("ap-south-1", "Mumbai", "aps1", (1, 2, 3), opt_in=False),
        _region("ap-south-2", "Hyderabad", "aps2", (1, 2, 3), opt_in=True),
        _region("ap-southeast-1", "Singapore", "apse1", (1, 2, 3), opt_in=False),
        _region("ap-southeast-2", "Sydney", "apse2", (1, 2, 3), opt_in=False),
        _region("ap-southeast-3", "Jakarta", "apse3", (1, 2, 3), opt_in=True),
        _region("ap-southeast-4", "Melbourne", "apse4", (1, 2, 3), opt_in=True),
        _region("ap-southeast-5", "Malaysia", "apse5", (1, 2, 3), opt_in=True),
        _region("ap-southeast-6", "New Zealand", "apse6", (1, 2, 3), opt_in=True),
        _region("ap-southeast-7", "Thailand", "apse7", (1, 2, 3), opt_in=True),
        _region("ap-northeast-1", "Tokyo", "apne1", (1, 2, 4), opt_in=False),
        _region("ap-northeast-2", "Seoul", "apne2", (1, 2, 3, 4), opt_in=False),
        _region("ap-northeast-3", "Osaka", "apne3", (1, 2, 3), opt_in=False),
        _region("ap-east-1", "Hong Kong", "ape1", (1, 2, 3), opt_in=True),
        _region("ap-east-2", "Taipei", "ape2", (1, 2, 3), opt_in=True),
    )
}


def az_number(az_id: str) -> int:
    """The zone number of an AZ id: ``use1-az4`` -> 4. Raises ValueError for anything else."""
    prefix, sep, number = az_id.rpartition("-az")
    if not prefix or not sep or not number.isdigit():
        raise ValueError(f"{az_id!r} is not an availability-zone id like 'use1-az1'")
    return int(number)


def az_prefix(region: str) -> str:
    """The AZ-id prefix of a known region: ``us-east-1`` -> ``use1``."""
    return REGIONS[region].az_ids[0].rpartition("-az")[0]
