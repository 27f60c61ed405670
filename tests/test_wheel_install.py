"""The components are reusable from another Pulumi project: prove it from a built wheel in a fresh virtualenv.

The repository keeps the architecture's folders at the top (``components/``, ``aws/``, ...) and pyproject's
``package-dir`` maps them under ``lmrun``. This test builds the wheel from a clean copy of the working tree,
installs it (with its dependencies, compiled) into a new virtualenv, and runs an external program that has
its own top-level ``components`` and ``aws`` packages next to ``lmrun.components`` under the mock engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Not packages of the library even if they ever grow an __init__.py.
NOT_SHIPPED = {"tests", "scripts", "docs", "stacks", "build", "dist"}
# The folders of the architecture that must never appear at the top level of an installed wheel.
ARCHITECTURE_FOLDERS = {"components", "aws", "spec", "plan", "mock_engine", "policy", "render", "cli"}

pytestmark = pytest.mark.slow


def _ignored(directory: str, names: list[str]) -> set[str]:
    """What a clean checkout would not have: build leftovers (stale build/lib files end up in wheels)."""
    skip = {".venv", "venv", "build", "dist", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    skip |= {".hypothesis", "node_modules"}
    return {n for n in names if n in skip or n.endswith((".egg-info", ".pyc"))}


def _package_folders() -> dict[str, Path]:
    """Every folder of the repository that is a Python package, by the dotted name pyproject maps it to."""
    package_dir: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    by_folder = {(REPO / folder).resolve(): name for name, folder in package_dir.items()}
    found: dict[str, Path] = {}
    unmapped: list[str] = []
    for init in sorted(REPO.rglob("__init__.py")):
        folder = init.parent
        relative = folder.relative_to(REPO)
        if any(part.startswith(".") or part in NOT_SHIPPED or part.endswith(".egg-info") for part in relative.parts):
            continue
        for top in (folder, *folder.parents):
            if top in by_folder:
                suffix = folder.relative_to(top).parts
                found[".".join((by_folder[top], *suffix))] = folder
                break
        else:
            unmapped.append(str(relative))
    assert not unmapped, f"package folders with no [tool.setuptools] package-dir entry: {unmapped}"
    return found


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command!r} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_ignored, symlinks=True)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], cwd=tmp_path)
    (wheel,) = dist.glob("lmrun_mesh-*.whl")
    return wheel


def _check_wheel_layout(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (top_level_txt,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        top_level = archive.read(top_level_txt).decode().split()
    tops = {name.split("/", 1)[0] for name in names}
    stray = sorted(t for t in tops if t != "lmrun" and not t.endswith(".dist-info"))
    assert not stray, f"the wheel installs top-level names besides lmrun: {stray}"
    assert top_level == ["lmrun"]
    assert not ARCHITECTURE_FOLDERS & tops
    assert "lmrun/py.typed" in names  # PEP 561: type checkers read the installed package's annotations

    missing: list[str] = []
    for package, folder in _package_folders().items():
        prefix = package.replace(".", "/")
        # Data folders inside a package too (render/scripts/: the programs lmrun writes onto VMs).
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            shipped = f"{prefix}/{relative.as_posix()}"
            skipped = "__pycache__" in relative.parts or path.suffix in {".pyc", ".md"}
            if path.is_file() and not skipped and shipped not in names:
                missing.append(f"{folder.relative_to(REPO)}/{relative} -> {shipped}")
    assert not missing, "files of package folders missing from the wheel (pyproject packages/package-data):\n" + (
        "\n".join(missing)
    )


def _constraints(tmp_path: Path) -> Path:
    """The project's pins (requirements.txt without the editable self-install) as a constraints file."""
    pins = [
        line
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]
    path = tmp_path / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


# The external project: its own top-level `components` and `aws` packages, built on lmrun's components.
USER_COMPONENTS = '''
"""The user's own components package; it happens to share a name with a folder of lmrun-mesh."""

import pulumi
import pulumi_aws

from lmrun.components import RegionalVpc

WHO = "user-components"


class Edge(pulumi.ComponentResource):
    def __init__(self, name: str, *, cidr: str, subnets: dict[str, str], provider: pulumi_aws.Provider) -> None:
        super().__init__("acme:index:Edge", name, None, None)
        self.vpc = RegionalVpc(
            f"{name}-net",
            args={"cidr_block": cidr, "subnets": subnets, "tags": {"team": "acme"}},
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({"vpc_id": self.vpc.vpc_id})
'''

USER_AWS = '''
"""The user's own aws package (same name as lmrun-mesh's aws/ folder)."""

WHO = "user-aws"
REGION = "eu-west-1"
CIDR = "10.77.0.0/16"
SUBNETS = {"euw1-az1": "10.77.0.0/20", "euw1-az2": "10.77.16.0/20"}
'''

USER_INFRA = '''
"""The stack's resources, importable so the same code runs under `pulumi up` and under mocks."""

import pulumi
import pulumi_aws

import aws
import components


def build() -> None:
    provider = pulumi_aws.Provider("euw1", region=aws.REGION)
    edge = components.Edge("edge", cidr=aws.CIDR, subnets=aws.SUBNETS, provider=provider)
    pulumi.export("vpcId", edge.vpc.vpc_id)
'''

USER_MAIN = """
import infra

infra.build()
"""

USER_CHECK = '''
"""A unit test the user would write: run the program under lmrun's recording mock engine, print JSON."""

import json

import aws
import components
import infra
import lmrun.components
from lmrun.mock_engine import redact, run_program

recording = run_program(infra.build, project="acme", stack="test")
print(json.dumps({
    "modules": {
        "components": components.__file__,
        "aws": aws.__file__,
        "lmrun.components": lmrun.components.__file__,
        "who": [components.WHO, aws.WHO],
    },
    "resources": [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "parent": r.parent,
            "provider": r.provider_urn,
            "inputs": redact(r.inputs),
        }
        for r in recording.resources
    ],
    "outputs": redact(recording.outputs),
}))
'''


def _write_user_project(project: Path) -> None:
    files = {
        "Pulumi.yaml": "name: acme\nruntime: python\n",
        "components/__init__.py": USER_COMPONENTS,
        "aws/__init__.py": USER_AWS,
        "infra.py": USER_INFRA,
        "__main__.py": USER_MAIN,
        "check.py": USER_CHECK,
    }
    for relative, text in files.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def test_wheel_installs_and_components_run_in_a_foreign_project(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    _check_wheel_layout(wheel)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # A clean environment: nothing of this repository (editable install, PYTHONPATH) may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--compile", "-c", str(_constraints(tmp_path)), str(wheel)],
        cwd=tmp_path,
        env=env,
    )

    # Installed, the venv knows no top-level `components`/`aws`/... (isolated mode: no cwd on sys.path).
    names = sorted(ARCHITECTURE_FOLDERS)
    probe = f"import importlib.util, json; print(json.dumps([importlib.util.find_spec(n) is None for n in {names!r}]))"
    assert json.loads(_run([str(python), "-I", "-c", probe], cwd=tmp_path, env=env)) == [True] * len(names)

    project = tmp_path / "acme"
    _write_user_project(project)
    report = json.loads(_run([str(python), "check.py"], cwd=project, env=env))

    modules = report["modules"]
    assert modules["who"] == ["user-components", "user-aws"]
    assert Path(modules["components"]).resolve() == (project / "components" / "__init__.py").resolve()
    assert Path(modules["aws"]).resolve() == (project / "aws" / "__init__.py").resolve()
    installed = Path(modules["lmrun.components"]).resolve()
    assert installed.is_relative_to(venv.resolve()), installed
    assert "site-packages" in installed.parts

    resources = report["resources"]
    by_name = {r["name"]: r for r in resources}
    provider = by_name["euw1"]
    assert provider["type"] == "pulumi:providers:aws"
    assert provider["inputs"]["region"] == "eu-west-1"

    edge = by_name["edge"]
    assert edge["type"] == "acme:index:Edge"
    regional = by_name["edge-net"]
    assert regional["type"] == "lmrun:index:RegionalVpc"
    assert regional["parent"] == edge["urn"]

    vpc = by_name["edge-net-vpc"]
    assert vpc["type"] == "aws:ec2/vpc:Vpc"
    assert vpc["inputs"]["cidrBlock"] == "10.77.0.0/16"
    assert vpc["parent"] == regional["urn"]
    subnets = {
        r["inputs"]["availabilityZoneId"]: r["inputs"]["cidrBlock"]
        for r in resources
        if r["type"] == "aws:ec2/subnet:Subnet"
    }
    assert subnets == {"euw1-az1": "10.77.0.0/20", "euw1-az2": "10.77.16.0/20"}

    # Every AWS resource of the component uses the explicit provider, none the default one.
    aws_resources = [r for r in resources if r["type"].startswith("aws:")]
    assert len(aws_resources) >= 8
    assert {r["provider"] for r in aws_resources} == {provider["urn"]}
    assert not any(r["type"] == "pulumi:providers:aws" and r["name"].startswith("default") for r in resources)
    assert report["outputs"]["vpcId"] == "edge-net-vpc-id"
