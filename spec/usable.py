"""The part of a config that is valid, so the plan's checks run on it while the spec reports the rest: one run
then shows a bad field, a duplicate node port *and* a missing image pin.

What a spec problem points at is taken out: a top-level value of the wrong type (it falls back to its
default), the entry of a list or mapping that holds a wrong value or a conflict (``lmrun:nodes[2]``,
``lmrun:images.us-east-2``). Then what referred to a removed part goes too (a node in a removed site or
region, a service on a removed node, a path from or to one), so the plan never reports a consequence of the
repair. The plan's issues are mapped back to the original list positions; an issue inside a removed part is
dropped (the spec reported that part already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lmrun.domain.names import SERVER_NODE
from lmrun.spec.errors import ConfigIssue, config_location, config_path
from lmrun.spec.model import MeshSpec

Location = tuple[str | int, ...]

_FIELDS = {field.alias or name: field for name, field in MeshSpec.model_fields.items()}
_LISTS = ("regions", "gpuInstanceTypes", "operatorCidrs", "nodes", "services", "sites", "paths", "elasticServices")


@dataclass(frozen=True)
class UsableConfig:
    """The valid part of a raw config, and how to read the plan's issues about it."""

    raw: dict[str, Any]
    positions: Mapping[str, tuple[int, ...]]
    """List field -> the original index of each entry kept."""
    removed: frozenset[Location]
    """Locations (original indexes) taken out."""

    def spec(self) -> MeshSpec | None:
        """The spec of the valid part (None in the unlikely case it still does not validate)."""
        try:
            return MeshSpec.model_validate(self.raw, by_name=False)
        except ValidationError:
            return None

    def original(self, issue: ConfigIssue) -> ConfigIssue | None:
        """``issue`` (about :attr:`raw`) at its place in the user's config; None when that place was removed."""
        location = config_location(issue.path)
        if location is None:
            return issue
        if len(location) > 1 and location[0] in self.positions and isinstance(location[1], int):
            kept = self.positions[str(location[0])]
            location = (location[0], kept[location[1]], *location[2:])
        if any(location[: len(removed)] == removed for removed in self.removed):
            return None
        return ConfigIssue(config_path(location), issue.message)


def _removal(location: Location, *, shape: bool) -> Location | None:
    """What to take out for a problem at ``location``: the entry it is in; the whole top-level value only for
    a value of the wrong shape (a conflict about a whole list, like too many spokes, keeps the list)."""
    if location[0] not in _FIELDS:
        return location[:1]  # an unknown key
    if len(location) >= 2:
        return location[:2]
    return location[:1] if shape else None


def _names(items: Iterable[Any], key: str) -> set[str]:
    return {item[key] for item in items if isinstance(item, dict) and isinstance(item.get(key), str)}


def usable_config(
    raw: Mapping[str, Any], shape: Iterable[ConfigIssue], conflicts: Iterable[ConfigIssue]
) -> UsableConfig | None:
    """``raw`` without what ``shape`` (wrong values) and ``conflicts`` point at, and without what referred to
    it; None when a required top-level value is unusable (nothing can be planned)."""
    removals: set[Location] = set()
    for issues, is_shape in ((shape, True), (conflicts, False)):
        for issue in issues:
            location = config_location(issue.path)
            removal = _removal(location, shape=is_shape) if location else None
            if removal is None:
                continue
            if len(removal) == 1 and removal[0] in _FIELDS and _FIELDS[str(removal[0])].is_required():
                return None
            removals.add(removal)

    kept: dict[str, Any] = {}
    positions: dict[str, tuple[int, ...]] = {}
    gone: dict[str, list[Any]] = {}
    for key, value in raw.items():
        if (key,) in removals:
            gone[key] = value if isinstance(value, list) else []
            continue
        if key in _LISTS and isinstance(value, list):
            indexes = tuple(index for index in range(len(value)) if (key, index) not in removals)
            kept[key], positions[key] = [value[index] for index in indexes], indexes
            gone[key] = [item for index, item in enumerate(value) if index not in indexes]
        elif isinstance(value, dict):
            kept[key] = {k: v for k, v in value.items() if (key, k) not in removals}
        else:
            kept[key] = value
    removed = set(removals)

    def drop(key: str, unwanted: Callable[[dict[str, Any]], bool]) -> None:
        """Take out the entries of list ``key`` for which ``unwanted(entry)`` holds (they refer to removed parts)."""
        items, indexes = kept.get(key, []), positions.get(key, ())
        keep = [i for i, item in enumerate(items) if isinstance(item, dict) and not unwanted(item)]
        removed.update((key, indexes[i]) for i in range(len(items)) if i not in keep)
        gone.setdefault(key, []).extend(items[i] for i in range(len(items)) if i not in keep)
        kept[key], positions[key] = [items[i] for i in keep], tuple(indexes[i] for i in keep)

    def gone_names(key: str, *fields: str) -> set[str]:
        """Names the removed entries of ``key`` held that no kept entry holds (a duplicate's name lives on)."""
        names = set().union(*(_names(gone.get(key, []), field) for field in fields))
        return names - set().union(*(_names(kept.get(key, []), field) for field in fields))

    gone_regions = {r for r in gone.get("regions", []) if isinstance(r, str)}
    gone_regions -= {r for r in kept.get("regions", []) if isinstance(r, str)}
    gone_sites = gone_names("sites", "name")
    if isinstance(kept.get("nodes"), list):
        drop("nodes", lambda n: n.get("region") in gone_regions or n.get("site") in gone_sites)
    gone_nodes = gone_names("nodes", "name")
    if isinstance(kept.get("services"), list):
        drop("services", lambda s: s.get("node") in gone_nodes and s.get("node") != SERVER_NODE)
    gone_services = gone_names("nodes", "service", "name") | gone_names("services", "name")
    if isinstance(kept.get("paths"), list):
        drop("paths", lambda p: p.get("from") in gone_regions | gone_sites or p.get("to") in gone_services)
    if isinstance(kept.get("elasticServices"), list):
        drop("elasticServices", lambda e: bool(set(e.get("regions") or ()) & gone_regions))
    zones = kept.get("availabilityZones")
    if isinstance(zones, dict):
        kept["availabilityZones"] = {region: ids for region, ids in zones.items() if region not in gone_regions}
    return UsableConfig(kept, positions, frozenset(removed))
