"""Entries of a config list (or one config object) as the cross-field checks see them: usable even when some of
their fields are broken, so one run reports a node's unpinned revision *and* its node-port clash.

A broken field (a value the spec refuses, or a required one that is missing) is reported by the whole-spec
validation; here it is replaced by its default, or by the model's stand-in when it has none, and listed in
:attr:`Entry.broken`. A check reads a field only when the entry is :meth:`Entry.sound` for it, so a stand-in
never shows in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from lmrun.spec.model_base import SpecModel

M = TypeVar("M", bound=SpecModel)


@dataclass(frozen=True)
class Entry(Generic[M]):
    """One entry: its index in the list, its spec (stand-ins in place of broken fields), what is broken."""

    index: int
    spec: M
    broken: frozenset[str]
    """Python names of the fields whose given value the spec refuses (or that are required and missing)."""

    def sound(self, *fields: str) -> bool:
        """Whether every one of ``fields`` holds the value the user gave."""
        return self.broken.isdisjoint(fields)


def entry(index: int, item: Any, model: type[M]) -> Entry[M] | None:
    """``item`` validated as ``model``, broken fields replaced; None when it is no mapping at all."""
    try:
        return Entry(index, model.model_validate(item, by_name=False), frozenset())
    except ValidationError as exc:
        errors = exc.errors()
    if not isinstance(item, Mapping):
        return None
    by_alias = {field.alias or name: name for name, field in model.model_fields.items()}
    broken = {by_alias[error["loc"][0]] for error in errors if error["loc"] and error["loc"][0] in by_alias}
    kept = {key: value for key, value in item.items() if key in by_alias and by_alias[key] not in broken}
    for name in broken:
        field = model.model_fields[name]
        if field.is_required():
            kept[field.alias or name] = model.STAND_INS[name]
    try:
        spec = model.model_validate(kept, by_name=False)
    except ValidationError:  # a stand-in the model no longer accepts: the entry stays out of the checks
        return None
    return Entry(index, spec, frozenset(broken))


def entries(raw: Any, model: type[M]) -> list[Entry[M]]:
    """Every mapping of the raw list ``raw`` as an :class:`Entry` (nothing when ``raw`` is no list)."""
    if not isinstance(raw, list):
        return []
    found = (entry(index, item, model) for index, item in enumerate(raw))
    return [item for item in found if item is not None]


def whole_entries(raw: Any, model: type[M]) -> list[tuple[int, M]]:
    """Entries of the raw list ``raw`` that validate on their own, with their index: for checks that need every
    field of an entry (the others are reported by the whole-spec validation)."""
    valid: list[tuple[int, M]] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            valid.append((index, model.model_validate(item, by_name=False)))
        except ValidationError:
            continue
    return valid
