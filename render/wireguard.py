"""WireGuard renderers: keys, tunnel MTU, hub/site configs, gateway bootstrap script, external join bundle.

Everything here is a pure function of plain values (strings, ints, tuples), so components can call it inside
``Output.apply`` and tests can feed the same text to the real ``wg``, ``wg-quick`` and shellcheck. Nothing
here creates resources, touches the network or reads randomness: private keys come in as bytes (in the stack,
``pulumi_random`` bytes kept secret), so a key is a deterministic function of stack state and rotating it is
a stack diff.

Topology (see docs/architecture.md): one **hub** gateway in the main region with one ``[Peer]`` per site; each
**site** gateway has exactly one ``[Peer]``, the hub. Peering is not transitive, so a site's ``AllowedIPs``
are the AWS mesh CIDRs the caller says the site may reach (normally the main region) plus the hub's tunnel
address, never other sites.

Secrets: any text rendered from a :class:`Config` contains the interface's private key; callers keep it a
Pulumi secret (``Output.secret``) end to end.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lmrun.domain.errors import InputError
from lmrun.domain.ports import WIREGUARD_PORT
from lmrun.domain.tunnels import (
    DEFAULT_UNDERLAY_MTU,
    IPV4_ICMP_ECHO_OVERHEAD,
    MAX_MTU,
    MIN_TUNNEL_MTU,
    PERSISTENT_KEEPALIVE,
    WIREGUARD_IPV4_OVERHEAD,
    tunnel_mtu,
)
from lmrun.render.script_files import render_script

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "DEFAULT_PERSISTENT_KEEPALIVE",
    "DEFAULT_UNDERLAY_MTU",
    "IPV4_ICMP_ECHO_OVERHEAD",
    "MIN_TUNNEL_MTU",
    "WIREGUARD_IPV4_OVERHEAD",
    "Config",
    "Interface",
    "JoinBundle",
    "Peer",
    "SitePeer",
    "WireGuardConfigError",
    "hub_config",
    "join_bundle",
    "max_icmp_payload",
    "mtu_for_path",
    "private_key_from_bytes",
    "public_key",
    "render_bootstrap_script",
    "render_setconf",
    "render_wg_quick",
    "site_config",
]

DEFAULT_LISTEN_PORT = WIREGUARD_PORT

DEFAULT_PERSISTENT_KEEPALIVE = PERSISTENT_KEEPALIVE

_KEY_BYTES = 32
_KEY_B64_LEN = 44
# Linux interface names (IFNAMSIZ - 1) with the characters wg-quick accepts in a config file name; the name
# is embedded in a shell script, so it must be this strict.
_IFACE_RE = re.compile(r"^[A-Za-z0-9_=+.-]{1,15}$")
_PEER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


class WireGuardConfigError(InputError):
    """A WireGuard value that would render a config ``wg`` rejects or a tunnel that cannot work."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


# --------------------------------------------------------------------------------------------------- keys


def private_key_from_bytes(raw: bytes) -> str:
    """A WireGuard private key (base64) from 32 random bytes, clamped exactly as ``wg genkey`` clamps.

    X25519 clamping (RFC 7748 §5): clear the low 3 bits of byte 0 (the scalar becomes a multiple of the
    cofactor 8, so small-subgroup points cannot leak key bits), clear bit 255 and set bit 254 of byte 31
    (a fixed top bit keeps the Montgomery ladder constant-time). ``wg genkey`` stores the key already
    clamped; X25519 clamps again on use, so clamping here changes no public key, it only makes the text
    byte-identical to what ``wg`` would show for the same secret. Pure: the randomness is the caller's (in
    the stack, ``pulumi_random`` bytes kept as a secret), so the key is stable across runs.
    """
    if not isinstance(raw, bytes | bytearray) or len(raw) != _KEY_BYTES:
        size = len(raw) if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise WireGuardConfigError("private_key", f"need exactly {_KEY_BYTES} random bytes, got {size}")
    key = bytearray(raw)
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return base64.b64encode(bytes(key)).decode("ascii")


def _decode_key(value: str, field_name: str) -> bytes:
    """The 32 raw bytes of a base64 WireGuard key; a clear error instead of ``wg``'s 'Key is not the correct
    length or format' at boot time on a VM."""
    if not isinstance(value, str) or len(value) != _KEY_B64_LEN or not value.endswith("="):
        raise WireGuardConfigError(field_name, "not a WireGuard key (44 base64 characters ending in '=')")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireGuardConfigError(field_name, f"not valid base64 ({exc})") from exc
    if len(raw) != _KEY_BYTES:
        raise WireGuardConfigError(field_name, f"decodes to {len(raw)} bytes, not {_KEY_BYTES}")
    return raw


def public_key(private_key_b64: str) -> str:
    """The X25519 public key (base64) of a WireGuard private key: what ``wg pubkey`` prints.

    Pure, so the stack can derive the hub's public key from its secret private key inside ``apply`` and
    publish only the public half (which is not secret) to the sites' configs.
    """
    raw = _decode_key(private_key_b64, "private_key")
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(pub).decode("ascii")


# ---------------------------------------------------------------------------------------------------- MTU


def _validate_mtu(mtu: int, field_name: str) -> int:
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise WireGuardConfigError(field_name, f"must be an integer, got {mtu!r}")
    if mtu < MIN_TUNNEL_MTU:
        raise WireGuardConfigError(field_name, f"tunnel MTU {mtu} is below {MIN_TUNNEL_MTU} (IPv6 minimum link MTU)")
    if mtu > MAX_MTU:
        raise WireGuardConfigError(field_name, f"tunnel MTU {mtu} is above {MAX_MTU}")
    return mtu


def mtu_for_path(underlay_mtu: int = DEFAULT_UNDERLAY_MTU) -> int:
    """The tunnel MTU that fits one WireGuard packet in one underlay packet: ``underlay_mtu - 60``.

    Set on both ends so neither side sends inner packets the other's path must fragment (fragmented UDP is
    dropped by many NATs and firewalls, which looks like a tunnel that only carries small packets). 60 is
    the IPv4 overhead; an IPv6 underlay would need 80. Raises :class:`WireGuardConfigError` (a
    ``ValueError``) naming the value when the result is below 1280.
    """
    if isinstance(underlay_mtu, bool) or not isinstance(underlay_mtu, int):
        raise WireGuardConfigError("underlay_mtu", f"must be an integer, got {underlay_mtu!r}")
    tunnel = tunnel_mtu(underlay_mtu)
    if tunnel < MIN_TUNNEL_MTU:
        raise WireGuardConfigError(
            "underlay_mtu",
            f"underlay MTU {underlay_mtu} leaves a tunnel MTU of {tunnel}, below {MIN_TUNNEL_MTU} "
            f"(needs an underlay of at least {MIN_TUNNEL_MTU + WIREGUARD_IPV4_OVERHEAD})",
        )
    return _validate_mtu(tunnel, "underlay_mtu")


def max_icmp_payload(tunnel_mtu: int) -> int:
    """The largest ``ping -M do -s N`` payload an IPv4 tunnel of this MTU carries unfragmented."""
    return _validate_mtu(tunnel_mtu, "mtu") - IPV4_ICMP_ECHO_OVERHEAD


# -------------------------------------------------------------------------------------------- data model


def _network(value: str, field_name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError) as exc:
        raise WireGuardConfigError(field_name, f"{value!r} is not a CIDR with host bits clear ({exc})") from exc


def _address(value: str, field_name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except (TypeError, ValueError) as exc:
        raise WireGuardConfigError(field_name, f"{value!r} is not an IP address") from exc


def _port(value: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise WireGuardConfigError(field_name, f"{value!r} is not a UDP port (1..65535)")
    return value


def _sorted_cidrs(values: Iterable[str], field_name: str) -> tuple[str, ...]:
    """Deduplicated CIDRs in address order, so the rendered text never depends on input order."""
    nets = {_network(v, field_name) for v in values}
    return tuple(str(n) for n in sorted(nets, key=lambda n: (n.version, n.network_address, n.prefixlen)))


def _endpoint(value: str, field_name: str) -> str:
    """``host:port`` with IPv6 hosts bracketed; hostnames allowed (wg resolves them once, at setconf)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise WireGuardConfigError(field_name, f"{value!r} is not host:port")
    _port(int(port), field_name)
    if host.startswith("[") and host.endswith("]"):
        if _address(host[1:-1], field_name).version != 6:
            raise WireGuardConfigError(field_name, f"{value!r}: only IPv6 addresses go in brackets")
    elif not _HOST_RE.match(host) or ":" in host:
        raise WireGuardConfigError(field_name, f"{value!r}: bad host {host!r}")
    return value


def _format_endpoint(host: str, port: int, field_name: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return _endpoint(f"[{host}]:{port}", field_name)
    except ValueError:
        pass
    return _endpoint(f"{host}:{port}", field_name)


def _single_line(values: Iterable[str], field_name: str) -> tuple[str, ...]:
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v.strip() or "\n" in v or "\r" in v:
            raise WireGuardConfigError(field_name, f"{v!r} must be one non-empty line")
    return out


@dataclass(frozen=True)
class Interface:
    """The ``[Interface]`` section: this gateway's own key, tunnel address and wg-quick options."""

    private_key: str
    """Base64 private key (secret)."""
    address: str
    """Tunnel address with prefix, e.g. ``10.192.0.1/32`` (wg-quick only)."""
    listen_port: int | None = None
    """UDP port; ``None`` lets WireGuard pick one (fine for a side that always initiates)."""
    mtu: int | None = None
    """Tunnel MTU (wg-quick only); from :func:`mtu_for_path`."""
    table_off: bool = False
    """``Table = off``: wg-quick adds no routes for AllowedIPs (the caller routes, e.g. in ``post_up``)."""
    post_up: tuple[str, ...] = ()
    """``PostUp`` commands (wg-quick runs them with bash after the interface is up)."""
    post_down: tuple[str, ...] = ()
    """``PostDown`` commands, the undo of ``post_up``."""

    def __post_init__(self) -> None:
        _decode_key(self.private_key, "interface.private_key")
        try:
            ipaddress.ip_interface(self.address)
        except (TypeError, ValueError) as exc:
            raise WireGuardConfigError("interface.address", f"{self.address!r} is not address/prefix") from exc
        if "/" not in self.address:
            raise WireGuardConfigError("interface.address", f"{self.address!r} needs a prefix length")
        if self.listen_port is not None:
            _port(self.listen_port, "interface.listen_port")
        if self.mtu is not None:
            _validate_mtu(self.mtu, "interface.mtu")
        object.__setattr__(self, "post_up", _single_line(self.post_up, "interface.post_up"))
        object.__setattr__(self, "post_down", _single_line(self.post_down, "interface.post_down"))


@dataclass(frozen=True)
class Peer:
    """One ``[Peer]`` section; ``name`` is the stable key peers are sorted by and is rendered as a comment."""

    name: str
    public_key: str
    allowed_ips: tuple[str, ...]
    """CIDRs routed to this peer and accepted from it (cryptokey routing); sorted and deduplicated."""
    endpoint: str | None = None
    """``host:port``; ``None`` for a peer behind NAT, whose endpoint WireGuard learns from its packets."""
    persistent_keepalive: int | None = None
    """Seconds; set on the side behind NAT so its mapping stays open for the other side's packets."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PEER_NAME_RE.match(self.name):
            raise WireGuardConfigError("peer.name", f"{self.name!r}: letters, digits, '_', '.', '-' (max 63)")
        where = f"peers[{self.name}]"
        _decode_key(self.public_key, f"{where}.public_key")
        if isinstance(self.allowed_ips, str):
            raise WireGuardConfigError(f"{where}.allowed_ips", "must be a sequence of CIDRs, not one string")
        cidrs = _sorted_cidrs(self.allowed_ips, f"{where}.allowed_ips")
        if not cidrs:
            raise WireGuardConfigError(f"{where}.allowed_ips", "empty: the peer could send and receive nothing")
        object.__setattr__(self, "allowed_ips", cidrs)
        if self.endpoint is not None:
            _endpoint(self.endpoint, f"{where}.endpoint")
        if self.persistent_keepalive is not None and (
            isinstance(self.persistent_keepalive, bool)
            or not isinstance(self.persistent_keepalive, int)
            or not 1 <= self.persistent_keepalive <= 65535
        ):
            raise WireGuardConfigError(
                f"{where}.persistent_keepalive", f"{self.persistent_keepalive!r} is not 1..65535 seconds"
            )


@dataclass(frozen=True)
class Config:
    """A whole WireGuard config; peers are kept sorted by name so the text is independent of input order
    (a reordered site list must not change the hub's config, its hash, or trigger a replacement)."""

    interface: Interface
    peers: tuple[Peer, ...] = field(default=())

    def __post_init__(self) -> None:
        peers = tuple(sorted(self.peers, key=lambda p: p.name))
        object.__setattr__(self, "peers", peers)
        own = public_key(self.interface.private_key)
        seen_names: set[str] = set()
        seen_keys: dict[str, str] = {}
        owners: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for peer in peers:
            where = f"peers[{peer.name}]"
            if peer.name in seen_names:
                raise WireGuardConfigError(where, "duplicate peer name")
            seen_names.add(peer.name)
            # wg merges sections with one public key, so two sites sharing a key would silently become one.
            if peer.public_key in seen_keys:
                raise WireGuardConfigError(
                    f"{where}.public_key", f"same public key as peer {seen_keys[peer.public_key]!r}"
                )
            seen_keys[peer.public_key] = peer.name
            if peer.public_key == own:
                raise WireGuardConfigError(f"{where}.public_key", "is this interface's own public key")
            # Cryptokey routing gives an overlapping prefix to whichever peer is set last: refuse instead.
            for cidr in peer.allowed_ips:
                net = ipaddress.ip_network(cidr)
                for other_net, other in owners:
                    if net.overlaps(other_net):
                        raise WireGuardConfigError(
                            f"{where}.allowed_ips", f"{net} overlaps {other_net} of peer {other!r}"
                        )
            owners.extend((ipaddress.ip_network(c), peer.name) for c in peer.allowed_ips)


# ---------------------------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class SitePeer:
    """What the hub knows about one site: its name (stable key), LAN CIDR, tunnel address and public key."""

    name: str
    cidr: str
    """The site's own network (any private range the mesh does not use)."""
    tunnel_address: str
    """The site gateway's tunnel address, from the tunnel pool (10.192.0.0/16)."""
    public_key: str
    endpoint: str | None = None
    """``host:port`` when the site gateway is reachable; usually ``None`` (the site initiates)."""


def _host_cidr(address: str, field_name: str) -> str:
    addr = _address(address, field_name)
    return f"{addr}/{addr.max_prefixlen}"


def hub_config(
    *,
    private_key: str,
    tunnel_address: str,
    sites: Iterable[SitePeer],
    mtu: int,
    listen_port: int = DEFAULT_LISTEN_PORT,
    table_off: bool = False,
    post_up: Iterable[str] = (),
    post_down: Iterable[str] = (),
) -> Config:
    """The hub gateway's config: one peer per site, ``AllowedIPs`` = the site's CIDR + its tunnel address.

    The hub has an Elastic IP and an open UDP port, so it needs neither endpoints nor keepalives for sites
    behind NAT: it answers whatever address a site's handshake comes from. With ``table_off=False`` wg-quick
    routes each site's AllowedIPs into the tunnel, which is all the hub needs besides ``ip_forward``.
    """
    peers = tuple(
        Peer(
            name=site.name,
            public_key=site.public_key,
            allowed_ips=(site.cidr, _host_cidr(site.tunnel_address, f"sites[{site.name}].tunnel_address")),
            endpoint=site.endpoint,
        )
        for site in sites
    )
    return Config(
        interface=Interface(
            private_key=private_key,
            address=_host_cidr(tunnel_address, "tunnel_address"),
            listen_port=listen_port,
            mtu=mtu,
            table_off=table_off,
            post_up=tuple(post_up),
            post_down=tuple(post_down),
        ),
        peers=peers,
    )


def site_config(
    *,
    private_key: str,
    tunnel_address: str,
    hub_public_key: str,
    hub_endpoint_host: str,
    hub_tunnel_address: str,
    mesh_cidrs: Iterable[str],
    mtu: int,
    hub_listen_port: int = DEFAULT_LISTEN_PORT,
    listen_port: int | None = DEFAULT_LISTEN_PORT,
    behind_nat: bool = True,
    table_off: bool = False,
    post_up: Iterable[str] = (),
    post_down: Iterable[str] = (),
) -> Config:
    """A site gateway's config: one peer, the hub, ``AllowedIPs`` = ``mesh_cidrs`` + the hub tunnel address.

    ``mesh_cidrs`` are the AWS ranges this site may reach; with non-transitive peering that is the main
    region's VPC (a spoke's CIDR here would route packets the hub cannot deliver). ``behind_nat`` adds
    ``PersistentKeepalive = 25`` so the site keeps its NAT mapping open and the hub can reach it first.
    The site always initiates (it knows the hub's Elastic IP), so the handshake needs no inbound rule there.
    """
    hub_tunnel = _host_cidr(hub_tunnel_address, "hub_tunnel_address")
    if isinstance(mesh_cidrs, str):
        raise WireGuardConfigError("mesh_cidrs", "must be a sequence of CIDRs, not one string")
    cidrs = tuple(mesh_cidrs)
    if not cidrs:
        raise WireGuardConfigError("mesh_cidrs", "empty: the site could reach nothing in AWS")
    hub = Peer(
        name="hub",
        public_key=hub_public_key,
        allowed_ips=(*cidrs, hub_tunnel),
        endpoint=_format_endpoint(hub_endpoint_host, _port(hub_listen_port, "hub_listen_port"), "hub_endpoint"),
        persistent_keepalive=DEFAULT_PERSISTENT_KEEPALIVE if behind_nat else None,
    )
    return Config(
        interface=Interface(
            private_key=private_key,
            address=_host_cidr(tunnel_address, "tunnel_address"),
            listen_port=listen_port,
            mtu=mtu,
            table_off=table_off,
            post_up=tuple(post_up),
            post_down=tuple(post_down),
        ),
        peers=(hub,),
    )


# ------------------------------------------------------------------------------------------------ render

_HEADER = "# Rendered by lmrun (lmrun.render.wireguard). Holds a private key: keep it secret, mode 0600.\n"


def _render(config: Config, *, wg_quick: bool) -> str:
    iface = config.interface
    lines = [_HEADER.rstrip("\n"), "[Interface]"]
    if wg_quick:
        lines.append(f"Address = {iface.address}")
    if iface.listen_port is not None:
        lines.append(f"ListenPort = {iface.listen_port}")
    lines.append(f"PrivateKey = {iface.private_key}")
    if wg_quick:
        if iface.mtu is not None:
            lines.append(f"MTU = {iface.mtu}")
        if iface.table_off:
            lines.append("Table = off")
        lines.extend(f"PostUp = {cmd}" for cmd in iface.post_up)
        lines.extend(f"PostDown = {cmd}" for cmd in iface.post_down)
    for peer in config.peers:
        lines += ["", f"# peer: {peer.name}", "[Peer]", f"PublicKey = {peer.public_key}"]
        lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
        if peer.endpoint is not None:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.persistent_keepalive is not None:
            lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
    return "\n".join(lines) + "\n"


def render_wg_quick(config: Config) -> str:
    """The wg-quick form (``/etc/wireguard/wg0.conf``): adds Address, MTU, Table and PostUp/PostDown."""
    return _render(config, wg_quick=True)


def render_setconf(config: Config) -> str:
    """The ``wg setconf`` form: wg rejects wg-quick-only keys (Address, MTU, Table, PostUp, ...), so this
    omits them; the caller then sets address, MTU and routes with ``ip``."""
    return _render(config, wg_quick=False)


def render_bootstrap_script(
    *,
    config_path: str,
    interface: str = "wg0",
    install_packages: bool = True,
    relative_to_script: bool = False,
    description: str = "WireGuard gateway",
) -> str:
    """A bash script that turns a Linux VM into a gateway: forwarding on, config installed, tunnel up.

    The script never contains key material: it copies the config from ``config_path`` (``$1`` overrides it),
    which the caller fetched from the secret store, so the script itself can live in plain user data or a
    join bundle. Re-running it is safe and applies a changed config (key rotation) by restarting the unit.
    ``relative_to_script`` resolves a relative ``config_path`` against the script's own folder (a join
    bundle's two files lie side by side; operators rarely run the script from that folder).
    """
    if not isinstance(interface, str) or not _IFACE_RE.match(interface):
        raise WireGuardConfigError(
            "interface", f"{interface!r} is not a valid interface name (1..15 of [A-Za-z0-9_=+.-])"
        )
    if not isinstance(config_path, str) or not config_path or "\n" in config_path or "\x00" in config_path:
        raise WireGuardConfigError("config_path", f"{config_path!r} is not a file path")
    if "\n" in description:
        raise WireGuardConfigError("description", "must be one line")
    next_to_script = relative_to_script and not config_path.startswith("/")
    return render_script(
        "wireguard-bootstrap.sh",
        {
            "IFACE": interface,
            "CONFIG_PATH": config_path,
            "CONFIG_NEXT_TO_SCRIPT": "1" if next_to_script else "0",
            "INSTALL_PACKAGES": "1" if install_packages else "0",
        },
        note=f"Rendered by lmrun (lmrun.render.wireguard): {description}.",
    )


@dataclass(frozen=True)
class JoinBundle:
    """What an operator copies to an external site's gateway: the config (secret) and the script (not)."""

    config: str
    """wg-quick config text; contains the site's private key."""
    bootstrap: str
    """Bootstrap script; installs ``config_filename`` from its own directory unless given a path."""
    config_filename: str
    script_filename: str


def join_bundle(site_name: str, config: Config, *, interface: str = "wg0") -> JoinBundle:
    """The external-site join bundle: ``(wg-quick config, bootstrap script)`` plus suggested file names.

    The script defaults to the config lying next to it, so ``sudo bash <site>-bootstrap.sh`` works in the
    folder where ``lmrun join-bundle`` wrote both files.
    """
    if not isinstance(site_name, str) or not _PEER_NAME_RE.match(site_name):
        raise WireGuardConfigError("site_name", f"{site_name!r}: letters, digits, '_', '.', '-' (max 63)")
    config_filename = f"{site_name}-{interface}.conf"
    script = render_bootstrap_script(
        config_path=config_filename,
        interface=interface,
        relative_to_script=True,
        description=f"external site {site_name} gateway",
    )
    return JoinBundle(
        config=render_wg_quick(config),
        bootstrap=script,
        config_filename=config_filename,
        script_filename=f"{site_name}-bootstrap.sh",
    )
