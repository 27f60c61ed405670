"""Stack config -> :class:`MeshSpec`: decode Pulumi's string values, validate, report every problem."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lmrun.spec.errors import NAMESPACE, ConfigError, ConfigIssue, config_path
from lmrun.spec.model import MeshSpec, cross_field_issues

PREFIX = f"{NAMESPACE}:"


def decode_value(value: Any) -> Any:
    """Pulumi hands config to programs as strings; lists and objects arrive JSON-encoded."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def namespaced(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lmrun:`` keys of a flat Pulumi config map, without the prefix, values decoded."""
    return {key[len(PREFIX) :]: decode_value(value) for key, value in config.items() if key.startswith(PREFIX)}


def known_keys() -> list[str]:
    """Config keys the spec accepts, camelCase, as written after ``lmrun:``."""
    return sorted(field.alias or name for name, field in MeshSpec.model_fields.items())


def _issue_from_pydantic(error: Mapping[str, Any]) -> ConfigIssue:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        key = str(loc[0])
        hint = difflib.get_close_matches(key, known_keys(), n=1)
        suggestion = f"did you mean lmrun:{hint[0]}? " if hint else ""
        return ConfigIssue(config_path(loc), f"unknown key; {suggestion}known keys: {', '.join(known_keys())}")
    if error["type"] == "missing":
        return ConfigIssue(config_path(loc), "is required")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in ("value_error",) and "input" in error and not isinstance(error["input"], (dict, list)):
        message += f" (got {error['input']!r})"
    return ConfigIssue(config_path(loc), message)


def parse_spec(raw: Mapping[str, Any]) -> MeshSpec:
    """Validate the decoded ``lmrun:`` config (keys without prefix); raise ConfigError with every issue."""
    issues = cross_field_issues(raw)
    try:
        spec = MeshSpec.model_validate(dict(raw))
    except ValidationError as exc:
        issues.extend(_issue_from_pydantic(error) for error in exc.errors())
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    return spec


def spec_from_config(config: Mapping[str, Any]) -> MeshSpec:
    """Spec from a flat Pulumi config map (``{"lmrun:mainRegion": "us-east-1", ...}``)."""
    return parse_spec(namespaced(config))


def current_pulumi_config() -> dict[str, Any]:
    """The flat config map the running Pulumi program received (works under the engine and under mocks)."""
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    return merged
