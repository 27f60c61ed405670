"""The human view of an offline plan: rich tables of components, the CIDR plan and counts."""

from __future__ import annotations

from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table

from lmrun.offline import PlanReport
from lmrun.testing import RecordedResource


def _component_of(resource: RecordedResource, by_urn: dict[str, RecordedResource]) -> str:
    """Name of the nearest enclosing component (the resource itself if it is one)."""
    current: RecordedResource | None = resource
    while current is not None:
        if not current.custom:
            return current.name
        current = by_urn.get(current.parent)
    return "(stack)"


def component_table(report: PlanReport) -> Table:
    by_urn = {r.urn: r for r in report.recording.resources}
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for resource in report.recording.resources:
        if resource.custom:
            groups[_component_of(resource, by_urn)][resource.type] += 1
    table = Table(title=f"Resources by component — stack {report.stack}")
    table.add_column("Component")
    table.add_column("Type")
    table.add_column("Count", justify="right")
    for component in sorted(groups):
        for index, (type_, count) in enumerate(sorted(groups[component].items())):
            table.add_row(component if index == 0 else "", type_, str(count))
    return table


def cidr_table(report: PlanReport) -> Table:
    table = Table(title="CIDR plan")
    table.add_column("Region")
    table.add_column("Role")
    table.add_column("CIDR")
    for region, info in report.regions.items():
        table.add_row(region, info["role"], info["cidr"])
    return table


def port_table(report: PlanReport) -> Table:
    table = Table(title="Mesh node ports (localhost:<port> on every node)")
    table.add_column("Service")
    table.add_column("Node port", justify="right")
    for service, port in sorted(report.node_ports.items(), key=lambda item: item[1]):
        table.add_row(service, str(port))
    return table


def fleet_table(report: PlanReport) -> Table:
    table = Table(title="GPU fleet (estimated USD/hour, us-east-1 reference prices)")
    table.add_column("Node")
    table.add_column("Region")
    table.add_column("Instance type")
    table.add_column("Capacity")
    table.add_column("USD/hour", justify="right")
    totals = {True: 0.0, False: 0.0}
    for name, node in sorted(report.nodes.items()):
        totals[bool(node["spot"])] += float(node["hourly_usd"])
        capacity = "spot" if node["spot"] else "on-demand"
        table.add_row(name, node["region"], node["instance_type"], capacity, f"{node['hourly_usd']:.4f}")
    table.add_row("spot total", "", "", "", f"{totals[True]:.4f}", style="bold")
    table.add_row("on-demand total", "", "", "", f"{totals[False]:.4f}", style="bold")
    table.add_row("fleet total", "", "", "", f"{totals[True] + totals[False]:.4f}", style="bold")
    return table


def count_table(report: PlanReport) -> Table:
    resources = report.recording.resources
    counts = Counter(r.type for r in resources if r.custom)
    table = Table(title="Counts")
    table.add_column("What")
    table.add_column("Count", justify="right")
    for type_, count in sorted(counts.items()):
        table.add_row(type_, str(count))
    table.add_row("components", str(sum(1 for r in resources if not r.custom)))
    table.add_row("total registered", str(len(resources)), style="bold")
    return table


def print_report(report: PlanReport, console: Console) -> None:
    console.print(component_table(report))
    console.print(cidr_table(report))
    if report.node_ports:
        console.print(port_table(report))
    if report.nodes:
        console.print(fleet_table(report))
    console.print(count_table(report))
