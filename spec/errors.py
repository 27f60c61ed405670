"""Config errors that carry every problem at once, each with its config path."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lmrun.domain.errors import InputError

NAMESPACE = "lmrun"


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in the stack config: ``path`` is the config path, e.g. ``lmrun:regions[2]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# pydantic marks an error in a mapping's key (not its value) with this location part.
_KEY_MARKER = "[key]"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def config_path(loc: Sequence[str | int]) -> str:
    """``("regions", 2)`` -> ``lmrun:regions[2]``; ``("nodes", 0, "gpu")`` -> ``lmrun:nodes[0].gpu``.

    Mapping keys that are not plain words are quoted (``("tags", "aws:x")`` -> ``lmrun:tags["aws:x"]``) so
    a colon inside a key cannot be mistaken for the end of the path.
    """
    parts = [part for part in loc if part != _KEY_MARKER]
    if not parts:
        return f"{NAMESPACE}:"
    head, *rest = parts
    path = f"{NAMESPACE}:{head}"
    for part in rest:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


class ConfigError(InputError):
    """The stack config is invalid; ``issues`` lists every problem found, sorted by path."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(sorted(set(issues)))
        super().__init__("invalid stack config:\n" + "\n".join(f"  {issue}" for issue in self.issues))

    def lines(self) -> list[str]:
        return [str(issue) for issue in self.issues]


class PlanError(ConfigError):
    """The config is well-formed but the mesh it declares cannot be built (limits, overlaps, paths)."""
