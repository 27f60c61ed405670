"""Shared pieces of the Phoenix tests: a moto server on loopback, AWS CLI environments, rendered scripts on disk.

The scripts run for real with bash and the AWS CLI (``awscli`` from PyPI, in the venv); ``AWS_ENDPOINT_URL``
points every call at moto, and the credentials are moto's dummies, so nothing can reach a real account.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile
from lmrun.render.k3s import SSM_GET_SCRIPT

REGION = "us-east-1"
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (all services) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its state per process, across server instances: start each test from nothing.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_env(endpoint: str, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for the scripts: venv first on PATH (aws, python3), moto endpoint, dummy credentials only."""
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "LMRUN_SCRIPT_DIR": str(tmp / "bin"),
        "PYTHON": sys.executable,
    }
    env.update(extra)
    return env


def stand_in_k3s(tmp: Path) -> tuple[Path, Path]:
    """``tmp/fake`` holding a stand-in ``k3s`` (tests/fake_k3s.py; put it first on PATH) and ``tmp/state``, the
    files it serves from (``FAKE_K3S_STATE``)."""
    bin_dir, state = tmp / "fake", tmp / "state"
    bin_dir.mkdir()
    state.mkdir()
    fake = bin_dir / "k3s"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_k3s.py"}" "$@"\n')
    fake.chmod(0o755)
    return bin_dir, state


def install_scripts(tmp: Path, files: Sequence[WriteFile]) -> dict[str, Path]:
    """Write the rendered shell scripts and their Python helpers (plus ``ssm-get.sh``) to ``tmp/bin``, the
    rendered paths of ``SCRIPT_DIR`` in them (a header's argv) pointed there too; name -> path."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for f in [SSM_GET_SCRIPT, *files]:
        if not (f.is_shell_script or f.path.endswith(".py")):
            continue
        path = bin_dir / Path(f.path).name
        path.write_text(f.content.replace(f"{SCRIPT_DIR}/", f"{bin_dir}/"))
        path.chmod(0o755)
        paths[path.name] = path
    return paths


def run_script(
    path: Path, args: Sequence[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(path), *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``result``, asserting exit 0 and showing the script's output otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def phoenix_secret() -> str:
    """Meets Phoenix's rules (>= 32 chars, a digit and a lowercase letter) by construction."""
    alphabet = string.ascii_letters + string.digits
    return "a1" + "".join(secrets.choice(alphabet) for _ in range(40))


def http_request(
    url: str, token: str | None = None, method: str = "GET", body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text.startswith(("{", "[")) else text
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
