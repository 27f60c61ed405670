"""The house rules, read from the source: imports only point down the layers, one error base, cloud names
only in the cloud folders and the registry, no reference to files outside the repository.

The layers (docs/architecture.md), lowest first; a module may import its own layer or a lower one:

0. ``lmrun.domain``          facts every layer shares
1. ``lmrun.clouds``          the cloud registry (name -> folder)
2. cloud knowledge           catalogs, prices, regions, address table (``lmrun.aws.*``, ``lmrun.gcp.catalog``)
3. spec                      ``lmrun.spec`` and each cloud's ``rules``
4. plan                      ``lmrun.plan`` and each cloud's ``placement``
5. render                    ``lmrun.render`` (pure renderers) and each cloud's ``secret_store``
6. components                ``lmrun.components`` and each cloud's ``site``
7. mock engine               ``lmrun.mock_engine``
8. checks                    ``lmrun.policy``, ``lmrun.verify``, each cloud's ``network_model``
9. operator tools            ``lmrun.cli``, boto3 code behind it (``lmrun.aws.quotas``)
10. the umbrella             ``lmrun`` (``python -m lmrun``)
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

# Longest matching prefix wins. Cloud folders span layers by role, so their modules are listed by role.
LAYERS: dict[str, int] = {
    "lmrun.domain": 0,
    "lmrun.clouds": 1,
    "lmrun.aws": 2,
    "lmrun.gcp": 2,
    "lmrun.spec": 3,
    "lmrun.aws.rules": 3,
    "lmrun.gcp.rules": 3,
    "lmrun.plan": 4,
    "lmrun.aws.placement": 4,
    "lmrun.gcp.placement": 4,
    "lmrun.render": 5,
    "lmrun.aws.secret_store": 5,
    "lmrun.gcp.secret_store": 5,
    "lmrun.components": 6,
    "lmrun.gcp.site": 6,
    "lmrun.mock_engine": 7,
    "lmrun.policy": 8,
    "lmrun.verify": 8,
    "lmrun.aws.network_model": 8,
    "lmrun.gcp.network_model": 8,
    "lmrun.aws.access_model": 8,
    "lmrun.gcp.access_model": 8,
    "lmrun.cli": 9,
    "lmrun.aws.quotas": 9,
    "lmrun": 10,
}


def layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise KeyError(module)


def product_modules() -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every module the wheel ships."""
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if any(not part.isidentifier() for part in parts):
                continue  # VM scripts shipped as data, not modules
            if package == "lmrun" and parts and f"lmrun.{parts[0]}" in PACKAGE_DIRS:
                continue
            yield ".".join([package, *parts]), path


def lmrun_imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported lmrun module) for every import statement, at any depth (lazy and type-only too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lmrun":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "lmrun":
                yield node.lineno, target


MODULES = dict(product_modules())


def test_every_product_module_has_a_layer() -> None:
    assert len(MODULES) > 50
    unplaced = [name for name in MODULES if not any(name == p or name.startswith(p + ".") for p in LAYERS)]
    assert not unplaced


def test_imports_only_point_down_the_layers() -> None:
    upward = [
        f"{path.relative_to(REPO)}:{line}: {module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, path in MODULES.items()
        for line, target in lmrun_imports(module, path)
        if layer(target) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check above can fail: a spec module importing a component is reported."""
    fake = tmp_path / "model.py"
    fake.write_text("from lmrun.components.mesh import Mesh\nimport lmrun.domain.ports\n")
    found = [(layer("lmrun.spec.model"), layer(t)) for _, t in lmrun_imports("lmrun.spec.model", fake)]
    assert found == [(3, 6), (3, 0)]
    assert [t for _, t in lmrun_imports("lmrun.spec.sub", _relative(tmp_path))] == ["lmrun.spec.errors"]


def _relative(tmp_path: Path) -> Path:
    path = tmp_path / "sub.py"
    path.write_text("from .errors import ConfigIssue\n")
    return path


def test_every_error_lmrun_raises_on_purpose_derives_from_one_base() -> None:
    """The CLI catches :class:`lmrun.domain.errors.LmrunError` once; an error class outside it would reach
    the user as a traceback-like one-liner with exit 1."""
    import importlib

    from lmrun.domain.errors import LmrunError

    strays = []
    for module in MODULES:
        if module.startswith("lmrun.policy.__main__") or module == "lmrun.__main__":
            continue  # running them starts a policy server / the CLI
        loaded = importlib.import_module(module)
        for value in vars(loaded).values():
            if (
                isinstance(value, type)
                and issubclass(value, Exception)
                and value.__module__ == module
                and not issubclass(value, LmrunError)
                and not getattr(value, "internal", False)
            ):
                strays.append(f"{module}.{value.__name__}")
    assert not strays


def test_cloud_names_are_compared_only_in_the_cloud_folders_and_the_registry() -> None:
    """A new cloud is a folder plus a line in lmrun.clouds: no other code may test for a cloud by name."""
    cloud_folders = {PACKAGE_DIRS["lmrun.clouds"]}
    hits = []
    for path in MODULES.values():
        folder = path.relative_to(REPO).parts[0]
        if folder in ("aws", "gcp") or folder in cloud_folders:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"""["'](gcp|aws)["']""", line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_the_registry_maps_each_cloud_to_a_package_that_names_itself() -> None:
    import importlib

    from lmrun.clouds import CLOUDS, HUB_CLOUD, SITE_CLOUDS

    for name, package in CLOUDS.items():
        assert name == importlib.import_module(package).NAME
    assert HUB_CLOUD in CLOUDS and HUB_CLOUD not in SITE_CLOUDS


@pytest.mark.parametrize("suffix", [".py", ".md", ".toml", ".yaml", ".yml"])
def test_nothing_points_to_files_outside_the_repository(suffix: str) -> None:
    """docs/architecture.md is the record; code and docs never send readers to a brief that is not here."""
    offenders = [
        str(path.relative_to(REPO))
        for path in REPO.rglob(f"*{suffix}")
        if not any(part in {".venv", ".git", "build", "node_modules"} for part in path.relative_to(REPO).parts)
        and path.name != Path(__file__).name
        and re.search(r"DESIGN\.md|shared/", path.read_text(errors="replace"))
    ]
    assert not offenders
