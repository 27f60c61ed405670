"""Read a Pulumi project and stack file into the flat config map the engine would hand the program.

Mirrors what ``pulumi up`` does: project-level defaults from ``Pulumi.yaml`` (un-namespaced keys belong to
the project's namespace), overlaid by the stack file's ``config:``; scalars become strings, lists and
objects JSON. Secure values cannot be decrypted offline: they become the placeholder ``[secret]`` and are
listed as secret keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmrun.domain.errors import InputError

SECRET_PLACEHOLDER = "[secret]"


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


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    return data


def _as_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def project_file(project_dir: Path) -> dict[str, Any]:
    """The parsed ``Pulumi.yaml`` of a project directory."""
    return _load_yaml(project_dir / "Pulumi.yaml")


def stack_file_path(project_dir: Path, stack: str) -> Path:
    """Where ``pulumi`` keeps a stack's config, honouring ``stackConfigDir``."""
    config_dir = str(project_file(project_dir).get("stackConfigDir", "."))
    return project_dir / config_dir / f"Pulumi.{stack}.yaml"


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
    elif stack is None:
        stack = config_file.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml")
    data = _load_yaml(config_file)

    flat: dict[str, str] = {key: _as_config_string(value) for key, value in project_defaults(project).items()}
    secret_keys: list[str] = []
    for key, value in (data.get("config") or {}).items():
        if value is None:  # `key:` with nothing after it: treat as unset so the spec says "is required"
            flat.pop(key, None)
        elif isinstance(value, dict) and set(value) == {"secure"}:
            flat[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        else:
            flat[key] = _as_config_string(value)
    return StackConfig(
        project=str(project.get("name", "")),
        stack=stack,
        config=flat,
        secret_keys=tuple(secret_keys),
        source=config_file,
    )
