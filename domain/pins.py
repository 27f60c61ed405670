"""Which Python runs each pinned runtime, and the contract that it satisfies the pin's ``Requires-Python``.

A pin (:mod:`lmrun.domain.versions`) records the ``Requires-Python`` of its release. What runs it is either the
CPython the mesh **provisions** (``PYTHON_VERSION``: the install scripts build the runtime's virtualenv with
the pinned uv, ``render/scripts/uv-venv.sh``) or the image's **system** ``python3`` (the stdlib-only helpers
of ``render/scripts/*.py``, and ``python3 -m zipfile`` unpacking uv). :data:`IMAGES` records each image's
system Python; :data:`RUNTIMES` what runs on which images with which interpreter.

:func:`check_runtime_pins` is the platform contract "every pinned runtime is installable on the Python the
node actually uses": pure, one problem per (runtime, image) pair that fails. vllm 0.33.0 declares
``Requires-Python <3.15,>=3.11`` and the GPU images ship Python 3.10, which is why vLLM and Phoenix run on the
provisioned CPython and never on the image's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from lmrun.domain.versions import PHOENIX, PYTHON_VERSION, VLLM, PythonPin

__all__ = [
    "CONTRACT",
    "GPU_IMAGES",
    "IMAGES",
    "RUNTIMES",
    "VM_HELPERS_REQUIRES_PYTHON",
    "Image",
    "Interpreter",
    "PinCheck",
    "Runtime",
    "check_runtime_pins",
    "oldest_system_python",
    "runtime_pin_checks",
]

CONTRACT = "runtime-python"
"""The contract's name in the plan's ``contracts`` rows."""

Interpreter = Literal["provisioned", "system"]
"""``provisioned``: the mesh's pinned CPython (``PYTHON_VERSION``); ``system``: the image's ``python3``."""


@dataclass(frozen=True)
class Image:
    """A VM image of the mesh and the ``python3`` it ships."""

    family: str
    """What the mesh resolves the image from (SSM parameter or GCP image family)."""
    system_python: str
    """``python3 --version`` of the image (major.minor)."""
    source: str
    """Where that fact is documented."""


# Each image's system Python, from the documentation named beside it.
IMAGES: dict[str, Image] = {
    # K3s server, Phoenix node, WireGuard hub.
    "al2023": Image(
        family="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        system_python="3.9",
        source="https://docs.aws.amazon.com/linux/al2023/ug/python.html (Python 3.9 is AL2023's system python3)",
    ),
    # AWS GPU nodes.
    "aws-dlami-ubuntu-22.04": Image(
        family="/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        system_python="3.10",
        source=(
            "https://docs.aws.amazon.com/dlami/latest/devguide/aws-deep-learning-x86-base-oss-gpu-ami-ubuntu-22-04.html"
            " (Python 3.10); https://packages.ubuntu.com/jammy/python3 (3.10)"
        ),
    ),
    # GPU nodes of GCP sites.
    "gcp-dlvm-ubuntu-22.04": Image(
        family="deeplearning-platform-release/common-cu128-ubuntu-2204-nvidia-570",
        system_python="3.10",
        source=(
            "https://cloud.google.com/deep-learning-vm/docs/images (Ubuntu 22.04 base); "
            "https://packages.ubuntu.com/jammy/python3 (3.10)"
        ),
    ),
    # WireGuard gateways of GCP sites.
    "ubuntu-24.04": Image(
        family="ubuntu-os-cloud/ubuntu-2404-lts-amd64",
        system_python="3.12",
        source="https://packages.ubuntu.com/noble/python3 (3.12)",
    ),
}
GPU_IMAGES = ("aws-dlami-ubuntu-22.04", "gcp-dlvm-ubuntu-22.04")


@dataclass(frozen=True)
class Runtime:
    """Something Python runs on the mesh's VMs: where, with which interpreter, and what it requires."""

    name: str
    """``package==version`` for a pin, else what it is."""
    requires_python: str
    images: tuple[str, ...]
    """Keys of :data:`IMAGES` it runs on."""
    interpreter: Interpreter

    @classmethod
    def of(cls, pin: PythonPin, images: Iterable[str], interpreter: Interpreter = "provisioned") -> Runtime:
        return cls(pin.requirement, pin.requires_python, tuple(images), interpreter)


VM_HELPERS_REQUIRES_PYTHON = ">=3.9"
"""What ``render/scripts/*.py`` (stdlib only) and ``uv-venv.sh``'s ``python3 -m zipfile`` need from the image's
``python3`` (tests parse the helpers with the oldest image's grammar, :func:`oldest_system_python`)."""

RUNTIMES = (
    Runtime.of(VLLM, GPU_IMAGES),
    Runtime.of(PHOENIX, ["al2023"]),
    Runtime("render/scripts/*.py and uv-venv.sh", VM_HELPERS_REQUIRES_PYTHON, tuple(IMAGES), "system"),
)
"""What runs on the mesh's VMs (``render/vllm.py`` and ``render/phoenix.py`` install the pins with
``uv-venv.sh``; tests check that the rendered scripts agree)."""


@dataclass(frozen=True)
class PinCheck:
    """One runtime on one image: the Python that runs it against the runtime's ``Requires-Python``."""

    runtime: str
    image: str
    interpreter: Interpreter
    python: str | None
    """The Python version that runs it there; None when the image is not in the catalog."""
    requires_python: str
    ok: bool
    reason: str = ""
    """Why it fails (empty when ``ok``)."""

    @property
    def subject(self) -> str:
        """``<runtime> on <image>`` (the ``resource`` of a contract row)."""
        return f"{self.runtime} on {self.image}"

    def row(self) -> dict[str, str | bool]:
        """The plan's ``contracts`` row, ``{resource, contract, value, limit, ok}`` (the fields of
        ``lmrun.verify.contracts.ContractResult``: ``[ContractResult(**c.row()) for c in runtime_pin_checks()]``)."""
        if self.python is None:
            value = f"image {self.image!r}, missing from the image catalog"
        else:
            value = f"{self.interpreter} Python {self.python}"
        limit = f"a Python within Requires-Python {self.requires_python}"
        return {"resource": self.subject, "contract": CONTRACT, "value": value, "limit": limit, "ok": self.ok}

    def __str__(self) -> str:
        python = f"{self.interpreter} Python {self.python}"
        return f"{self.subject} ({python}, Requires-Python {self.requires_python}): {self.reason or 'ok'}"


def _check(runtime: Runtime, image_key: str, images: Mapping[str, Image], provisioned: str) -> PinCheck:
    image = images.get(image_key)
    python = None if image is None else provisioned if runtime.interpreter == "provisioned" else image.system_python

    def result(ok: bool, reason: str = "") -> PinCheck:
        return PinCheck(runtime.name, image_key, runtime.interpreter, python, runtime.requires_python, ok, reason)

    if image is None:
        return result(False, f"image {image_key!r} is not in the image catalog (lmrun.domain.pins.IMAGES)")
    try:
        specifier = SpecifierSet(runtime.requires_python)
    except InvalidSpecifier:
        return result(False, f"Requires-Python {runtime.requires_python!r} is not a version specifier")
    if python is None or not specifier.contains(python, prereleases=True):
        how = "the mesh provisions" if runtime.interpreter == "provisioned" else "the image ships"
        return result(False, f"{how} Python {python}, which Requires-Python {runtime.requires_python} excludes")
    return result(True)


def runtime_pin_checks(
    runtimes: Iterable[Runtime] = RUNTIMES,
    *,
    images: Mapping[str, Image] = IMAGES,
    provisioned_python: str = PYTHON_VERSION,
) -> list[PinCheck]:
    """Every (runtime, image) pair checked, passing or not (``[c.row() for c in runtime_pin_checks()]``: this
    contract's rows in the plan's ``contracts``)."""
    return [_check(runtime, key, images, provisioned_python) for runtime in runtimes for key in runtime.images]


def check_runtime_pins(
    runtimes: Iterable[Runtime] = RUNTIMES,
    *,
    images: Mapping[str, Image] = IMAGES,
    provisioned_python: str = PYTHON_VERSION,
) -> list[PinCheck]:
    """The failing pairs: a runtime whose ``Requires-Python`` the Python that runs it does not satisfy.

    Source of each fact: the ``Requires-Python`` of each pin is PyPI's (``lmrun pins check``), each image's
    Python is in :data:`IMAGES` with its documentation, the provisioned one is ``PYTHON_VERSION``.
    """
    checks = runtime_pin_checks(runtimes, images=images, provisioned_python=provisioned_python)
    return [check for check in checks if not check.ok]


def oldest_system_python(images: Mapping[str, Image] = IMAGES) -> tuple[int, int]:
    """The oldest ``python3`` among the images, as ``(major, minor)`` (what the system-Python helpers target)."""
    versions = [tuple(int(part) for part in image.system_python.split(".")[:2]) for image in images.values()]
    return min((major, minor) for major, minor in versions)
