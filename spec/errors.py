"""Config errors that carry every problem at once, each with its config path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NAMESPACE = "lmrun"


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in the stack config: ``path`` is the config path, e.g. ``lmrun:regions[2]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def config_path(loc: Sequence[str | int]) -> str:
    """``("regions", 2)`` -> ``lmrun:regions[2]``; ``("nodes", 0, "gpu")`` -> ``lmrun:nodes[0].gpu``."""
    if not loc:
        return f"{NAMESPACE}:"
    head, *rest = loc
    path = f"{NAMESPACE}:{head}"
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


class ConfigError(ValueError):
    """The stack config is invalid; ``issues`` lists every problem found, sorted by path."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(sorted(set(issues)))
        super().__init__("invalid stack config:\n" + "\n".join(f"  {issue}" for issue in self.issues))


class PlanError(ConfigError):
    """The config is well-formed but the mesh it declares cannot be built (limits, overlaps, paths)."""
