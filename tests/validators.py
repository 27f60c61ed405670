"""Real validators for rendered artefacts: found on PATH or in the venv, never silently skipped in CI.

On a laptop without a validator the test skips with the reason; with CI=true it fails, because a skipped
proof is not a proof (.ci/run installs every validator).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of a validator; skip without it on a laptop, fail under CI=true."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} is not installed"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def run(argv: Sequence[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def assert_cloud_init_valid(path: Path) -> None:
    result = run([require_tool("cloud-init"), "schema", "--config-file", str(path)])
    assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"
    assert "Valid cloud-config" in result.stdout, result.stdout


def assert_shellcheck_clean(paths: Sequence[Path], shell: str = "bash") -> None:
    result = run([require_tool("shellcheck"), "--severity=style", f"--shell={shell}", *map(str, paths)])
    assert result.returncode == 0, result.stdout + result.stderr


def assert_kubernetes_valid(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    result = run([require_tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    return result
