"""Real TCP across an emulated inter-region peering: 9,001-byte interfaces, an 8,500-byte path that drops
bigger packets without a word (no ICMP "fragmentation needed"), and the route a GPU node's user data sets.

Topology (every address exists only inside the namespaces this test creates)::

    main 10.64.16.10 ── m0 (9001) ═╗                       ╔═ s0 (9001) ── 10.65.16.10 spoke
                                   rm (8500) ── peering ── rs (8500)

A veth drops, at the receiving end, any frame larger than that end's MTU (``is_skb_forwardable``), before IP
sees it: the "peering" namespace never answers with ICMP, like a path AWS documents only as dropping what has
the Don't Fragment bit set. Segmentation offload is off (``gso_max_segs 1``) so every TCP segment is one packet
on the wire, as between two instances.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest

from lmrun.aws.network.mtu import INSTANCE_MTU, INTER_REGION_PEERING_MTU
from lmrun.render.cloudinit import written_files
from lmrun.render.routes import ROUTE_MTU_UNIT
from lmrun.verify.user_data import user_data_text
from tests.conftest import plan
from tests.helpers_netns import NetnsLab, missing_prerequisites, require

MAIN, SPOKE = "10.64.16.10", "10.65.16.10"  # us-east-1 and us-east-2 (AZ 1), as the address plan gives them
SIZE = 1_000_000
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{MAIN}", 7000))
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(10)
data = b""
try:
    while len(data) < {SIZE}:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.sendall(data)
except OSError:
    pass
c.close()
"""
CLIENT = f"""
import socket, sys, time
payload = (bytes(range(256)) * ({SIZE} // 256 + 1))[:{SIZE}]
for attempt in range(50):  # until the server listens
    try:
        c = socket.create_connection(("{MAIN}", 7000), timeout=5)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
got = b""
try:
    c.sendall(payload)
    while len(got) < {SIZE}:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError as exc:
    print(f"stalled after {{len(got)}} bytes back: {{exc}}")
    sys.exit(1)
print("echoed" if got == payload else f"short: {{len(got)}}")
sys.exit(0 if got == payload else 1)
"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    require(missing_prerequisites(("ip", "sysctl")), "peering MTU packet test")
    lab = NetnsLab("m")
    try:
        yield lab
    finally:
        lab.close()


def _peering(lab: NetnsLab) -> tuple[str, str]:
    main, peering, spoke = lab.ns("main"), lab.ns("peer"), lab.ns("spoke")
    lab.veth((main, "m0", f"{MAIN}/20"), (peering, "rm", "10.64.16.1/20"), mtu=INSTANCE_MTU)
    lab.veth((spoke, "s0", f"{SPOKE}/20"), (peering, "rs", "10.65.16.1/20"), mtu=INSTANCE_MTU)
    for ns, ifname in ((main, "m0"), (spoke, "s0"), (peering, "rm"), (peering, "rs")):
        lab.exec(ns, ["ip", "link", "set", ifname, "gso_max_segs", "1"])
    for ifname in ("rm", "rs"):
        lab.exec(peering, ["ip", "link", "set", ifname, "mtu", str(INTER_REGION_PEERING_MTU)])
    lab.exec(peering, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    lab.exec(main, ["ip", "route", "add", "default", "via", "10.64.16.1"])
    lab.exec(spoke, ["ip", "route", "add", "default", "via", "10.65.16.1"])
    return main, spoke


def _echo(lab: NetnsLab, main: str, spoke: str) -> subprocess.CompletedProcess[str]:
    """1 MB from the spoke to the main region and back, over one TCP connection."""
    server = subprocess.Popen(["ip", "netns", "exec", main, sys.executable, "-c", SERVER])
    try:
        return lab.exec(spoke, [sys.executable, "-c", CLIENT], check=False, timeout=40)
    finally:
        server.kill()
        server.wait(timeout=10)


def _route_command(user_data: str) -> tuple[str, list[str]]:
    """The rendered route-mtu.sh and the arguments its unit runs it with."""
    files = written_files(user_data)
    script = files["/usr/local/lib/lmrun/route-mtu.sh"]
    exec_start = next(
        line.split("=", 1)[1]
        for line in files[f"/etc/systemd/system/{ROUTE_MTU_UNIT}"].splitlines()
        if line.startswith("ExecStart=")
    )
    return script, shlex.split(exec_start)[1:]


def test_the_gpu_nodes_route_lets_tcp_cross_a_peering_that_drops_big_packets_silently(lab: NetnsLab) -> None:
    """Defect: the instances' MTU is 9,001, the inter-region peering's 8,500, TCP sets Don't Fragment: a full
    segment never arrives and the connection stalls. The route the GPU node's user data sets (in the spoke
    only) makes both directions' segments fit."""
    main, spoke = _peering(lab)
    stalled = _echo(lab, main, spoke)
    assert stalled.returncode != 0, "the emulated peering must black-hole 9,001-byte packets"

    template = plan("global").recording.named("mesh-cluster-node-qwen-use2-lt")
    script, args = _route_command(user_data_text(template) or "")
    assert args == ["10.64.0.0/10", str(INTER_REGION_PEERING_MTU)]
    for _ in range(2):  # idempotent: the timer re-runs it
        lab.exec(spoke, ["bash", "-c", script, "route-mtu.sh", *args])
    route = lab.exec(spoke, ["ip", "route", "show", "10.64.0.0/10"]).stdout
    assert "via 10.65.16.1 dev s0" in route and f"mtu {INTER_REGION_PEERING_MTU}" in route, route
    echoed = _echo(lab, main, spoke)
    assert echoed.returncode == 0 and "echoed" in echoed.stdout, echoed.stdout + echoed.stderr
