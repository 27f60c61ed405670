"""Stack config -> :class:`MeshSpec`: decode Pulumi's string values, validate, report every problem.

Every message is in the project's words: pydantic's error types are translated here (a test feeds every
kind of wrong value and finds none of pydantic's phrases), an unknown key at any depth gets a did-you-mean
among its object's keys, and a value repeated in a message is cut to a few dozen characters.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lmrun.spec.errors import MAX_ECHO, NAMESPACE, ConfigError, ConfigIssue, config_path, echo, is_under
from lmrun.spec.model import MeshSpec, cross_field_issues
from lmrun.spec.model_base import SpecModel
from lmrun.spec.namespaces import namespace_issues

PREFIX = f"{NAMESPACE}:"


def decode_value(value: Any) -> Any:
    """Pulumi hands config to programs as strings; lists and objects arrive JSON-encoded."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value


def namespaced(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lmrun:`` keys of a flat Pulumi config map, without the prefix, values decoded."""
    return {
        key[len(PREFIX) :]: decode_value(value)
        for key, value in config.items()
        if isinstance(key, str) and key.startswith(PREFIX)
    }


def known_keys() -> list[str]:
    """Config keys the spec accepts, camelCase, as written after ``lmrun:``."""
    return model_keys(MeshSpec)


def model_keys(model: type[SpecModel]) -> list[str]:
    """The keys an object of ``model`` accepts, as written in a stack file."""
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _models_in(annotation: Any) -> Iterable[type[SpecModel]]:
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def model_at(loc: Iterable[str | int]) -> type[SpecModel] | None:
    """The spec model of the object at config location ``loc`` (list indexes and mapping keys skipped):
    ``("nodes", 0)`` -> :class:`NodeSpec`; None when nothing there is an object of the spec."""
    model: type[SpecModel] | None = MeshSpec
    for part in loc:
        if model is None:
            return None
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        if isinstance(part, str) and part in fields:
            model = next(iter(_models_in(fields[part].annotation)), None)
    return model


# What each pydantic error type means, in the stack file's words (lists, mappings, whole numbers).
_TYPE_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "model_type": "should be a mapping (key: value)",
    "model_attributes_type": "should be a mapping (key: value)",
    "dict_type": "should be a mapping (key: value)",
    "tuple_type": "should be a list",
    "list_type": "should be a list",
    "set_type": "should be a list",
    "iterable_type": "should be a list",
    "string_type": "should be a string",
    "string_unicode": "should be a string",
    "int_type": "should be a whole number",
    "int_parsing": "should be a whole number",
    "int_from_float": "should be a whole number",
    "int_parsing_size": "should be a whole number of a sensible size",
    "float_type": "should be a number",
    "float_parsing": "should be a number",
    "finite_number": "should be a finite number",
    "bool_type": "should be true or false",
    "bool_parsing": "should be true or false",
    "ip_v4_network": "should be an IPv4 network like '10.1.0.0/16' (its first address, then the prefix length)",
    "ip_v4_address": "should be an IPv4 address like '10.1.0.10'",
    "ip_v4_interface": "should be an IPv4 address with a prefix length, like '10.1.0.10/16'",
}
_BOUND_MESSAGES: dict[str, str] = {
    "greater_than_equal": "should be at least {ge}",
    "greater_than": "should be more than {gt}",
    "less_than_equal": "should be at most {le}",
    "less_than": "should be less than {lt}",
    "string_too_short": "should have at least {min_length} character(s)",
    "string_too_long": "should have at most {max_length} characters",
    "too_long": "should have at most {max_length} entries",
}


def _message(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "value_error":  # one of the spec's own validators: its message, with a long value cut
        message = str(ctx.get("error", error["msg"]))
        value = error.get("input")
        if isinstance(value, str) and len(repr(value)) > MAX_ECHO:
            message = message.replace(repr(value), echo(value)).replace(value, echo(value)[1:-1])
        return message
    if kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
    elif kind in _BOUND_MESSAGES:
        message = _BOUND_MESSAGES[kind].format_map(
            {key: ctx.get(key, "?") for key in ("ge", "gt", "le", "lt", "min_length", "max_length")}
        )
    elif kind == "too_short":
        minimum = int(ctx.get("min_length", 1))
        return f"needs at least {minimum} entr{'y' if minimum == 1 else 'ies'}"
    elif kind == "string_pattern_mismatch":
        message = "does not have the form this setting takes (see docs/config-reference.md)"
    elif kind == "literal_error":
        message = f"should be one of {ctx.get('expected', 'the listed values')}"
    else:  # a type pydantic may add one day: still the project's words, never the library's
        message = "is not a value this setting takes"
    value = error.get("input")
    if kind != "missing" and value is not None and not isinstance(value, (dict, list)):
        message += f" (got {echo(value)})"
    return message


def _unknown_key(loc: tuple[str | int, ...], missing: Collection[tuple[str | int, ...]]) -> ConfigIssue:
    """An unknown key, with the closest key of its object (and, when that one is missing, saying so)."""
    key, parent = str(loc[-1]), loc[:-1]
    model = model_at(parent)
    keys = model_keys(model) if model is not None else []
    hint = difflib.get_close_matches(key, keys, n=1)
    suggestion = ""
    if hint:
        suggestion = f"did you mean {config_path((hint[0],)) if not parent else hint[0]}? "
        if (*parent, hint[0]) in missing:
            suggestion += f"({config_path((*parent, hint[0]))} is required) "
    return ConfigIssue(config_path(loc), f"unknown key; {suggestion}known keys: {', '.join(keys)}")


def _relevant(errors: list[Any]) -> list[Any]:
    """Drop "too short" for a list whose entries failed: it only counts the entries that were valid."""
    item_locs = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    return [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in item_locs)]


def shape_issues(errors: list[Any]) -> list[ConfigIssue]:
    """pydantic's errors as issues: one line per problem (a misspelt required key is one line, not two)."""
    errors = _relevant(errors)
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    unknown = [tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    issues = [_unknown_key(loc, missing) for loc in unknown]
    explained = {
        (*loc[:-1], hint)
        for loc in unknown
        for model in [model_at(loc[:-1])]
        if model is not None
        for hint in difflib.get_close_matches(str(loc[-1]), model_keys(model), n=1)
    }
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" or (error["type"] == "missing" and loc in explained):
            continue
        issues.append(ConfigIssue(config_path(loc), _message(error)))
    return issues


# Keys whose values must reach the program as Pulumi secrets (encrypted in the stack file).
SECRET_KEYS = ("huggingFaceToken",)


def _plaintext_secret_issues(raw: Mapping[str, Any], secret_keys: Collection[str]) -> list[ConfigIssue]:
    return [
        ConfigIssue(
            config_path((key,)),
            f"must be stored encrypted: pulumi config set --secret {key} <value> (it is in plain text now)",
        )
        for key in SECRET_KEYS
        if raw.get(key) and key not in secret_keys
    ]


@dataclass(frozen=True)
class SpecCheck:
    """The spec of a raw config and its problems: ``shape`` (a value of the wrong type, range or form:
    pydantic's) and ``conflicts`` (between fields and entries; none at a path ``shape`` already reports)."""

    spec: MeshSpec | None
    """None when some value has the wrong shape."""
    shape: tuple[ConfigIssue, ...]
    conflicts: tuple[ConfigIssue, ...]

    @property
    def issues(self) -> tuple[ConfigIssue, ...]:
        return (*self.shape, *self.conflicts)


def check_spec(raw: Mapping[str, Any], *, secret_keys: Collection[str] | None = None) -> SpecCheck:
    """Validate the decoded ``lmrun:`` config (keys without prefix) and report, never raise.

    Only the camelCase keys are accepted (``by_name=False``): ``lmrun:main_region`` is a typo to report,
    not a second spelling that would slip past the cross-field rules, which read camelCase keys.
    ``secret_keys`` (keys without prefix that Pulumi delivered as secrets), when given, must include every
    key of :data:`SECRET_KEYS` that has a value.
    """
    conflicts = cross_field_issues(raw)
    if secret_keys is not None:
        conflicts.extend(_plaintext_secret_issues(raw, secret_keys))
    try:
        spec: MeshSpec | None = MeshSpec.model_validate(dict(raw), by_name=False)
        shape: list[ConfigIssue] = []
    except ValidationError as exc:
        spec, shape = None, shape_issues(exc.errors())
    reported = {issue.path for issue in shape}
    kept = [issue for issue in conflicts if not is_under(issue.path, reported)]
    return SpecCheck(spec, tuple(shape), tuple(kept))


def parse_spec(raw: Mapping[str, Any], *, secret_keys: Collection[str] | None = None) -> MeshSpec:
    """Validate the decoded ``lmrun:`` config (keys without prefix); raise ConfigError with every issue."""
    checked = check_spec(raw, secret_keys=secret_keys)
    if checked.issues or checked.spec is None:
        raise ConfigError(checked.issues)
    return checked.spec


def unprefixed_secret_keys(secret_keys: Collection[str] | None) -> set[str] | None:
    """The ``lmrun:`` keys among full secret keys, without the prefix (None stays None: unknown)."""
    if secret_keys is None:
        return None
    return {key[len(PREFIX) :] for key in secret_keys if key.startswith(PREFIX)}


def config_namespace_issues(config: Mapping[str, Any]) -> list[ConfigIssue]:
    """Keys of the flat config map that no part of the stack reads (:mod:`lmrun.spec.namespaces`)."""
    return namespace_issues((str(key) for key in config), known_keys())


def spec_from_config(config: Mapping[str, Any], secret_keys: Collection[str] | None = None) -> MeshSpec:
    """Spec from a flat Pulumi config map (``{"lmrun:mainRegion": "us-east-1", ...}``) and, when known,
    the full keys Pulumi marked secret. Keys outside the namespaces the stack reads are refused too."""
    checked = check_spec(namespaced(config), secret_keys=unprefixed_secret_keys(secret_keys))
    issues = [*config_namespace_issues(config), *checked.issues]
    if issues or checked.spec is None:
        raise ConfigError(issues)
    return checked.spec


def current_pulumi_config() -> dict[str, Any]:
    """The flat config map the running Pulumi program received (works under the engine and under mocks)."""
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    return merged


def current_secret_keys() -> set[str]:
    """Full config keys the running program received as secrets."""
    from pulumi.runtime import config as runtime_config

    return {key for key in current_pulumi_config() if runtime_config.is_config_secret(key)} | set(
        runtime_config.get_config_secret_keys_env()
    )
