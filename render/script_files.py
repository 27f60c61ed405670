"""The programs lmrun runs on VMs (and on the operator's machine) are files under ``render/scripts/``.

Each ``.sh`` there is a complete script (shebang, strict mode, usage comment, body) and each ``.py`` a
stdlib-only Python helper (3.9-compatible: it runs with whatever ``python3`` the VM has), so ``make lint``
runs shellcheck, ruff and mypy on them as they are. They ship as package data of ``lmrun.render`` and are read
with :mod:`importlib.resources`.

A renderer never formats a script body. It fills values through a **header**: shell assignments inserted
right after the file's shebang line, each value quoted with :func:`shlex.quote` (``REGION=us-east-1``), a
sequence as a bash array (``FLAGS=(--node-ip 10.0.0.10)``). The static body reads them as ``"${REGION:?}"``
(``:?`` fails loudly when a header misses a value) or ``"${FLAGS[@]}"``, and documents them in a comment.
Header names are upper case, so shellcheck treats them as environment the body may rely on.

Comment lines starting with ``##`` (what the file is for and why, the header's variables) are left out of the
rendered script: every byte of user data counts (EC2 takes 16 KB). The ``# Usage:`` line and the ``#``
comments inside the body reach the VM.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from importlib import resources

__all__ = ["RENDERED_NOTE", "HeaderValue", "header_lines", "render_script", "script_names", "script_text"]

RENDERED_NOTE = "Rendered by lmrun; edits on the VM are lost when the instance is replaced."
"""The comment line a script gets under its shebang unless the renderer passes another ``note``."""

HeaderValue = str | int | Sequence[str]
"""A header value: a string or an int (one assignment) or a sequence of strings (a bash array)."""

_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*\.(sh|py)$")
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def script_names() -> list[str]:
    """Every script and helper shipped under ``render/scripts/``, sorted."""
    folder = resources.files("lmrun.render").joinpath("scripts")
    return sorted(entry.name for entry in folder.iterdir() if _FILE_NAME.match(entry.name))


@functools.cache
def script_text(name: str) -> str:
    """The text of ``render/scripts/<name>`` (read once per process)."""
    if not _FILE_NAME.match(name):
        raise ValueError(f"{name!r} is not a script file name like 'ssm-get.sh' or 'phoenix_sqlite.py'")
    return resources.files("lmrun.render").joinpath("scripts", name).read_text(encoding="utf-8")


def header_lines(values: Mapping[str, HeaderValue]) -> list[str]:
    """``NAME=value`` (or ``NAME=(a b)``) lines, every value quoted for the shell, in the given order."""
    lines = []
    for name, value in values.items():
        if not _VARIABLE.match(name):
            raise ValueError(f"{name!r} is not an upper-case shell variable name")
        if isinstance(value, bool):
            raise ValueError(f"{name}: pass {value!r} as a string ('1'/'0'), not a bool")
        if isinstance(value, str | int):
            text = str(value)
            if "\n" in text or "\x00" in text:
                raise ValueError(f"{name}: a header value must be one line")
            lines.append(f"{name}={shlex.quote(text)}")
        else:
            items = list(value)
            if any("\n" in item or "\x00" in item for item in items):
                raise ValueError(f"{name}: a header value must be one line")
            lines.append(f"{name}=({' '.join(shlex.quote(item) for item in items)})")
    return lines


def render_script(
    name: str, values: Mapping[str, HeaderValue] | None = None, *, note: str | None = RENDERED_NOTE
) -> str:
    """``render/scripts/<name>`` with ``# <note>`` and the header of ``values`` right after its shebang line,
    without its ``##`` lines."""
    shebang, _, rest = script_text(name).partition("\n")
    if not shebang.startswith("#!"):
        raise ValueError(f"render/scripts/{name} does not start with a shebang line")
    body = "".join(line for line in rest.splitlines(keepends=True) if not line.startswith("##"))
    lines = [shebang]
    if note is not None:
        if "\n" in note:
            raise ValueError("note: must be one line")
        lines.append(f"# {note}")
    lines += header_lines(values or {})
    return "\n".join(lines) + "\n" + body
