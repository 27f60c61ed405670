"""Pinned versions of what the mesh installs on its VMs (one place; the spec's defaults come from here).

Every Python package a VM installs is a :class:`PythonPin`: its version and, beside it, the ``Requires-Python``
that release declares on PyPI (the ``requires_python`` of its files in PyPI's JSON API, what pip and uv read
as ``data-requires-python``). ``lmrun pins check`` compares the recorded values with PyPI; the contract in
:mod:`lmrun.domain.pins` fails the plan when the Python that runs a pin does not satisfy it.

The runtimes (vLLM, Phoenix) do not run on the image's ``python3``: their install scripts fetch the pinned
:data:`UV` and let it build their virtualenvs on the pinned CPython :data:`PYTHON_VERSION`, whatever the image
ships (``render/scripts/uv-venv.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass

K3S_VERSION = "v1.33.6+k3s1"
"""Default K3s release of the server and every agent (``lmrun:k3sVersion``)."""
NVIDIA_CONTAINER_TOOLKIT_VERSION = "1.17.8-1"
"""The NVIDIA Container Toolkit packages a GPU pool node installs from NVIDIA's apt repository (NVIDIA, "Installing
the NVIDIA Container Toolkit", With apt: ``NVIDIA_CONTAINER_TOOLKIT_VERSION=1.17.8-1``): K3s finds its
``nvidia-container-runtime`` and registers the ``nvidia`` runtime with containerd."""
KUBERNETES_VERSION = "1.33.0"
"""Kubernetes schema version the rendered objects are validated against."""


@dataclass(frozen=True)
class PythonPin:
    """One pinned package a VM installs with pip/uv, and the Python versions its release accepts."""

    package: str
    """Distribution name on PyPI."""
    version: str
    requires_python: str
    """``Requires-Python`` of this release on PyPI, verbatim (``lmrun pins check`` refreshes it)."""

    @property
    def requirement(self) -> str:
        """``package==version`` (what the install script passes to ``uv pip install``)."""
        return f"{self.package}=={self.version}"


VLLM = PythonPin("vllm", "0.33.0", requires_python="<3.15,>=3.11")
PHOENIX = PythonPin("arize-phoenix", "20.26.1", requires_python="<3.15,>=3.11")
PYTHON_PINS = (VLLM, PHOENIX)
"""Every package a VM installs from PyPI (``lmrun pins check`` checks these)."""
VLLM_VERSION = VLLM.version
PHOENIX_VERSION = PHOENIX.version

PYTHON_VERSION = "3.12.16"
"""The CPython the mesh provisions for its runtimes (a python-build-standalone build that the pinned uv
downloads and checks against the sha256 compiled into it; ``uv python list --all-versions`` lists them)."""


@dataclass(frozen=True)
class UvPin:
    """The uv release the VMs fetch to provision :data:`PYTHON_VERSION` (its PyPI wheel: any image can download
    from PyPI when it can install the runtimes at all)."""

    version: str
    url: str
    """The manylinux x86_64 wheel on files.pythonhosted.org (every image of the mesh is x86_64)."""
    sha256: str
    """The wheel's sha256 as PyPI lists it (``lmrun pins check`` compares), checked on the VM before use."""


UV = UvPin(
    version="0.13.9",
    url=(
        "https://files.pythonhosted.org/packages/3d/aa/26d64642d808de4a652579ef950d7cd2d37f080a8babf9c67c6b75fc4c3f/"
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    ),
    sha256="d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
)
