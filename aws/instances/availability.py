"""Which instance types a region offers: the account's own record where it has one, the built-in catalog elsewhere.

``lmrun regions sync`` asks EC2 (``DescribeInstanceTypeOfferings``) and writes the answer into the stack
(``lmrun:offerings``): the instance types it asked about and, per region, those offered there. A record covers a
(type, region) pair when the region was recorded and the type was asked about; it then decides, whatever the
catalog says (the catalog is a snapshot of another account's view, and misses regions). Every other pair falls
back to the catalog. The program reads the record from config, so a preview never depends on the day it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from lmrun.aws.instances import catalog

Source = Literal["recorded", "catalog"]
SOURCE_LABELS: dict[Source, str] = {
    "recorded": "the offerings recorded in lmrun:offerings (lmrun regions sync)",
    "catalog": "the instance catalog",
}
"""How messages and the plan name each source."""


@dataclass(frozen=True)
class Availability:
    """Offerings as recorded for one account (empty: the catalog decides everything)."""

    asked: frozenset[str] = frozenset()
    """Instance types the recording asked about."""
    recorded: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Recorded region -> the asked types it offers."""

    def source(self, instance_type: str, region: str) -> Source:
        """Who decides whether ``region`` offers ``instance_type``."""
        return "recorded" if region in self.recorded and instance_type in self.asked else "catalog"

    def offers(self, instance_type: str, region: str) -> bool:
        if self.source(instance_type, region) == "recorded":
            return instance_type in self.recorded[region]
        return catalog.offered_in(instance_type, region)

    def choose(self, gpu: str, count: int, region: str, *, spot: bool) -> catalog.InstanceType:
        """The cheapest catalog type with ``count`` x ``gpu`` that ``region`` offers (sold as spot when ``spot``);
        ValueError when there is none."""
        return catalog.choose_instance_type(gpu, count, region, spot=spot, offered=self.offers)

    def alternatives(self, chosen: catalog.InstanceType, region: str) -> tuple[catalog.InstanceType, ...]:
        """The other spot pools a spot node of ``chosen`` may use in ``region``
        (:func:`lmrun.aws.instances.catalog.alternative_instance_types`)."""
        return catalog.alternative_instance_types(chosen, region, offered=self.offers)

    def gpu_regions(self, gpu: str, regions: frozenset[str]) -> list[str]:
        """Those of ``regions`` that offer some type carrying ``gpu``, sorted (for did-you-mean hints)."""
        name = catalog.canonical_gpu(gpu)
        types = [t.name for t in catalog.INSTANCE_TYPES.values() if t.gpu == name]
        return sorted(r for r in regions if any(self.offers(t, r) for t in types))


CATALOG_ONLY = Availability()
"""No record: the catalog decides."""


def recorded_availability(asked: tuple[str, ...], regions: Mapping[str, tuple[str, ...]]) -> Availability:
    """An :class:`Availability` from the plain record (``lmrun:offerings``); offered types outside ``asked`` are
    ignored (the record's own consistency is the spec's to check)."""
    wanted = frozenset(asked)
    return Availability(wanted, {region: frozenset(types) & wanted for region, types in regions.items()})
