"""Every pinned runtime installs on the Python that runs it (issue 10, defect 2).

vllm 0.33.0 declares ``Requires-Python <3.15,>=3.11``; the GPU images ship Python 3.10. The contract
(:func:`lmrun.domain.pins.check_runtime_pins`) refuses that pairing; the install scripts never meet it,
because they build the runtimes' virtualenvs on the CPython the mesh provisions (``uv-venv.sh``). The
rendered scripts run here for real against a fake ``curl`` and a fake ``uv`` that record their argv.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lmrun.aws.images import PUBLIC_IMAGES
from lmrun.domain import pins, versions
from lmrun.domain.pins import GPU_IMAGES, IMAGES, Runtime, check_runtime_pins, runtime_pin_checks
from lmrun.domain.versions import PHOENIX, PYTHON_VERSION, UV, VLLM, PythonPin
from lmrun.gcp.catalog import IMAGE_FAMILIES
from lmrun.render import cloudinit, phoenix, runtime, script_files, vllm
from lmrun.render.cloudinit import SCRIPT_DIR, written_files
from lmrun.verify.contracts import ContractResult
from lmrun.verify.user_data import user_data_text
from tests.conftest import plan

# --- the contract -----------------------------------------------------------------------------------------------


def test_the_contract_accepts_the_mesh_as_pinned() -> None:
    assert check_runtime_pins() == []
    checks = runtime_pin_checks()
    assert {(c.runtime, c.image, c.python) for c in checks if c.interpreter == "provisioned"} == {
        ("vllm==0.33.0", "aws-dlami-ubuntu-22.04", PYTHON_VERSION),
        ("vllm==0.33.0", "gcp-dlvm-ubuntu-22.04", PYTHON_VERSION),
        ("arize-phoenix==20.26.1", "al2023", PYTHON_VERSION),
    }
    helpers = [c for c in checks if c.interpreter == "system"]
    assert sorted(c.image for c in helpers) == sorted(IMAGES), "the system-Python helpers are checked on every image"
    assert all(c.ok and c.reason == "" for c in checks)
    assert checks[0].row() == {
        "resource": "vllm==0.33.0 on aws-dlami-ubuntu-22.04",
        "contract": "runtime-python",
        "value": f"provisioned Python {PYTHON_VERSION}",
        "limit": "a Python within Requires-Python <3.15,>=3.11",
        "ok": True,
    }
    # The rows are lmrun.verify.contracts' results (one line for the platform contracts module).
    assert ContractResult(**checks[0].row()).ok


def test_the_contract_refuses_vllm_on_the_gpu_images_python() -> None:
    """The defect reproduced: vLLM in a venv of the image's python3 (what vllm-install.sh did)."""
    problems = check_runtime_pins([Runtime.of(VLLM, GPU_IMAGES, "system")])
    assert [(p.image, p.python, p.ok) for p in problems] == [
        ("aws-dlami-ubuntu-22.04", "3.10", False),
        ("gcp-dlvm-ubuntu-22.04", "3.10", False),
    ]
    assert ContractResult(**problems[0].row()).to_json() == {
        "resource": "vllm==0.33.0 on aws-dlami-ubuntu-22.04",
        "contract": "runtime-python",
        "value": "system Python 3.10",
        "limit": "a Python within Requires-Python <3.15,>=3.11",
        "ok": False,
    }
    assert str(problems[0]) == (
        "vllm==0.33.0 on aws-dlami-ubuntu-22.04 (system Python 3.10, Requires-Python <3.15,>=3.11): "
        "the image ships Python 3.10, which Requires-Python <3.15,>=3.11 excludes"
    )
    # Phoenix on Amazon Linux 2023's python3 (3.9) fails the same way.
    assert [p.python for p in check_runtime_pins([Runtime.of(PHOENIX, ["al2023"], "system")])] == ["3.9"]


def test_the_contract_refuses_a_pin_whose_requires_python_excludes_the_provisioned_one() -> None:
    newer = PythonPin("vllm", "0.99.0", requires_python=">=3.13")
    [problem] = check_runtime_pins([Runtime.of(newer, ["aws-dlami-ubuntu-22.04"])])
    assert problem.python == PYTHON_VERSION and "the mesh provisions Python 3.12.16" in problem.reason
    older = PythonPin("arize-phoenix", "1.0.0", requires_python="<3.12,>=3.8")
    assert len(check_runtime_pins([Runtime.of(older, ["al2023"])])) == 1
    # ... and the provisioned Python moving below today's pins.
    assert len(check_runtime_pins(provisioned_python="3.10.14")) == 3  # vLLM on both GPU images, Phoenix


def test_the_contract_refuses_unknown_images_and_bad_specifiers() -> None:
    [unknown] = check_runtime_pins([Runtime.of(VLLM, ["ubuntu-26.04-dlami"])])
    assert "not in the image catalog" in unknown.reason
    assert unknown.row()["value"] == "image 'ubuntu-26.04-dlami', missing from the image catalog"
    [bad] = check_runtime_pins([Runtime("x==1", "=>3.11", ("al2023",), "provisioned")])
    assert "not a version specifier" in bad.reason
    # A new image with an older python3 fails the system-Python helpers.
    old = {**IMAGES, "al2": dataclasses.replace(IMAGES["al2023"], system_python="3.7")}
    helpers = [r for r in pins.RUNTIMES if r.interpreter == "system"]
    helpers = [dataclasses.replace(r, images=tuple(old)) for r in helpers]
    assert [p.image for p in check_runtime_pins(helpers, images=old)] == ["al2"]
    assert pins.oldest_system_python(old) == (3, 7)


def test_the_image_catalog_names_the_images_the_mesh_boots() -> None:
    """One catalog entry per image the stacks pin (AWS public parameters, GCP families): a new image needs its
    system Python recorded before the contract can pass."""
    booted = {image.parameter for image in PUBLIC_IMAGES.values()}
    booted |= {f"{family.project}/{family.family}" for family in IMAGE_FAMILIES.values()}
    assert {image.family for image in IMAGES.values()} == booted
    for key, image in IMAGES.items():
        assert re.fullmatch(r"3\.\d+", image.system_python) and image.source.startswith("https://"), key


def test_pins_record_a_requires_python_that_packaging_reads() -> None:
    assert versions.PYTHON_PINS == (VLLM, PHOENIX)
    assert (VLLM.version, PHOENIX.version) == (versions.VLLM_VERSION, versions.PHOENIX_VERSION)
    assert vllm.VllmConfig(model="a/b", revision="main", served_model_name="b").vllm_version == VLLM.version
    assert re.fullmatch(r"3\.\d+\.\d+", PYTHON_VERSION)
    assert re.fullmatch(r"[0-9a-f]{64}", UV.sha256) and UV.url.endswith(".whl") and f"uv-{UV.version}-" in UV.url
    assert UV.url.startswith("https://files.pythonhosted.org/packages/")


# --- the rendered user data uses the provisioned interpreter --------------------------------------------------


def _vm_scripts(stack: str, **overrides: object) -> dict[str, dict[str, str]]:
    """``resource name -> {path: content}`` of every VM of a planned stack."""
    found = {}
    for resource in plan(stack, **overrides).recording.resources:
        text = user_data_text(resource)
        if text is not None and text.startswith("#cloud-config"):
            found[resource.name] = written_files(text)
    return found


def _header(script: str) -> dict[str, str]:
    """The ``NAME=value`` header lines of a rendered script (values as bash sees them)."""
    values = {}
    for line in script.splitlines()[2:]:
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match is None:
            break
        result = subprocess.run(["bash", "-c", f'{line}\nprintf %s "${match[1]}"'], capture_output=True, text=True)
        values[match[1]] = result.stdout
    return values


@pytest.mark.parametrize(
    ("stack", "overrides"), [("dev", {}), ("global", {}), ("global", {"phoenix": {"placement": "server"}})]
)
def test_every_runtime_install_runs_on_the_provisioned_python(stack: str, overrides: dict[str, object]) -> None:
    vms = _vm_scripts(stack, **overrides)
    installs = {"vllm-install.sh": VLLM, "phoenix-install.sh": PHOENIX}
    seen = set()
    for name, files in vms.items():
        for path, content in files.items():
            if path != runtime.UV_VENV:  # the one place that installs Python packages, with uv
                assert not re.search(r"python3? -m venv|\bpip3? install|virtualenv ", content), f"{name}: {path}"
            script = Path(path).name
            if script not in installs:
                continue
            seen.add(script)
            pin = installs[script]
            header = _header(content)
            assert header["UV_VENV"] == runtime.UV_VENV and runtime.UV_VENV in files, f"{name}: no uv-venv.sh"
            assert f'"${{UV_VENV:?}}" "${{VENV:?}}" "{pin.package}==${{{script.split("-")[0].upper()}_VERSION:?}}"' in (
                content
            )
            assert header[f"{script.split('-')[0].upper()}_VERSION"] == pin.version
            uv_header = _header(files[runtime.UV_VENV])
            assert uv_header == {
                "UV_VERSION": UV.version,
                "UV_URL": UV.url,
                "UV_SHA256": UV.sha256,
                "UV_DIR": runtime.UV_DIR,
                "PYTHON_VERSION": PYTHON_VERSION,
            }
    assert seen == ({"vllm-install.sh", "phoenix-install.sh"} if stack == "global" else {"vllm-install.sh"})


def test_gcp_gpu_nodes_install_vllm_on_the_provisioned_python() -> None:
    templates = {n: f for n, f in _vm_scripts("global").items() if n.startswith("mesh-sites-gcp")}
    with_vllm = [f for f in templates.values() if f"{SCRIPT_DIR}/vllm-install.sh" in f]
    assert with_vllm, sorted(templates)
    assert all(runtime.UV_VENV in f for f in with_vllm)


# --- the rendered scripts, run against a fake curl and a fake uv ------------------------------------------------

FAKE_UV = """#!/bin/bash
# Records its argv and the uv variables; `venv` makes a virtualenv with a bin/python.
echo "uv $* | cache=$UV_CACHE_DIR python=$UV_PYTHON_INSTALL_DIR" >>"$FAKE_LOG"
if [ "$1" = venv ]; then
    venv="${!#}"
    rm -rf "$venv"
    mkdir -p "$venv/bin"
    touch "$venv/bin/python"
fi
"""
FAKE_CURL = """#!/bin/bash
# Records its argv and writes the fake uv wheel to the -o path.
echo "curl $*" >>"$FAKE_LOG"
while [ $# -gt 0 ]; do
    if [ "$1" = -o ]; then cp "$FAKE_WHEEL" "$2"; fi
    shift
done
"""
RECORDER = '#!/bin/bash\necho "$(basename "$0") $*" >>"$FAKE_LOG"\n'


def _override(script: str, **values: script_files.HeaderValue) -> str:
    """The rendered script with some header values replaced (paths into the test's directory)."""
    for name, value in values.items():
        [line] = script_files.header_lines({name: value})
        script, count = re.subn(rf"^{name}=.*$", line.replace("\\", "\\\\"), script, count=1, flags=re.MULTILINE)
        assert count == 1, f"no {name} in the header"
    return script


@dataclasses.dataclass
class Machine:
    """A directory standing in for a VM: fake tools on PATH, a call log, where the scripts go."""

    root: Path
    env: dict[str, str]
    wheel_sha256: str

    @property
    def log(self) -> Path:
        return self.root / "calls.log"

    def calls(self, tool: str) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.startswith(f"{tool} ")]

    def install(self, name: str, content: str) -> Path:
        path = self.root / "lib" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
        path.chmod(0o755)
        return path

    def run(self, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], env=self.env, capture_output=True, text=True, check=False)

    def uv_venv(self, rendered: str = runtime.UV_VENV_SCRIPT.content, **changes: script_files.HeaderValue) -> Path:
        """The rendered uv-venv.sh, writing under the test's directory, the fake wheel's checksum."""
        values: dict[str, script_files.HeaderValue] = {"UV_DIR": str(self.root / "uv"), "UV_SHA256": self.wheel_sha256}
        return self.install("uv-venv.sh", _override(rendered, **{**values, **changes}))

    def install_twice_builds_once(self, install: Path, venv: Path, pin: PythonPin) -> None:
        """Runs an install script twice: one uv download, one venv on the provisioned Python, one install."""
        for _ in range(2):
            result = self.run(install)
            assert result.returncode == 0, result.stderr
        assert [c.split(" | ")[0] for c in self.calls("uv")] == [
            f"uv venv --quiet --clear --managed-python --python {PYTHON_VERSION} {venv}",
            f"uv pip install --quiet --python {venv}/bin/python {pin.requirement}",
        ]
        assert len(self.calls("curl")) == 1


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"curl": FAKE_CURL, "systemctl": RECORDER, "useradd": RECORDER, "chown": RECORDER}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)  # the image's python3 unpacks the wheel
    # The uv wheel: uv's binary under <name>.data/scripts/, as on PyPI (here the fake uv).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(f"uv-{UV.version}.data/scripts/uv", FAKE_UV)
        wheel.writestr(f"uv-{UV.version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    (tmp_path / "uv.whl").write_bytes(buffer.getvalue())
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_WHEEL": str(tmp_path / "uv.whl"),
        "HOME": str(tmp_path),
    }
    return Machine(tmp_path, env, hashlib.sha256(buffer.getvalue()).hexdigest())


def test_uv_venv_fetches_the_pinned_uv_once_and_builds_on_the_pinned_python(machine: Machine) -> None:
    script = machine.uv_venv()
    venv = machine.root / "opt" / "vllm"
    first = machine.run(script, str(venv), "vllm==0.33.0")
    assert first.returncode == 0, first.stderr
    [curl] = machine.calls("curl")
    assert curl.startswith("curl -fsSL --retry 5 --retry-connrefused -o ") and curl.endswith(f"/uv.whl {UV.url}")
    uv = machine.root / "uv" / UV.version / "uv"
    assert os.access(uv, os.X_OK)
    where = f"cache={machine.root}/uv/cache python={machine.root}/uv/python"
    assert machine.calls("uv") == [
        f"uv venv --quiet --clear --managed-python --python {PYTHON_VERSION} {venv} | {where}",
        f"uv pip install --quiet --python {venv}/bin/python vllm==0.33.0 | {where}",
    ]
    assert (venv / ".lmrun-pins").read_text() == f"python=={PYTHON_VERSION} vllm==0.33.0\n"
    # Idempotent: the same pins again fetch and run nothing.
    again = machine.run(script, str(venv), "vllm==0.33.0")
    assert again.returncode == 0, again.stderr
    assert len(machine.calls("curl")) == 1 and len(machine.calls("uv")) == 2
    # A new pin rebuilds the venv with the uv already there.
    bumped = machine.run(script, str(venv), "vllm==0.34.0")
    assert bumped.returncode == 0, bumped.stderr
    assert len(machine.calls("curl")) == 1 and machine.calls("uv")[-1].startswith(
        f"uv pip install --quiet --python {venv}/bin/python vllm==0.34.0 "
    )
    # A new provisioned Python does too.
    newer = machine.uv_venv(PYTHON_VERSION="3.13.9")
    assert machine.run(newer, str(venv), "vllm==0.34.0").returncode == 0
    assert f"--python 3.13.9 {venv}" in machine.calls("uv")[-2]


def test_uv_venv_refuses_a_uv_wheel_with_another_checksum(machine: Machine) -> None:
    script = machine.uv_venv(UV_SHA256="0" * 64)
    venv = machine.root / "opt" / "phoenix"
    result = machine.run(script, str(venv), "arize-phoenix==20.26.1")
    assert result.returncode != 0 and "did NOT match" in result.stderr
    assert machine.calls("uv") == [] and not (machine.root / "uv" / UV.version / "uv").exists()
    assert not venv.exists()


def _script(files: dict[str, str], name: str) -> str:
    return files[f"{SCRIPT_DIR}/{name}"]


def test_rendered_vllm_install_builds_vllm_on_the_provisioned_python_once(machine: Machine) -> None:
    [files] = [f for n, f in _vm_scripts("dev").items() if n.endswith("-lt")]
    uv_venv = machine.uv_venv(_script(files, "uv-venv.sh"))
    venv, hf_home = machine.root / "opt" / "vllm", machine.root / "hf"
    install = machine.install(
        "vllm-install.sh",
        _override(_script(files, "vllm-install.sh"), UV_VENV=str(uv_venv), VENV=str(venv), HF_HOME=str(hf_home)),
    )
    machine.install_twice_builds_once(install, venv, VLLM)
    assert machine.calls("systemctl") == ["systemctl daemon-reload", f"systemctl enable --now {vllm.UNIT_NAME}"] * 2
    assert hf_home.is_dir()


def test_rendered_phoenix_install_builds_phoenix_on_the_provisioned_python_once(machine: Machine) -> None:
    files = _vm_scripts("global")["mesh-cluster-phoenix-instance"]
    uv_venv = machine.uv_venv(_script(files, "uv-venv.sh"))
    venv, data = machine.root / "opt" / "phoenix", machine.root / "data"
    env_file = machine.install("phoenix-env.sh", RECORDER)
    install = machine.install(
        "phoenix-install.sh",
        _override(
            _script(files, "phoenix-install.sh"),
            UV_VENV=str(uv_venv),
            VENV=str(venv),
            DATA_DIR=str(data),
            WRITE_ENV_FILE=[str(env_file), "eu-west-1"],
        ),
    )
    machine.install_twice_builds_once(install, venv, PHOENIX)
    assert len(machine.calls("phoenix-env.sh")) == 2
    assert f"systemctl enable --now {phoenix.UNIT_NAME}" in machine.calls("systemctl")
    # The units run Phoenix and its helpers from the venv, i.e. on the provisioned Python.
    unit = files[f"/etc/systemd/system/{phoenix.UNIT_NAME}"]
    assert f"ExecStart={phoenix.VENV}/bin/phoenix serve" in unit


def test_every_vm_that_installs_a_runtime_gets_uv_venv_once() -> None:
    for files in _vm_scripts("global").values():
        installs = [p for p in files if p.endswith(("/vllm-install.sh", "/phoenix-install.sh"))]
        assert (runtime.UV_VENV in files) == bool(installs)
        if installs:
            assert files[runtime.UV_VENV] == runtime.UV_VENV_SCRIPT.content
    assert cloudinit.WriteFile(runtime.UV_VENV, runtime.UV_VENV_SCRIPT.content, "0755") == runtime.UV_VENV_SCRIPT


def test_the_offline_plan_lists_every_runtime_pin_as_a_contract() -> None:
    """The runtime-python contract is one of the plan's platform contracts: ``lmrun plan --json`` lists a row
    per runtime and image, every one ok for the example stacks."""
    from lmrun.domain.pins import CONTRACT
    from tests.conftest import plan

    rows = [c for c in plan("dev").contracts if c.contract == CONTRACT]
    assert rows and all(row.ok for row in rows)
    assert {row.resource.split("==")[0] for row in rows} >= {"vllm", "arize-phoenix"}
