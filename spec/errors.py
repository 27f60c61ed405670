"""Config errors that carry every problem at once, each with its config path."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


def config_path(loc: Sequence[str | int], *, namespace: str = NAMESPACE) -> str:
    """``("regions", 2)`` -> ``lmrun:regions[2]``; ``("nodes", 0, "gpu")`` -> ``lmrun:nodes[0].gpu``.

    Mapping keys that are not plain words are quoted (``("tags", "aws:x")`` -> ``lmrun:tags["aws:x"]``) so
    a colon inside a key cannot be mistaken for the end of the path.
    """
    parts = [part for part in loc if part != _KEY_MARKER]
    if not parts:
        return f"{namespace}:"
    head, *rest = parts
    return f"{namespace}:{head}{_suffix(rest)}"


def _suffix(parts: Sequence[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path


def key_path(full_key: str, where: Sequence[str | int] = ()) -> str:
    """The path of a place inside the value of any config key: ``("aws:tags", ("a",))`` -> ``aws:tags.a``."""
    namespace, colon, name = full_key.partition(":")
    if not colon:
        return full_key + _suffix(where)
    return config_path((name, *where), namespace=namespace)


_LOCATION_PART = re.compile(r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def config_location(path: str) -> tuple[str | int, ...] | None:
    """The inverse of :func:`config_path`: ``lmrun:nodes[0].gpu`` -> ``("nodes", 0, "gpu")``; None for a path
    outside the namespace (``aws:region``, a stack-file key) or one :func:`config_path` cannot have written."""
    prefix = f"{NAMESPACE}:"
    if not path.startswith(prefix):
        return None
    match = re.match(r"[A-Za-z0-9_-]+", path[len(prefix) :])
    if match is None:
        return None
    location: list[str | int] = [match.group()]
    rest = path[len(prefix) + match.end() :]
    while rest:
        part = _LOCATION_PART.match(rest)
        if part is None:
            return None
        name, index, quoted = part.groups()
        location.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        rest = rest[part.end() :]
    return tuple(location)


def is_under(path: str, others: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``others`` or inside one of them (``lmrun:nodes[0].gpu`` is inside
    ``lmrun:nodes[0]``, not inside ``lmrun:nodes[0].gpuCount``)."""
    return any(path == other or path.startswith((f"{other}.", f"{other}[")) for other in others)


MAX_ECHO = 60
"""Characters of a user's value an error message repeats (the rest is cut: one problem stays one line)."""
MAX_LINE = 1000
"""Characters of one reported line: a message that quotes an enormous value never floods the terminal."""


def echo(value: Any) -> str:
    """A user's value for a message, ``repr``-quoted and cut to :data:`MAX_ECHO` characters."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else f"{text[: MAX_ECHO - 5]}...{text[-1]}"


def bounded(line: str) -> str:
    """``line`` cut to :data:`MAX_LINE` characters, saying how much was cut."""
    if len(line) <= MAX_LINE:
        return line
    return f"{line[:MAX_LINE]}... ({len(line) - MAX_LINE} more characters)"


def _natural(issue: ConfigIssue) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """Sort key of an issue: its path with list indexes as numbers (``nodes[2]`` before ``nodes[10]``)."""
    parts = re.split(r"(\d+)", issue.path)
    return tuple((1, int(part)) if part.isdigit() else (0, part) for part in parts), issue.message


class ConfigError(InputError):
    """The stack config is invalid; ``issues`` lists every problem found, sorted by path."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(sorted(set(issues), key=_natural))
        super().__init__("invalid stack config:\n" + "\n".join(f"  {line}" for line in self.lines()))

    def lines(self) -> list[str]:
        return [bounded(str(issue)) for issue in self.issues]


class PlanError(ConfigError):
    """The config is well-formed but the mesh it declares cannot be built (limits, overlaps, paths)."""
