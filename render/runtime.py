"""The Python the runtimes (vLLM, Phoenix) run on: the mesh provisions it, so the image's ``python3`` does not matter.

``uv-venv.sh VENV REQUIREMENT...`` fetches the pinned uv wheel from PyPI (checked against its sha256), has uv
install the pinned CPython (checked against the sha256 compiled into that uv release) and builds ``VENV`` on
it with the pinned requirements. The install scripts call it through their ``UV_VENV`` header. The pins and
each one's ``Requires-Python`` are in :mod:`lmrun.domain.versions`; :mod:`lmrun.domain.pins` checks them.
"""

from __future__ import annotations

from lmrun.domain.versions import PYTHON_VERSION, UV
from lmrun.render.cloudinit import SCRIPT_DIR, vm_script

UV_DIR = "/opt/lmrun/uv"
"""uv itself (``UV_DIR/<version>/uv``), its cache and the CPython builds it installs (``UV_DIR/python``)."""
UV_VENV = f"{SCRIPT_DIR}/uv-venv.sh"
"""Where ``uv-venv.sh`` lands on a VM (the ``UV_VENV`` header of the install scripts)."""

UV_VENV_SCRIPT = vm_script(
    "uv-venv.sh",
    {
        "UV_VERSION": UV.version,
        "UV_URL": UV.url,
        "UV_SHA256": UV.sha256,
        "UV_DIR": UV_DIR,
        "PYTHON_VERSION": PYTHON_VERSION,
    },
)
"""``uv-venv.sh`` with the pinned uv and CPython in its header."""
