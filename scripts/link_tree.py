"""Build a directory where `lmrun` is laid out as installed, for tools that cannot follow package-dir.

mypy cannot see setuptools' package-dir mapping (pyproject.toml), so `make typecheck` points it at a tree
of symlinks made from that same mapping: build/typecheck/lmrun/{components,aws,...} -> the real folders.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path


def main(root: Path, target: Path) -> None:
    mapping: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(target, ignore_errors=True)
    package = target / "lmrun"
    package.mkdir(parents=True)
    for source in (root / mapping["lmrun"]).iterdir():
        if source.suffix == ".py":
            (package / source.name).symlink_to(source.resolve())
    for name, folder in mapping.items():
        if name != "lmrun":
            (package / name.removeprefix("lmrun.")).symlink_to((root / folder).resolve(), target_is_directory=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
