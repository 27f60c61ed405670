"""The AWS regions' part of the address plan: one fixed /16 per region inside ``REGION_POOL`` (the mesh's
other pools are in :mod:`lmrun.domain.addresses`).

The region table is append-only: a region's /16 never moves, so adding a region (to this table or to a
stack) never changes another region's CIDR. Inside a region's /16, AZ number *n* of the AZ id
(``use1-az4`` -> 4) owns ``10.R.(16*n).0/20``; ``10.R.0.0/20`` is kept for infrastructure subnets: the
private subnet of AZ *n* (where SkyPilot's VMs run, :func:`private_subnet_cidr`) is ``10.R.n.0/24`` in it.
Subnets are therefore keyed by AZ id, never by list position, and a private subnet never overlaps a public one.
"""

from __future__ import annotations

import ipaddress

from lmrun.aws.region.catalog import az_number

# Second octet of each region's 10.X.0.0/16. Append new regions at the end; never renumber.
_REGION_OCTETS: dict[str, int] = {
    "us-east-1": 64,
    "us-east-2": 65,
    "us-west-1": 66,
    "us-west-2": 67,
    "ca-central-1": 68,
    "ca-west-1": 69,
    "mx-central-1": 70,
    "sa-east-1": 71,
    "eu-west-1": 72,
    "eu-west-2": 73,
    "eu-west-3": 74,
    "eu-central-1": 75,
    "eu-central-2": 76,
    "eu-south-1": 77,
    "eu-south-2": 78,
    "eu-north-1": 79,
    "il-central-1": 80,
    "me-south-1": 81,
    "me-central-1": 82,
    "af-south-1": 83,
    "ap-south-1": 84,
    "ap-south-2": 85,
    "ap-southeast-1": 86,
    "ap-southeast-2": 87,
    "ap-southeast-3": 88,
    "ap-southeast-4": 89,
    "ap-southeast-5": 90,
    "ap-southeast-6": 91,
    "ap-southeast-7": 92,
    "ap-northeast-1": 93,
    "ap-northeast-2": 94,
    "ap-northeast-3": 95,
    "ap-east-1": 96,
    "ap-east-2": 97,
}

REGION_CIDRS: dict[str, ipaddress.IPv4Network] = {
    region: ipaddress.IPv4Network(f"10.{octet}.0.0/16") for region, octet in _REGION_OCTETS.items()
}

AZ_SUBNET_PREFIX = 20
MAX_AZ_NUMBER = 15  # 16 /20s fit in a /16 and slot 0 is reserved
PRIVATE_SUBNET_PREFIX = 24
"""Private subnets: one /24 per AZ number inside the reserved slot 0 (16 /24s fit in a /20), 251 usable
addresses each (AWS keeps 5 per subnet: Amazon VPC User Guide, "Subnet CIDR blocks")."""


def region_cidr(region: str) -> ipaddress.IPv4Network:
    """The fixed /16 of a region; KeyError for a region outside the table."""
    return REGION_CIDRS[region]


def az_subnet_cidr(region: str, az_id: str) -> ipaddress.IPv4Network:
    """The /20 of one AZ inside its region's /16, from the AZ id's zone number."""
    number = az_number(az_id)
    if not 1 <= number <= MAX_AZ_NUMBER:
        raise ValueError(f"AZ id {az_id!r}: zone number must be 1..{MAX_AZ_NUMBER} to get a subnet")
    subnets = list(region_cidr(region).subnets(new_prefix=AZ_SUBNET_PREFIX))
    return subnets[number]


def private_subnet_cidr(region: str, az_id: str) -> ipaddress.IPv4Network:
    """The private /24 of one AZ: ``10.R.n.0/24`` inside the region's reserved ``10.R.0.0/20``, so it never
    overlaps (or moves) an AZ's public /20."""
    number = az_number(az_id)
    if not 1 <= number <= MAX_AZ_NUMBER:
        raise ValueError(f"AZ id {az_id!r}: zone number must be 1..{MAX_AZ_NUMBER} to get a subnet")
    reserved = next(region_cidr(region).subnets(new_prefix=AZ_SUBNET_PREFIX))
    return list(reserved.subnets(new_prefix=PRIVATE_SUBNET_PREFIX))[number]
