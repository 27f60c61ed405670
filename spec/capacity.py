"""Spec of what the account itself says about capacity, recorded in the stack by the operator commands:
``lmrun:offerings`` (``lmrun regions sync``: the GPU instance types each region offers) and ``lmrun:quotas``
(``lmrun quotas --write``: the EC2 vCPU quotas GPU nodes draw on).

Recorded, never looked up by the program: a preview says the same thing every day, and a re-recording is a diff
a reviewer sees. Where nothing is recorded the built-in catalog decides offerings, and a replica group's
capacity in a region is its ``maxPerRegion`` (or unbounded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from lmrun.aws.instances import catalog
from lmrun.aws.instances.availability import CATALOG_ONLY, Availability, recorded_availability
from lmrun.aws.instances.gpu_quotas import QUOTA_NAMES
from lmrun.aws.region.catalog import REGIONS
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model_base import SpecModel


def _catalog_type(value: str) -> str:
    if value not in catalog.INSTANCE_TYPES:
        raise ValueError(
            f"{value!r} is not a GPU instance type of lmrun's catalog (the record holds only types lmrun can place)"
        )
    return value


def _quota_code(value: str) -> str:
    if value not in QUOTA_NAMES:
        known = ", ".join(f"{code} ({name})" for code, name in QUOTA_NAMES.items())
        raise ValueError(f"{value!r} is not a quota lmrun records; known: {known}")
    return value


CatalogType = Annotated[str, AfterValidator(_catalog_type)]
QuotaCode = Annotated[str, AfterValidator(_quota_code)]
QuotaVcpus = Annotated[int, Field(ge=0)]


class OfferingsSpec(SpecModel):
    """The GPU instance types each region offers this account, as EC2 answered `lmrun regions sync`."""

    instance_types: tuple[CatalogType, ...] = Field(
        default=(),
        description="Instance types the sync asked about: for these, a recorded region's list decides (a type not "
        "listed there is not offered); any other type falls back to the built-in catalog.",
    )
    regions: dict[str, tuple[CatalogType, ...]] = Field(
        default_factory=dict,
        description="AWS region -> the asked instance types it offers (ec2:DescribeInstanceTypeOfferings). A region "
        "not recorded falls back to the built-in catalog.",
    )

    def availability(self) -> Availability:
        return recorded_availability(self.instance_types, self.regions) if self.regions else CATALOG_ONLY


RegionQuotas = dict[QuotaCode, QuotaVcpus]
"""Service Quotas code -> its value in vCPUs, for one region."""


def recorded_offerings(raw: Mapping[str, Any]) -> Availability:
    """The availability a raw config records (the catalog alone when ``lmrun:offerings`` is absent or broken: a
    broken record is reported by the whole-spec validation, and the checks that read this go on)."""
    try:
        return OfferingsSpec.model_validate(raw.get("offerings") or {}, by_name=False).availability()
    except ValidationError:
        return CATALOG_ONLY


def capacity_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Record keys that are not AWS regions this mesh knows; an offered type the record did not ask about."""
    issues: list[ConfigIssue] = []
    offerings = raw.get("offerings")
    if isinstance(offerings, dict) and isinstance(offerings.get("regions"), dict):
        asked = offerings.get("instanceTypes")
        asked_set = {t for t in asked if isinstance(t, str)} if isinstance(asked, list) else set()
        for region, types in offerings["regions"].items():
            if not isinstance(region, str):
                continue  # the whole-spec validation reports it
            where = ("offerings", "regions", region)
            if region not in REGIONS:
                issues.append(ConfigIssue(config_path(where), f"{region!r} is not an AWS region this mesh knows"))
            for index, name in enumerate(types if isinstance(types, list) else []):
                if isinstance(name, str) and name in catalog.INSTANCE_TYPES and name not in asked_set:
                    issues.append(
                        ConfigIssue(
                            config_path((*where, index)),
                            f"{name!r} is not in lmrun:offerings.instanceTypes (the types the record asked about)",
                        )
                    )
    return issues
