"""The base of every spec model: camelCase aliases, unknown keys refused, immutable."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel


def _takes_a_number(annotation: Any) -> bool:
    if annotation is int or annotation is float:
        return True
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and any(_takes_a_number(a) for a in typing.get_args(annotation))


class SpecModel(BaseModel):
    """Base for spec models: camelCase aliases, unknown keys refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=False,
    )

    STAND_INS: ClassVar[Mapping[str, Any]] = {}
    """A valid value for each required field, put in place of a broken one so the cross-field checks can still
    look at the entry's other fields (:mod:`lmrun.spec.partial`); never shown to anyone."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic's lax mode reads ``true`` as 1: ``appPort: true`` is a mistake, not port 1."""
        if (
            isinstance(value, bool)
            and info.field_name
            and _takes_a_number(cls.model_fields[info.field_name].annotation)
        ):
            raise ValueError(f"should be a number, not {str(value).lower()}")
        return value
