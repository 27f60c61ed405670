"""A Debian 12 machine booted for real: a rootfs from ``mmdebstrap`` (cached), ``systemd-nspawn --boot``,
cloud-init's NoCloud datasource, a loop-backed block device, commands run inside with ``nsenter``.

What the machine has is what an image has: systemd as PID 1, cloud-init, python3, curl, an AWS CLI and
the usual system tools. It shares the host's network (a VM reaches the moto server on the host's loopback;
the host reaches the VM's services on its own loopback), so the machine's ports are the host's: callers
hold :func:`machine_lock` while one runs. Every subprocess has a timeout; nothing loops without a bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "python3",
    "cloud-init",
    "curl",
    "ca-certificates",
    "e2fsprogs",
    "locales",
)
"""What the image brings besides Debian's required packages (cloud images have them all)."""
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://security.debian.org/debian-security {SUITE}-security main",
)
"""The machine's apt sources, as on a Debian cloud image (the same on any host: mmdebstrap's defaults are not)."""
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
"""Debian's archive keyring (package debian-archive-keyring): what mmdebstrap verifies the archive with, on an
Ubuntu host too."""
AWS_CLI = ("awscli", importlib.metadata.version("awscli"))
"""The image's AWS CLI: the venv's pinned awscli (v1 >= 1.29 honours ``AWS_ENDPOINT_URL``), installed from
PyPI into ``/opt/aws-cli`` with a ``/usr/local/bin/aws`` wrapper (EC2 images ship one; Debian's awscli
2.9 predates ``AWS_ENDPOINT_URL``)."""
CACHE = Path(tempfile.gettempdir()) / "lmrun-boot"
"""Cached rootfs (one per package list), the shared pip/uv download cache and the lock of the host's ports."""
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

T = TypeVar("T")


def _run(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=None if env is None else dict(env)
    )


def checked(argv: Sequence[str], timeout: float) -> str:
    result = _run(argv, timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def machine_lock() -> contextlib.AbstractContextManager[None]:
    """One booted machine per host at a time: it binds the host's ports (another worktree's run waits)."""
    return _flock(CACHE / "machine.lock")


_BUILD = 2
"""Bumped when :func:`rootfs` builds differently (a new cache entry)."""


def _rootfs_key() -> str:
    inputs = (_BUILD, SUITE, MIRRORS, PACKAGES, AWS_CLI, platform.machine())
    return hashlib.sha256(repr(inputs).encode()).hexdigest()[:16]


def _install_aws_cli(root: Path) -> None:
    python = os.readlink(root / "usr/bin/python3")  # "python3.11"
    version = python.removeprefix("python3.")
    checked(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(root / "opt/aws-cli"),
            "--only-binary=:all:",
            "--implementation=cp",
            f"--python-version=3.{version}",
            f"--platform=manylinux2014_{platform.machine()}",
            "==".join(AWS_CLI),
        ],
        timeout=600,
    )
    wrapper = root / "usr/local/bin/aws"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH=/opt/aws-cli exec /usr/bin/{python} -m awscli "$@"\n')
    wrapper.chmod(0o755)


def rootfs() -> tuple[Path, float]:
    """The cached rootfs for :data:`PACKAGES` (built once, ~20-80 s) and the seconds this call took."""
    start = time.monotonic()
    cached = CACHE / f"rootfs-{SUITE}-{_rootfs_key()}"
    with _flock(cached.with_suffix(".lock")):
        if not cached.is_dir():
            building = cached.with_name(f"{cached.name}.building")
            shutil.rmtree(building, ignore_errors=True)
            checked(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    f"--keyring={KEYRING}",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(building),
                    *MIRRORS,
                ],
                timeout=900,
            )
            _install_aws_cli(building)
            # Cloud images generate en_US.UTF-8, the locale cloud-init sets by default.
            locale_gen = building / "etc/locale.gen"
            locale_gen.write_text(locale_gen.read_text() + "en_US.UTF-8 UTF-8\n")
            checked(["chroot", str(building), "locale-gen"], timeout=120)
            building.rename(cached)
    return cached, time.monotonic() - start


def machine_root(base: Path, dest: Path) -> dict[str, str]:
    """A copy of the cached rootfs to boot, trusting the CAs the host trusts besides the distribution's (a
    TLS-inspecting proxy's, say: the machine downloads through the host's network). Returns the environment
    its units need for that: tools with a root list of their own (uv) pointed at the system's bundle."""
    checked(["cp", "-a", "--reflink=auto", str(base), str(dest)], timeout=600)
    local = Path("/usr/local/share/ca-certificates")
    extra = sorted(local.rglob("*.crt")) if local.is_dir() else []
    for cert in extra:
        shutil.copy(cert, dest / "usr/local/share/ca-certificates" / cert.name)
    if not extra:
        return {}
    checked(["chroot", str(dest), "update-ca-certificates"], timeout=120)
    return {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}


def seed_nocloud(root: Path, user_data: bytes, meta_data: Mapping[str, str], cloud_cfg: str) -> None:
    """cloud-init's NoCloud seed (user data byte for byte, gzip or not) and a datasource config."""
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "user-data").write_bytes(user_data)
    (seed / "meta-data").write_text("".join(f"{k}: {v}\n" for k, v in meta_data.items()))
    (root / "etc/cloud/cloud.cfg.d/90-lmrun-boot-test.cfg").write_text(cloud_cfg)


def default_environment(root: Path, env: Mapping[str, str]) -> None:
    """Environment of every unit the machine's systemd starts (cloud-init's runcmd and the rendered units)."""
    conf = root / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    line = " ".join(f'"{k}={v}"' for k, v in env.items())
    (conf / "90-lmrun-boot-test.conf").write_text(f"[Manager]\nDefaultEnvironment={line}\n")


@contextlib.contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """A block device backed by ``image`` (a loop device), detached afterwards."""
    device = checked(["losetup", "--find", "--show", str(image)], timeout=30).strip()
    try:
        yield device
    finally:
        _run(["losetup", "--detach", device], timeout=30)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """``probe()``'s first truthy value within ``timeout`` seconds (AssertionError naming ``what`` otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class Machine:
    """``systemd-nspawn --boot`` of a rootfs; :meth:`run` executes inside it (its mount, pid, uts namespaces)."""

    def __init__(self, root: Path, console: Path, binds: Mapping[str, str]) -> None:
        self.root, self.console = root, console
        argv = [
            "systemd-nspawn",
            "--quiet",
            # Without these two the boot fails in a container lacking a system bus (no machined, no scope unit).
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            f"--directory={root}",
            *(f"--bind={host}:{inside}" for host, inside in binds.items()),
            "--boot",
        ]
        with console.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self.init_pid = 0
        try:
            self.init_pid = wait_for("the machine's PID 1", self._init, timeout=60, interval=0.2)
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        """True while the machine runs (AssertionError with its console once nspawn has exited)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console_tail()}")
        return True

    def _init(self) -> int | None:
        children = _children(self.proc.pid) if self.alive() else []
        return children[0] if children else None

    def console_tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self) -> str:
        """What to read when a boot goes wrong: failed units, cloud-init's output, the lmrun units' journal."""
        parts = [f"--- console ---\n{self.console_tail(30)}"]
        output = self.root / "var/log/cloud-init-output.log"
        if output.exists():
            parts.append("--- cloud-init-output.log ---\n" + "\n".join(output.read_text().splitlines()[-60:]))
        if self.proc.poll() is None:
            for argv in (
                ["systemctl", "list-units", "--failed", "--plain", "--no-legend"],
                ["journalctl", "--no-pager", "--lines=80", "--unit=lmrun-*"],
            ):
                result = self.run(argv, timeout=30)
                parts.append(f"--- {' '.join(argv)} ---\n{result.stdout}{result.stderr}")
        return "\n".join(parts)

    def run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the machine, as root, with a clean environment."""
        enter = ["nsenter", f"--target={self.init_pid}", "--mount", "--uts", "--ipc", "--pid", "--"]
        return _run([*enter, *argv], timeout, env={"PATH": CONTAINER_PATH, "LANG": "C.UTF-8"})

    def stop(self, timeout: float = 90) -> None:
        """Power off (nspawn turns SIGTERM into the container's shutdown signal); if that hangs, kill the
        machine's PID 1, which takes every process of its PID namespace with it (killing nspawn alone would
        leave them running)."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid or self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def booted(root: Path, console: Path, binds: Mapping[str, str]) -> Iterator[Machine]:
    machine = Machine(root, console, binds)
    try:
        yield machine
    finally:
        machine.stop()
