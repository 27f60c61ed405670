"""Read a Pulumi project and stack file into the flat config map the engine would hand the program.

Mirrors what ``pulumi up`` does: project-level defaults from ``Pulumi.yaml`` (un-namespaced keys belong to
the project's namespace), overlaid by the stack file's ``config:``; scalars become strings, lists and
objects JSON. Secure values cannot be decrypted offline: they become the placeholder ``[secret]`` and are
listed as secret keys.

The file is read as Pulumi reads it (Go's yaml.v3, YAML 1.2): ``on``/``yes``/``off`` and dates stay strings,
only ``true``/``false`` are booleans. What the flat map cannot carry is kept as :attr:`StackConfig.issues`,
every one with where it is: config keys outside ``config:``, an unknown top-level key, a ``config:`` that is
no mapping, a non-string key inside a value, a value YAML types that config cannot hold, values nested
deeper than any setting. Keys without a namespace stay in the map: the spec refuses them
(:mod:`lmrun.spec.namespaces`), as Pulumi does.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmrun.domain.errors import InputError
from lmrun.spec.errors import ConfigIssue, echo, key_path

SECRET_PLACEHOLDER = "[secret]"

STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
"""Top-level keys of a Pulumi stack file (``ProjectStack`` of pulumi/pulumi's
sdk/go/common/workspace/project.go)."""

MAX_DEPTH = 16
"""Nesting a config value may have (the deepest lmrun setting, ``lmrun:sites[0].images.gpu``, has 3)."""


class StackFileError(InputError):
    """The project or stack file is missing or unreadable."""


@dataclass(frozen=True)
class StackConfig:
    """A stack's name with its flat config map, as the program will see it."""

    project: str
    stack: str
    config: dict[str, str]
    secret_keys: tuple[str, ...]
    source: Path
    issues: tuple[ConfigIssue, ...] = ()
    """What the stack file holds that the config map cannot carry (reported with the spec's issues)."""


class _PulumiYamlLoader(yaml.SafeLoader):
    """YAML as Pulumi's yaml.v3 reads it: the YAML 1.2 core schema's booleans, numbers and nulls only."""


_PulumiYamlLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+.0123456789"),
    ("tag:yaml.org,2002:float", r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _PulumiYamlLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 reads ``017`` as 17 (YAML 1.1: octal 15)."""
    return int(str(loader.construct_scalar(node)), 10)


_PulumiYamlLoader.add_constructor("tag:yaml.org,2002:int", _decimal)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise StackFileError(f"{path}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackFileError(f"{path}: cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_PulumiYamlLoader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise StackFileError(f"{path}: not valid YAML: {message}") from None
    except RecursionError:
        raise StackFileError(
            f"{path}: nested too deeply to read (no lmrun setting nests more than a few levels)"
        ) from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    return data


def _key_text(key: Any) -> str:
    """A non-string key as yaml.v3 hands it to Pulumi's key parser (``1`` -> ``"1"``)."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _value_issues(
    full_key: str, value: Any, depth: int = 0, where: tuple[str | int, ...] = ()
) -> Iterator[ConfigIssue]:
    """What in a config value Pulumi cannot hand to the program as JSON (each with its path)."""
    if depth >= MAX_DEPTH:
        yield ConfigIssue(
            key_path(full_key, where), f"nested more than {MAX_DEPTH} levels deep; no lmrun setting nests that far"
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield ConfigIssue(
                    key_path(full_key, (*where, _key_text(key))),
                    f"the key {echo(key)} is a {_yaml_type(key)}, not a string; quote it",
                )
            else:
                yield from _value_issues(full_key, item, depth + 1, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _value_issues(full_key, item, depth + 1, (*where, index))
    elif value is not None and not isinstance(value, (str, int, float)):
        yield ConfigIssue(
            key_path(full_key, where),
            f"a YAML {_yaml_type(value)} is not a config value; write it as a string, number, list or mapping",
        )


def _yaml_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", type(None): "null", bytes: "binary", set: "set"}
    return names.get(type(value), type(value).__name__)


def _as_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, default=str)


def _config_key(key: str) -> str:
    """``ns:config:name`` is Pulumi's old spelling of ``ns:name`` (``ParseKey`` of pulumi/pulumi's
    sdk/go/common/resource/config/key.go accepts both)."""
    parts = key.split(":")
    return f"{parts[0]}:{parts[2]}" if len(parts) == 3 and parts[1] == "config" else key


def _file_issues(data: dict[str, Any]) -> list[ConfigIssue]:
    """Top-level keys of the stack file that are not a stack file's."""
    issues: list[ConfigIssue] = []
    has_config = "config" in data
    for key in data:
        text = _key_text(key)
        if text in STACK_FILE_KEYS:
            continue
        if ":" in text:
            where = "" if has_config else " (the file has no `config:`)"
            issues.append(
                ConfigIssue(text, f"is at the top level of the stack file{where}; config keys belong under `config:`")
            )
            continue
        hint = difflib.get_close_matches(text, STACK_FILE_KEYS, n=1)
        suggestion = f"did you mean {hint[0]}? " if hint else ""
        issues.append(
            ConfigIssue(text, f"unknown top-level key of a stack file; {suggestion}known: {', '.join(STACK_FILE_KEYS)}")
        )
    return issues


def project_file(project_dir: Path) -> dict[str, Any]:
    """The parsed ``Pulumi.yaml`` of a project directory."""
    return _load_yaml(project_dir / "Pulumi.yaml")


def stack_config_dir(project_dir: Path) -> Path:
    """Where ``pulumi`` keeps the project's stack files (``stackConfigDir``, default the project itself)."""
    return project_dir / str(project_file(project_dir).get("stackConfigDir", "."))


def stack_file_path(project_dir: Path, stack: str) -> Path:
    """Where ``pulumi`` keeps a stack's config, honouring ``stackConfigDir``."""
    return stack_config_dir(project_dir) / f"Pulumi.{stack}.yaml"


def stack_names(project_dir: Path) -> list[str]:
    """The stacks that have a stack file in the project (``Pulumi.NAME.yaml``), sorted."""
    folder = stack_config_dir(project_dir)
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in folder.glob("Pulumi.?*.yaml"))


def project_defaults(project: dict[str, Any]) -> dict[str, Any]:
    """Project-level config defaults, keys namespaced like the engine does."""
    name = project.get("name", "")
    defaults: dict[str, Any] = {}
    for key, declaration in (project.get("config") or {}).items():
        full_key = key if ":" in key else f"{name}:{key}"
        if isinstance(declaration, dict):
            if "default" in declaration:
                defaults[full_key] = declaration["default"]
            elif "value" in declaration:
                defaults[full_key] = declaration["value"]
        else:
            defaults[full_key] = declaration
    return defaults


def load_stack_config(project_dir: Path, *, stack: str | None = None, config_file: Path | None = None) -> StackConfig:
    """Flat config for a stack given by name (``stacks/Pulumi.NAME.yaml``) or by file path."""
    project = project_file(project_dir)
    if config_file is None:
        if stack is None:
            raise StackFileError("give a stack name or a config file")
        config_file = stack_file_path(project_dir, stack)
        if not config_file.is_file():
            known = ", ".join(stack_names(project_dir)) or "none"
            raise StackFileError(f"no stack {stack!r}: {config_file} does not exist; stacks of this project: {known}")
    elif stack is None:
        stack = config_file.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml")
    data = _load_yaml(config_file)
    issues = _file_issues(data)
    config = data.get("config")
    if config is None:
        config = {}
    elif not isinstance(config, dict):
        issues.append(ConfigIssue("config", f"should be a mapping of `namespace:key: value` (got {echo(config)})"))
        config = {}

    flat: dict[str, str] = {key: _as_config_string(value) for key, value in project_defaults(project).items()}
    secret_keys: list[str] = []
    for raw_key, value in config.items():
        key = _config_key(_key_text(raw_key))
        if value is None:  # `key:` with nothing after it: treat as unset so the spec says "is required"
            flat.pop(key, None)
        elif isinstance(value, dict) and set(value) == {"secure"}:
            flat[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        else:
            found = list(_value_issues(key, value))
            issues.extend(found)
            if not found:
                flat[key] = _as_config_string(value)
    return StackConfig(
        project=str(project.get("name", "")),
        stack=stack,
        config=flat,
        secret_keys=tuple(secret_keys),
        source=config_file,
        issues=tuple(issues),
    )
