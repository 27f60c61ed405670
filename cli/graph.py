"""``lmrun plan --graph FILE``: a picture of the mesh drawn from the offline plan (SVG or PNG, matplotlib).

The main region sits in the middle (highlighted), spoke regions around it joined by their VPC peerings,
non-AWS sites joined by WireGuard tunnels to the hub gateway (dashed). Every location lists its CIDR and its
machines with the services they serve and those services' mesh node ports. Everything comes from the
report: the ``regions``, ``nodes``, ``nodePorts``, ``sites`` and ``phoenix`` exports and the machines each
readiness DaemonSet selects (which machine serves which endpoint: :class:`lmrun.verify.replicas.Replicas`).

matplotlib renders without a display or a system binary (its wheel ships the fonts), so the picture
renders the same on a laptop, in CI and in a fresh virtualenv. SVG keeps text as text (``svg.fonttype:
none``): the file can be searched for a region's name.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmrun.verify.checks import PlanReport
from lmrun.verify.replicas import Replicas

MAIN_COLOR = "#fde68a"
MAIN_EDGE = "#b45309"
SPOKE_COLOR = "#dbeafe"
SPOKE_EDGE = "#1d4ed8"
SITE_COLOR = "#dcfce7"
SITE_EDGE = "#15803d"
PEERING_COLOR = "#1d4ed8"
TUNNEL_COLOR = "#c2410c"


@dataclass
class Machine:
    """A VM of the mesh as the picture shows it."""

    name: str
    detail: str
    services: list[tuple[str, int | None]] = field(default_factory=list)


@dataclass
class Location:
    """A box of the picture: an AWS region or a non-AWS site."""

    name: str
    kind: str
    """``main``, ``spoke`` or ``site``."""
    cidr: str
    note: str = ""
    machines: list[Machine] = field(default_factory=list)

    def lines(self) -> list[str]:
        title = {"main": f"{self.name}  (main region)", "spoke": self.name, "site": f"{self.name}  (site)"}
        lines = [title[self.kind], self.cidr]
        if self.note:
            lines.append(self.note)
        for machine in self.machines:
            lines.append(f"{machine.name}: {machine.detail}" if machine.detail else machine.name)
            for service, port in machine.services:
                lines.append(f"  {service} :{port}" if port is not None else f"  {service}")
        return lines


@dataclass
class MeshPicture:
    """What the picture shows, before any drawing (tests read this)."""

    stack: str
    main: Location | None
    others: list[Location]
    node_ports: dict[str, int]
    replicas: dict[str, list[str]]
    tunnels: dict[str, str]
    """Site name -> label of its WireGuard tunnel."""


@dataclass(frozen=True)
class MeshDrawing:
    """The written file and every text label drawn in it."""

    path: Path
    labels: tuple[str, ...]


def _service_placement(report: PlanReport) -> dict[str, list[str]]:
    """Machine name -> services it serves, from the machines the readiness DaemonSets select."""
    placement: dict[str, list[str]] = defaultdict(list)
    for service, nodes in sorted(Replicas(report.snapshot).by_service().items()):
        for node in nodes:
            placement[node].append(service)
    return placement


def _str(value: Any, default: str = "") -> str:
    return str(value) if isinstance(value, str | int | float) else default


def mesh_picture(report: PlanReport) -> MeshPicture:
    """The picture's content from the plan report."""
    main_name = report.main_region
    locations: dict[str, Location] = {}
    for name, info in report.regions.items():
        kind = "main" if name == main_name or info.get("role") == "main" else "spoke"
        locations[name] = Location(name, kind, _str(info.get("cidr"), "?"))
    tunnels: dict[str, str] = {}
    for name, info in report.sites.items():
        info = info if isinstance(info, Mapping) else {}
        kind = _str(info.get("kind"), "external")
        locations[name] = Location(name, "site", _str(info.get("cidr"), "?"), note=f"kind: {kind}")
        mtu = info.get("mtu")
        tunnels[name] = "WireGuard" + (f" · MTU {mtu}" if mtu else "")

    main = locations.get(main_name) if main_name else None
    if main is not None:
        extras = ["K3s server"]
        if report.phoenix:
            extras.append("Phoenix")
        if report.sites:
            extras.append("WireGuard hub")
        main.note = " · ".join(extras)

    placement = _service_placement(report)
    ports = dict(report.node_ports)
    replicas: dict[str, list[str]] = defaultdict(list)
    placed: set[str] = set()
    for name, node in sorted(report.nodes.items()):
        capacity = "spot" if node.get("spot") else "on-demand"
        services = placement.get(name) or ([name] if name in ports else [])
        machine = Machine(name, f"{_str(node.get('instance_type'))} {capacity}".strip())
        machine.services = [(s, ports.get(s)) for s in services]
        for service in services:
            replicas[service].append(name)
        # A GCP node names its site (``site``); an AWS node its region.
        target = locations.get(_str(node.get("site"))) or locations.get(_str(node.get("region"))) or main
        if target is not None:
            target.machines.append(machine)
        placed.add(name)
    # Machines that serve endpoints but are not GPU nodes (Phoenix, clients): the hub's, unless the
    # phoenix export names another region.
    phoenix = report.phoenix if isinstance(report.phoenix, Mapping) else {}
    for name, services in sorted(placement.items()):
        if name in placed:
            continue
        region = _str(phoenix.get("region")) if name == "phoenix" else ""
        target = locations.get(region) or main
        if target is not None:
            target.machines.append(Machine(name, "", [(s, ports.get(s)) for s in services]))
        for service in services:
            replicas[service].append(name)

    others = [loc for loc in locations.values() if loc is not main]
    others.sort(key=lambda loc: (loc.kind == "site", loc.name))
    return MeshPicture(report.stack, main, others, ports, dict(replicas), tunnels)


def _port_legend(picture: MeshPicture) -> list[str]:
    lines = ["Mesh node ports (localhost:<port> on every node)"]
    for service, port in sorted(picture.node_ports.items(), key=lambda item: item[1]):
        served = ", ".join(picture.replicas.get(service, [])) or "-"
        lines.append(f"{port}  {service}  <- {served}")
    return lines


def draw_mesh(report: PlanReport, path: Path) -> MeshDrawing:
    """Draw the mesh of ``report`` into ``path`` (.svg or .png, by suffix)."""
    import matplotlib
    from matplotlib.figure import Figure

    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise ValueError(f"{path}: the graph file must end in .svg or .png")
    picture = mesh_picture(report)
    others = picture.others
    count = len(others)
    size = (8.0 if count == 0 else 10.0) if count <= 6 else min(16.0, 7.0 + 0.5 * count)
    figure = Figure(figsize=(size * 1.3, size))
    axes = figure.add_subplot()
    # Half-width and half-height of the drawing area: the ring of spokes and sites needs room.
    width, height = (1.55, 1.3) if count else (0.9, 0.6)
    axes.set_xlim(-width, width)
    axes.set_ylim(-height, height)
    axes.set_axis_off()
    labels: list[str] = []

    def text(x: float, y: float, value: str, **kwargs: Any) -> None:
        axes.text(x, y, value, **kwargs)
        labels.extend(line.strip() for line in value.splitlines() if line.strip())

    font = 10 if count <= 8 else 9
    positions: list[tuple[float, float]] = []
    for index in range(count):
        angle = math.pi / 2 - 2 * math.pi * index / count
        positions.append((1.08 * math.cos(angle), 0.95 * math.sin(angle)))

    for location, (x, y) in zip(others, positions, strict=True):
        if location.kind == "site":
            color, style, label = TUNNEL_COLOR, "--", picture.tunnels.get(location.name, "WireGuard")
        else:
            color, style, label = PEERING_COLOR, "-", "VPC peering"
        axes.plot([0, x], [0, y], color=color, linestyle=style, linewidth=1.4, zorder=1)
        text(
            0.55 * x,
            0.55 * y,
            label,
            fontsize=font - 2,
            color=color,
            ha="center",
            va="center",
            zorder=2,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )

    for location, (x, y) in zip(others, positions, strict=True):
        face, edge = (SITE_COLOR, SITE_EDGE) if location.kind == "site" else (SPOKE_COLOR, SPOKE_EDGE)
        text(
            x,
            y,
            "\n".join(location.lines()),
            fontsize=font,
            ha="center",
            va="center",
            zorder=3,
            bbox={
                "boxstyle": "round,pad=0.4",
                "facecolor": face,
                "edgecolor": edge,
                "linestyle": "--" if location.kind == "site" else "-",
            },
        )

    if picture.main is not None:
        text(
            0,
            0,
            "\n".join(picture.main.lines()),
            fontsize=font + 1,
            fontweight="bold",
            ha="center",
            va="center",
            zorder=4,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": MAIN_COLOR, "edgecolor": MAIN_EDGE, "linewidth": 2},
        )

    regions = sum(1 for loc in others if loc.kind != "site") + (1 if picture.main else 0)
    sites = sum(1 for loc in others if loc.kind == "site")
    gpu_nodes = len(report.nodes)
    text(
        -width,
        height - 0.02,
        f"lmrun mesh — stack {picture.stack}: {regions} region(s), {sites} site(s), {gpu_nodes} GPU node(s)",
        fontsize=font + 4,
        fontweight="bold",
        ha="left",
        va="top",
    )
    text(
        -width,
        height - 0.1,
        "solid: VPC peering (main ↔ spoke only)   dashed: WireGuard tunnel to the hub gateway",
        fontsize=font,
        ha="left",
        va="top",
        color="#374151",
    )
    if picture.node_ports:
        text(
            -width,
            -height + 0.02,
            "\n".join(_port_legend(picture)),
            fontsize=font,
            ha="left",
            va="bottom",
            family="monospace",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#f3f4f6", "edgecolor": "#9ca3af"},
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lmrun-mesh"}):
        metadata: dict[str, Any] = {"Date": None} if suffix == ".svg" else {}
        figure.savefig(path, format=suffix[1:], metadata=metadata, dpi=110, bbox_inches="tight")
    return MeshDrawing(path, tuple(labels))
