"""``lmrun pins check``: compare the recorded pins (:mod:`lmrun.domain.versions`) with PyPI's JSON API.

For each pinned package it reads the files of the pinned release (``/pypi/<name>/<version>/json``, falling
back to the project's ``/pypi/<name>/json``) and compares their ``requires_python`` (the value pip and uv
read as ``data-requires-python``, taken from each file's metadata; not the project's ``info``, which
describes one release only) with the recorded ``Requires-Python``, as version specifier sets. For uv it checks
that the recorded wheel is a file of the release with the recorded sha256. Drift exits 1: update the pin in
``domain/versions.py`` and let the plan's contract (:func:`lmrun.domain.pins.check_runtime_pins`) say whether
the Python that runs it still fits.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from lmrun.domain.errors import LmrunError
from lmrun.domain.versions import PYTHON_PINS, UV, PythonPin, UvPin

PYPI = "https://pypi.org/pypi"
"""PyPI's JSON API (``--index-url`` points the command at another one, e.g. a recorded copy)."""

Fetch = Callable[[str], Any]
"""``url -> parsed JSON``, or None when the index answers 404."""


class PinsLookupError(LmrunError):
    """The package index could not be read, or does not have a pinned release: exit 1."""


def fetch_json(url: str, timeout: float = 30.0) -> Any:
    """GET ``url`` as JSON; None on 404."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "lmrun-pins-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise PinsLookupError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        raise PinsLookupError(f"{url}: {exc}") from exc


@dataclass(frozen=True)
class PinComparison:
    """One recorded fact of a pin next to what the index says."""

    pin: str
    """``package==version``."""
    fact: str
    """``Requires-Python`` or ``wheel sha256``."""
    recorded: str
    index: str
    """What the index says (several values joined with `` | `` when its files disagree)."""
    ok: bool

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "DRIFT"
        return f"{self.pin:<24} {self.fact:<16} recorded {self.recorded:<16} index {self.index:<16} {verdict}"


def release_files(package: str, version: str, fetch: Fetch, index_url: str = PYPI) -> list[dict[str, Any]]:
    """The files PyPI lists for ``package==version`` (raises when the release is not there)."""
    document = fetch(f"{index_url}/{package}/{version}/json")
    files: Any = None
    if isinstance(document, dict):
        files = document.get("urls")
    if not files:
        project = fetch(f"{index_url}/{package}/json")
        if isinstance(project, dict):
            files = project.get("releases", {}).get(version)
    if not files or not isinstance(files, list):
        raise PinsLookupError(f"{package}=={version}: no such release on {index_url}")
    return [file for file in files if isinstance(file, dict)]


def _same_specifiers(left: str, right: str) -> bool:
    try:
        return SpecifierSet(left) == SpecifierSet(right)
    except InvalidSpecifier:
        return left == right


def compare_requires_python(pin: PythonPin, files: Iterable[dict[str, Any]]) -> PinComparison:
    """The pin's recorded ``Requires-Python`` against its files' (every file must agree with it)."""
    found = sorted({str(file.get("requires_python") or "") for file in files if not file.get("yanked")})
    if not found:
        return PinComparison(pin.requirement, "Requires-Python", pin.requires_python, "(every file yanked)", False)
    ok = all(_same_specifiers(pin.requires_python, value) for value in found)
    shown = " | ".join(value or "(none)" for value in found)
    return PinComparison(pin.requirement, "Requires-Python", pin.requires_python, shown, ok)


def compare_uv_wheel(uv: UvPin, files: Iterable[dict[str, Any]]) -> PinComparison:
    """The recorded uv wheel (file name from its URL) and sha256 against the release's files."""
    filename = urlsplit(uv.url).path.rsplit("/", 1)[-1]
    digests = [str(file.get("digests", {}).get("sha256", "")) for file in files if file.get("filename") == filename]
    index = digests[0] if digests else f"(no file {filename})"
    return PinComparison(f"uv=={uv.version}", "wheel sha256", uv.sha256, index, digests == [uv.sha256])


def check_pins(
    fetch: Fetch = fetch_json,
    *,
    pins: Sequence[PythonPin] = PYTHON_PINS,
    uv: UvPin = UV,
    index_url: str = PYPI,
) -> list[PinComparison]:
    """Every recorded pin compared with the index (one request or two per package)."""
    index_url = index_url.rstrip("/")
    rows = [compare_requires_python(pin, release_files(pin.package, pin.version, fetch, index_url)) for pin in pins]
    rows.append(compare_uv_wheel(uv, release_files("uv", uv.version, fetch, index_url)))
    return rows
