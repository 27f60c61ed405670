"""Network-namespace lab for the WireGuard tests: throwaway namespaces, veth links and wireguard-go.

Everything created here lives inside namespaces this module made (names carry the test process id, so
xdist workers never collide) and is torn down by :meth:`NetnsLab.close`, which callers run from a fixture
finalizer. Every subprocess has a timeout; nothing loops without a bound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.validators import in_ci

REQUIRED_BINARIES = ("ip", "wg", "wg-quick", "wireguard-go", "ping", "sysctl", "mount")
"""Debian: iproute2, wireguard-tools, wireguard-go, iputils-ping, procps, mount/util-linux."""

CMD_TIMEOUT = 15.0


def missing_prerequisites(binaries: Sequence[str] = REQUIRED_BINARIES) -> list[str]:
    """Why namespace tests cannot run here (empty when they can)."""
    reasons: list[str] = []
    if os.geteuid() != 0:
        reasons.append("needs root (network namespaces, tun devices)")
    tun = Path("/dev/net/tun")
    if not tun.exists():
        reasons.append("/dev/net/tun is missing")
    elif os.geteuid() == 0:
        try:
            os.close(os.open(tun, os.O_RDWR))
        except OSError as exc:
            reasons.append(f"/dev/net/tun cannot be opened ({exc})")
    reasons.extend(f"binary {name!r} not on PATH" for name in binaries if shutil.which(name) is None)
    return reasons


def require(reasons: Sequence[str], what: str) -> None:
    """Skip with the reasons on a laptop; fail under ``CI=true``, where a skipped proof is not a proof."""
    if not reasons:
        return
    message = f"{what}: " + "; ".join(reasons)
    if in_ci():
        pytest.fail(f"CI=true and prerequisites are missing for {message}", pytrace=False)
    pytest.skip(message)


def run(
    args: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout, capturing text output; ``check`` raises with stderr in the message."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(args)}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


class NetnsLab:
    """A set of namespaces named ``lm<pid><tag>-<role>``; :meth:`close` kills what runs inside and deletes them."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"lm{os.getpid()}{tag}"
        self.namespaces: list[str] = []
        self.wg_interfaces: list[str] = []

    def ns(self, role: str) -> str:
        """Create namespace for ``role`` with loopback up; returns its name."""
        name = f"{self.prefix}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.exec(name, ["ip", "link", "set", "lo", "up"])
        return name

    def wg_name(self, role: str) -> str:
        """A WireGuard interface name unique on the host: wireguard-go's UAPI socket lives in the shared
        /var/run/wireguard, so two namespaces cannot both use ``wg0``. At most 15 characters."""
        name = f"wg{os.getpid() % 10_000_000}{role}"[:15]
        self.wg_interfaces.append(name)
        return name

    def exec(
        self, ns: str, args: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *args], check=check, timeout=timeout)

    def veth(self, a: tuple[str, str, str], b: tuple[str, str, str], *, mtu: int = 1500) -> None:
        """Link ``(ns, ifname, address/prefix)`` a and b with a veth pair created directly in the namespaces."""
        (ns_a, if_a, addr_a), (ns_b, if_b, addr_b) = a, b
        run(["ip", "link", "add", if_a, "netns", ns_a, "mtu", str(mtu), "type", "veth",
             "peer", "name", if_b, "netns", ns_b, "mtu", str(mtu)])  # fmt: skip
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            self.exec(ns, ["ip", "addr", "add", addr, "dev", ifname])
            self.exec(ns, ["ip", "link", "set", ifname, "up"])

    def pids(self, ns: str) -> list[int]:
        proc = run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def close(self) -> None:
        """Stop every process left in our namespaces (wireguard-go daemons), by pid, then delete them."""
        for ns in reversed(self.namespaces):
            pids = self.pids(ns)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 3.0
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists()]
                time.sleep(0.05)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        for name in self.wg_interfaces:
            Path(f"/var/run/wireguard/{name}.sock").unlink(missing_ok=True)
            Path(f"/var/run/wireguard/{name}.name").unlink(missing_ok=True)
