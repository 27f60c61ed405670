"""The config reference (``docs/config-reference.md``), generated from the pydantic spec.

``python -m lmrun config-reference > docs/config-reference.md`` writes it; ``tests/test_config_reference.py``
fails when the file and the spec drift apart. Every field of :class:`lmrun.spec.model.MeshSpec` is a row, and
so is every field of every spec model nested in it (lists, maps and optional values of models included), at
any depth, so a model added to the spec shows up here without touching this module.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from lmrun.spec.model import MeshSpec
from lmrun.spec.namespaces import NAMESPACES
from lmrun.spec.stackfile import STACK_FILE_KEYS

NAMESPACE = "lmrun"
COMMAND = "python -m lmrun config-reference > docs/config-reference.md"

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    SecretStr: "secret string",
    IPv4Network: "IPv4 CIDR",
    IPv6Network: "IPv6 CIDR",
    IPv4Address: "IPv4 address",
    type(None): "null",
}


def _strip(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` (metadata dropped)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(annotation: Any) -> str:
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(arg) for arg in args]
        return " or ".join(dict.fromkeys(names))
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin in (tuple, list, set, frozenset):
        item = args[0] if args else Any
        return f"list of {_type_name(item)}s" if not _is_model(_strip(item)) else "list of objects"
    if origin is dict:
        key, value = args if len(args) == 2 else (Any, Any)
        return f"map of {_type_name(key)} to {_type_name(value)}"
    if _is_model(annotation):
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: FieldInfo) -> list[str]:
    found: list[str] = []
    low = high = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"≥ {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            low = f"> {item.gt}"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {item.lt}"
        elif isinstance(item, annotated_types.MinLen):
            found.append(f"at least {item.min_length} item(s)")
        elif isinstance(item, annotated_types.MaxLen):
            found.append(f"at most {item.max_length}")
        elif getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
    found[:0] = [bound for bound in (low, high) if bound]
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, SecretStr):
        return "[secret]"
    if isinstance(value, IPv4Network | IPv6Network | IPv4Address):
        return str(value)
    return value


def _default(field: FieldInfo, annotation: Any) -> str:
    if field.is_required():
        return "(required)"
    try:
        value = field.get_default(call_default_factory=True, validated_data={})
    except (TypeError, KeyError, ValueError):  # a factory that needs other fields' values
        return "(computed)"
    if value is None:
        return "(none)"
    if isinstance(value, BaseModel) or _is_model(_strip(annotation)):
        return "(see its keys)"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(_plain(value), ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _nested(annotation: Any, path: str) -> Iterator[tuple[type[BaseModel], str]]:
    """The spec models inside a field's type, each with the key prefix of its fields."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_model(annotation):
        yield annotation, f"{path}."
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg, path)
    elif origin in (tuple, list, set, frozenset) and args:
        yield from _nested(args[0], f"{path}[]")
    elif origin is dict and len(args) == 2:
        yield from _nested(args[1], f"{path}.<{_type_name(args[0]).split()[0]}>")


def _rows(model: type[BaseModel], prefix: str, seen: tuple[type[BaseModel], ...] = ()) -> Iterator[list[str]]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        annotation = field.annotation
        kind = _type_name(annotation)
        constraints = _constraints(field)
        if constraints:
            kind += " (" + ", ".join(constraints) + ")"
        description = field.description or ""
        yield [f"`{path}`", _cell(kind), _cell(_default(field, annotation)), _cell(description)]
        for nested, nested_prefix in _nested(annotation, path):
            if nested not in seen:  # a recursive model would never end
                yield from _rows(nested, nested_prefix, (*seen, nested))


def config_reference(model: type[BaseModel] = MeshSpec) -> str:
    """The Markdown reference of every ``lmrun:`` key of ``model`` and of the models nested in it."""
    lines = [
        "# Configuration reference",
        "",
        f"Every key a stack may set under the `{NAMESPACE}:` namespace, generated from the pydantic spec "
        f"(`{model.__module__}.{model.__name__}` and the models nested in it) by `{COMMAND}`; "
        "do not edit it by hand: `tests/test_config_reference.py` fails when it drifts from the spec.",
        "",
        "Keys are camelCase in stack files. `a[].b` is key `b` of each item of list `a`; `a.<string>.b` is key "
        "`b` of each value of map `a`. Unknown keys are refused at any depth, with a did-you-mean.",
        "",
        "The whole stack file is checked as Pulumi reads it (YAML 1.2: `on`, `yes` and dates stay strings), and "
        "more: a config key without a namespace is refused (Pulumi refuses it too); a namespace other than "
        + ", ".join(f"`{namespace}`" for namespace in NAMESPACES)
        + " (this project's, the engine's and those of the providers the mesh uses) is refused with a "
        "did-you-mean, since a typo would silently be config nobody reads; a config key outside `config:` and a "
        "top-level key other than " + ", ".join(f"`{key}`" for key in STACK_FILE_KEYS) + " are refused; a "
        "number is never `true`/`false`, a mapping key is always a string. Every problem of the stack file, the "
        "spec and the plan is reported in one run, one line each (long values cut), sorted by config path.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(model, f"{NAMESPACE}:", (model,))]
    return "\n".join(lines) + "\n"
