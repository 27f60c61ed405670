"""Real packets through the rendered WireGuard configs: hub and GCP-site gateways in network namespaces.

Topology (every address exists only inside the namespaces this test creates)::

    vpchost 10.64.16.20 ── main VPC (us-east-1 AZ1 /20, MTU 9001) ── 10.64.16.10 hub
    hub 203.0.113.1 ═══ "internet" veth, MTU 1500 ═══ 203.0.113.2 sitegw        (WireGuard underlay)
    sitegw .2 ── site LAN (10.128.0.0/20 in the site range, or a site's own 192.168.10.0/24; MTU 1460) ── .10 sitehost
    tunnel: hub 10.192.0.1  <->  sitegw (the site's tunnel address: 10.192.0.2, or 10.192.64.12)

Each gateway runs the **rendered bootstrap script** on the **rendered wg-quick config** (wg-quick falls back to
wireguard-go, there is no kernel module here). Only systemd is stood in for: a stub ``systemctl`` maps
``wg-quick@IF`` to ``wg-quick up IF``, and /etc/wireguard and /etc/sysctl.d are bind-mounted from a temp dir
inside the namespace's private mount namespace, so the host is never touched. The LAN hosts get the routes the
VPC route table / GCP route would give them: every AllowedIPs prefix of their gateway's peers, via the gateway.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmrun.domain.addresses import site_tunnel_address
from lmrun.render import wireguard as wg
from tests.helpers_netns import NetnsLab, missing_prerequisites, require

UNDERLAY_MTU = 1500
HUB_PUBLIC, SITE_PUBLIC = "203.0.113.1", "203.0.113.2"  # TEST-NET-3, only inside the namespaces
HUB_LAN, VPC_HOST = "10.64.16.10", "10.64.16.20"  # main VPC 10.64.0.0/16 (us-east-1)
HUB_TUNNEL = "10.192.0.1"  # tunnel pool 10.192.0.0/16
SITE_LANS = {"site-range": "10.128.0.0/20", "own-lan": "192.168.10.0/24"}
"""A site in the site range, and one on its own private network (issue 12): the same tunnel carries both."""
HANDSHAKE_TIMEOUT = 10.0

STUB_SYSTEMCTL = """#!/usr/bin/env bash
# Test stand-in for systemd inside a network namespace: wg-quick@IF maps to wg-quick up/down IF.
set -euo pipefail
case "$1" in
  is-active) exit 3 ;;
  enable) if [[ "${2:-}" == --now ]]; then exec wg-quick up "${3#wg-quick@}"; fi ;;
  restart) wg-quick down "${2#wg-quick@}" || true; exec wg-quick up "${2#wg-quick@}" ;;
  *) echo "stub systemctl: unsupported: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    require(missing_prerequisites(), "WireGuard packet test")
    lab = NetnsLab("p")
    try:
        yield lab
    finally:
        lab.close()


def _bootstrap(lab: NetnsLab, ns: str, iface: str, config: wg.Config, root: Path) -> Path:
    """Run the rendered bootstrap script on the rendered config in ``ns``; returns the fake /etc/wireguard."""
    etc_wg, sysctl_d, stub = root / "etc-wireguard", root / "sysctl.d", root / "bin"
    for d in (etc_wg, sysctl_d, stub):
        d.mkdir(parents=True)
    (stub / "systemctl").write_text(STUB_SYSTEMCTL)
    (stub / "systemctl").chmod(0o755)
    source = root / "fetched-from-secret-store.conf"
    source.write_text(wg.render_wg_quick(config))
    script = root / "bootstrap.sh"
    script.write_text(wg.render_bootstrap_script(config_path=str(source), interface=iface, install_packages=False))
    # ip netns exec gives the command a private (slave) mount namespace, so these bind mounts stay inside it.
    runner = 'mount --bind "$1" /etc/wireguard && mount --bind "$2" /etc/sysctl.d && PATH="$3:$PATH" exec bash "$4"'
    proc = lab.exec(
        ns, ["bash", "-c", runner, "_", str(etc_wg), str(sysctl_d), str(stub), str(script)], check=False, timeout=30
    )
    assert proc.returncode == 0, f"bootstrap in {ns} failed:\n{proc.stdout}\n{proc.stderr}"
    return etc_wg


def _routes_via(lab: NetnsLab, ns: str, gateway: str, config: wg.Config) -> None:
    """What the VPC route table / GCP route does for a LAN host: the gateway's peers' prefixes via it."""
    for peer in config.peers:
        for cidr in peer.allowed_ips:
            lab.exec(ns, ["ip", "route", "add", cidr, "via", gateway])


def _wait_for_handshake(lab: NetnsLab, ns: str, iface: str) -> float:
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    start = time.monotonic()
    while time.monotonic() < deadline:
        out = lab.exec(ns, ["wg", "show", iface, "latest-handshakes"]).stdout.split()
        if len(out) >= 2 and out[1] != "0":
            return time.monotonic() - start
        time.sleep(0.1)
    dump = lab.exec(ns, ["wg", "show", iface], check=False).stdout
    pytest.fail(f"no WireGuard handshake on {ns}/{iface} within {HANDSHAKE_TIMEOUT}s:\n{dump}")


def _ping(lab: NetnsLab, ns: str, dst: str, *, size: int | None = None, count: int = 2) -> tuple[int, str]:
    args = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-w", "5"]
    if size is not None:
        args += ["-M", "do", "-s", str(size)]
    proc = lab.exec(ns, [*args, dst], check=False, timeout=10)
    return proc.returncode, proc.stdout + proc.stderr


def _frag_creates(lab: NetnsLab, ns: str) -> int:
    """IP fragments this namespace created (per-netns /proc/net/snmp): wireguard-go's UDP socket lives in the
    gateway's namespace, so an encapsulated packet too big for the underlay shows up here."""
    lines = [line.split() for line in lab.exec(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    header, values = (row for row in lines if row and row[0] == "Ip:")
    return int(values[header.index("FragCreates")])


@pytest.mark.parametrize("site_lan", SITE_LANS.values(), ids=SITE_LANS.keys())
def test_rendered_configs_carry_packets_between_main_vpc_and_gcp_site(
    lab: NetnsLab, tmp_path: Path, site_lan: str
) -> None:
    lan = ipaddress.IPv4Network(site_lan)
    site_gw_lan, site_host = str(lan.network_address + 2), str(lan.network_address + 10)
    site_tunnel = str(site_tunnel_address(lan))
    hub_ns, vpc_ns, gw_ns, site_ns = (lab.ns(r) for r in ("hub", "vpchost", "sitegw", "sitehost"))
    lab.veth((hub_ns, "inet0", f"{HUB_PUBLIC}/24"), (gw_ns, "inet0", f"{SITE_PUBLIC}/24"), mtu=UNDERLAY_MTU)
    lab.veth((hub_ns, "vpc0", f"{HUB_LAN}/20"), (vpc_ns, "eth0", f"{VPC_HOST}/20"), mtu=9001)
    lab.veth(
        (gw_ns, "lan0", f"{site_gw_lan}/{lan.prefixlen}"), (site_ns, "eth0", f"{site_host}/{lan.prefixlen}"), mtu=1460
    )

    mtu = wg.mtu_for_path(UNDERLAY_MTU)
    hub_key = wg.private_key_from_bytes(os.urandom(32))
    site_key = wg.private_key_from_bytes(os.urandom(32))
    hub = wg.hub_config(
        private_key=hub_key,
        tunnel_address=HUB_TUNNEL,
        sites=[wg.SitePeer("gcp-a", site_lan, site_tunnel, wg.public_key(site_key))],
        mtu=mtu,
    )
    site = wg.site_config(
        private_key=site_key,
        tunnel_address=site_tunnel,
        hub_public_key=wg.public_key(hub_key),
        hub_endpoint_host=HUB_PUBLIC,
        hub_tunnel_address=HUB_TUNNEL,
        mesh_cidrs=["10.64.0.0/16"],
        mtu=mtu,
        behind_nat=True,
    )
    hub_if, site_if = lab.wg_name("h"), lab.wg_name("s")
    hub_etc = _bootstrap(lab, hub_ns, hub_if, hub, tmp_path / "hub")
    site_etc = _bootstrap(lab, gw_ns, site_if, site, tmp_path / "site")

    # The script installed the config 0600 where wg-quick@ reads it, and turned forwarding on.
    for etc, iface, config in ((hub_etc, hub_if, hub), (site_etc, site_if, site)):
        installed = etc / f"{iface}.conf"
        assert installed.read_text() == wg.render_wg_quick(config)
        assert installed.stat().st_mode & 0o777 == 0o600
    for ns, iface in ((hub_ns, hub_if), (gw_ns, site_if)):
        assert lab.exec(ns, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
        assert f" mtu {mtu} " in lab.exec(ns, ["ip", "link", "show", iface]).stdout

    _routes_via(lab, vpc_ns, HUB_LAN, hub)
    _routes_via(lab, site_ns, site_gw_lan, site)

    # Handshake first (the site initiates: it has the hub's endpoint and a keepalive), then traffic.
    took = _wait_for_handshake(lab, hub_ns, hub_if)
    _wait_for_handshake(lab, gw_ns, site_if)

    rc, out = _ping(lab, vpc_ns, site_host)
    assert rc == 0, f"main-VPC host -> site host failed:\n{out}"
    rc, out = _ping(lab, site_ns, VPC_HOST)
    assert rc == 0, f"site host -> main-VPC host failed:\n{out}"

    # Largest DF payload the computed MTU allows passes both ways, and the underlay never fragments it.
    payload = wg.max_icmp_payload(mtu)
    frags = {ns: _frag_creates(lab, ns) for ns in (hub_ns, gw_ns)}
    for src, dst in ((vpc_ns, site_host), (site_ns, VPC_HOST)):
        rc, out = _ping(lab, src, dst, size=payload)
        assert rc == 0, f"DF ping with {payload} bytes {src} -> {dst} failed:\n{out}"
    assert {ns: _frag_creates(lab, ns) for ns in (hub_ns, gw_ns)} == frags, "underlay fragmented a max-size packet"

    # Control: one byte more of tunnel MTU overflows the 1500-byte underlay (so the 60-byte overhead is exact).
    lab.exec(hub_ns, ["ip", "link", "set", hub_if, "mtu", str(mtu + 1)])
    before = _frag_creates(lab, hub_ns)
    rc_control, out = _ping(lab, vpc_ns, site_host, size=payload + 1, count=1)
    overflowed = _frag_creates(lab, hub_ns) - before
    assert overflowed > 0 or rc_control != 0, f"tunnel MTU {mtu + 1} fit a {UNDERLAY_MTU} underlay?\n{out}"
    lab.exec(hub_ns, ["ip", "link", "set", hub_if, "mtu", str(mtu)])
    for ns in (vpc_ns, site_ns):
        lab.exec(ns, ["ip", "route", "flush", "cache"])

    # One byte more with DF set is refused loudly (ICMP frag-needed naming the MTU), never passed or fragmented.
    refusals = []
    for src, dst in ((vpc_ns, site_host), (site_ns, VPC_HOST)):
        rc, out = _ping(lab, src, dst, size=payload + 1)
        assert rc != 0, f"DF ping with {payload + 1} bytes {src} -> {dst} passed:\n{out}"
        assert re.search(rf"mtu ?= ?{mtu}\b", out), f"no frag-needed/message-too-long naming mtu {mtu}:\n{out}"
        refusals.append(out.strip().splitlines()[1] if len(out.strip().splitlines()) > 1 else out.strip())

    print(
        f"\nwireguard netns: handshake after {took:.2f}s; tunnel MTU {mtu} (underlay {UNDERLAY_MTU}); "
        f"DF payload {payload} passes both ways with 0 fragments; control MTU {mtu + 1}: "
        f"{overflowed} fragment(s), ping rc {rc_control}; payload {payload + 1} refused: {refusals}"
    )
