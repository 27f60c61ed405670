"""Re-record ``tests/fixtures/pypi/<name>.json`` from PyPI for the pins of ``domain/versions.py`` (needs internet).

Each file is PyPI's ``/pypi/<name>/json`` answer trimmed to what ``lmrun pins check`` reads: ``info``'s name,
version and requires_python, and the pinned release's files (name, type, requires_python, url, yanked,
sha256). Run it after bumping a pin: ``.venv/bin/python scripts/record_pypi_fixtures.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lmrun.cli.pins import PYPI, fetch_json
from lmrun.domain.versions import PYTHON_PINS, UV

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pypi"
FILE_KEYS = ("filename", "packagetype", "requires_python", "url", "yanked")


def trimmed(project: dict[str, Any], version: str) -> dict[str, Any]:
    files = [
        {**{key: file[key] for key in FILE_KEYS}, "digests": {"sha256": file["digests"]["sha256"]}}
        for file in project["releases"][version]
        if project["info"]["name"] != "uv" or "linux" in file["filename"] or file["packagetype"] == "sdist"
    ]
    info = {key: project["info"][key] for key in ("name", "version", "requires_python")}
    return {"info": info, "releases": {version: files}}


def main() -> None:
    for name, version in [*((pin.package, pin.version) for pin in PYTHON_PINS), ("uv", UV.version)]:
        project = fetch_json(f"{PYPI}/{name}/json")
        if project is None or version not in project.get("releases", {}):
            sys.exit(f"{name}=={version}: no such release on PyPI")
        path = FIXTURES / f"{name}.json"
        path.write_text(json.dumps(trimmed(project, version), indent=1) + "\n")
        print(f"recorded {path}")


if __name__ == "__main__":
    main()
