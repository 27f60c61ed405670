"""Stack config -> :class:`MeshSpec`: decode Pulumi's string values, validate, report every problem."""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
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


# pydantic's type errors say "tuple" and "dictionary"; stack files say lists and mappings.
_TYPE_MESSAGES = {
    "tuple_type": "should be a list",
    "list_type": "should be a list",
    "dict_type": "should be a mapping (key: value)",
    "string_type": "should be a string",
}
_MAX_ECHO = 60


def _echo(value: Any) -> str:
    """The offending input for a message, shortened so one issue stays one readable line."""
    text = repr(value)
    return text if len(text) <= _MAX_ECHO else f"{text[: _MAX_ECHO - 5]}...{text[-1]}"


def _issue_from_pydantic(error: Mapping[str, Any]) -> ConfigIssue:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        key = str(loc[0])
        hint = difflib.get_close_matches(key, known_keys(), n=1)
        suggestion = f"did you mean lmrun:{hint[0]}? " if hint else ""
        return ConfigIssue(config_path(loc), f"unknown key; {suggestion}known keys: {', '.join(known_keys())}")
    if error["type"] == "missing":
        return ConfigIssue(config_path(loc), "is required")
    if error["type"] == "too_short":
        minimum = (error.get("ctx") or {}).get("min_length", 1)
        return ConfigIssue(config_path(loc), f"needs at least {minimum} entr{'y' if minimum == 1 else 'ies'}")
    message = _TYPE_MESSAGES.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error and not isinstance(error["input"], (dict, list)):
        message += f" (got {_echo(error['input'])})"
    return ConfigIssue(config_path(loc), message)


def _relevant(errors: list[Any]) -> list[Any]:
    """Drop "too short" for a list whose entries failed: it only counts the entries that were valid."""
    item_locs = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    return [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in item_locs)]


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


def parse_spec(raw: Mapping[str, Any], *, secret_keys: Collection[str] | None = None) -> MeshSpec:
    """Validate the decoded ``lmrun:`` config (keys without prefix); raise ConfigError with every issue.

    Only the camelCase keys are accepted (``by_name=False``): ``lmrun:main_region`` is a typo to report,
    not a second spelling that would slip past the cross-field rules, which read camelCase keys.
    ``secret_keys`` (keys without prefix that Pulumi delivered as secrets), when given, must include every
    key of :data:`SECRET_KEYS` that has a value.
    """
    issues = cross_field_issues(raw)
    if secret_keys is not None:
        issues.extend(_plaintext_secret_issues(raw, secret_keys))
    try:
        spec = MeshSpec.model_validate(dict(raw), by_name=False)
    except ValidationError as exc:
        issues.extend(_issue_from_pydantic(error) for error in _relevant(exc.errors()))
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    return spec


def spec_from_config(config: Mapping[str, Any], secret_keys: Collection[str] | None = None) -> MeshSpec:
    """Spec from a flat Pulumi config map (``{"lmrun:mainRegion": "us-east-1", ...}``) and, when known,
    the full keys Pulumi marked secret."""
    unprefixed = None if secret_keys is None else {k[len(PREFIX) :] for k in secret_keys if k.startswith(PREFIX)}
    return parse_spec(namespaced(config), secret_keys=unprefixed)


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
