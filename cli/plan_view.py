"""The human view of an offline plan: rich tables of components, the CIDR plan, node ports, the GPU fleet,
the cost estimate, the reachability of every planned path (model and resources), who can read each secret,
policy violations and counts."""

from __future__ import annotations

import os
import sys
from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table

from lmrun.aws import prices
from lmrun.policy.rules import MANDATORY
from lmrun.verify.access import UNDECIDED
from lmrun.verify.checks import PlanReport
from lmrun.verify.contracts import ContractResult
from lmrun.verify.cost import CONTROLLER_BASIS
from lmrun.verify.reachability import NOT_MODELLED
from lmrun.verify.resources import Resource

PIPE_WIDTH = 1000
"""Columns of output that is not a terminal: rich would otherwise lay every table out in 80 columns and cut
its cells (``lmrun plan | less``, a CI log); ``COLUMNS`` still wins when set."""


def output_console() -> Console:
    """A console for stdout: a terminal's own width, or :data:`PIPE_WIDTH` when piped or redirected."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=PIPE_WIDTH)


def _component_of(resource: Resource, by_urn: dict[str, Resource]) -> str:
    """Name of the nearest enclosing component (the resource itself if it is one)."""
    current: Resource | None = resource
    while current is not None:
        if not current.custom:
            return current.name
        current = by_urn.get(current.parent)
    return "(stack)"


def component_table(report: PlanReport) -> Table:
    by_urn = report.snapshot.by_urn
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for resource in report.snapshot.resources:
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
    """Every network of the mesh: its AWS regions, then its sites."""
    table = Table(title="CIDR plan")
    table.add_column("Region or site")
    table.add_column("Role")
    table.add_column("CIDR")
    for region, info in report.regions.items():
        table.add_row(region, info["role"], info["cidr"])
    for site, info in sorted(report.sites.items()):
        table.add_row(site, f"site ({info.get('kind', '?')})", str(info.get("cidr", "?")))
    return table


def port_table(report: PlanReport) -> Table:
    table = Table(title="Mesh node ports (localhost:<port> on every node)")
    table.add_column("Service")
    table.add_column("Node port", justify="right")
    for service, port in sorted(report.node_ports.items(), key=lambda item: item[1]):
        table.add_row(service, str(port))
    return table


def fleet_table(report: PlanReport) -> Table:
    table = Table(title="GPU fleet (estimated USD/hour: each cloud's catalog, AWS at us-east-1 reference prices)")
    table.add_column("Node")
    table.add_column("Region")
    table.add_column("Instance type")
    table.add_column("Capacity")
    table.add_column("Offerings")
    table.add_column("USD/hour", justify="right")
    totals = {True: 0.0, False: 0.0}
    for name, node in sorted(report.nodes.items()):
        totals[bool(node["spot"])] += float(node["hourly_usd"])
        capacity = "spot" if node["spot"] else "on-demand"
        # `recorded` (lmrun:offerings) or `catalog`; a state exported before this was recorded carries none.
        source = str(node.get("offerings", "?"))
        table.add_row(name, node["region"], node["instance_type"], capacity, source, f"{node['hourly_usd']:.4f}")
    table.add_row("spot total", "", "", "", "", f"{totals[True]:.4f}", style="bold")
    table.add_row("on-demand total", "", "", "", "", f"{totals[False]:.4f}", style="bold")
    table.add_row("fleet total", "", "", "", "", f"{totals[True] + totals[False]:.4f}", style="bold")
    return table


def group_table(report: PlanReport) -> Table:
    """Each replica group's replicas (where its policy put them and why), then every location it tried with its
    room (the quota arithmetic, or why it cannot run the group), then the decision."""
    table = Table(title="Replica groups (placed at plan time; room: replicas a location can still take)")
    table.add_column("Group")
    table.add_column("Policy")
    table.add_column("Replica")
    table.add_column("Location")
    table.add_column("Why", overflow="fold")
    for name, group in sorted(report.groups.items()):
        replicas = group.get("replicas") or []
        used = {replica["location"] for replica in replicas}
        first = True
        for replica in replicas:
            table.add_row(
                name if first else "",
                str(group.get("policy")) if first else "",
                replica["name"],
                replica["location"],
                replica["reason"],
            )
            first = False
        for tried in group.get("tried") or []:
            bound = "unbounded" if tried["room"] is None else tried["room"]
            room = "cannot run it" if not tried["usable"] else f"room {bound}"
            unused = "" if tried["location"] in used else ", not used"
            table.add_row(name if first else "", "", "(tried)", tried["location"], f"{room}{unused}: {tried['reason']}")
            first = False
        table.add_row("", "", "", "", f"decision: {group.get('decision')}", style="bold")
    return table


def reachability_table(report: PlanReport) -> Table:
    paths = report.reachability
    mismatches = len(report.reachability_mismatches)
    table = Table(
        title="Reachability: the topology model and the recorded network (routes, peering, security groups, "
        "firewalls, WireGuard AllowedIPs; no NACLs are declared)"
        + (f" — {mismatches} disagreement(s)" if mismatches else "")
    )
    table.add_column("From")
    table.add_column("To")
    table.add_column("Node port", justify="right")
    table.add_column("VM port", justify="right")
    table.add_column("Model")
    table.add_column("Resources")
    table.add_column("Why (resources)")
    node_ports = report.node_ports
    for path in paths:
        resources = path.get("resources_ok")
        style = "bold red" if resources is not None and resources != path["ok"] else None
        # Clients dial the service's node port on localhost; the packets cross the mesh to the VM port.
        node_port = node_ports.get(str(path["to"]))
        table.add_row(
            str(path["from"]),
            str(path["to"]),
            "-" if node_port is None else str(node_port),
            str(path["port"]),
            "ok" if path["ok"] else "refused",
            "?" if resources is None else "ok" if resources else "blocked",
            str(path.get("resources_reason", "")),
            style=style,
        )
    return table


def elastic_paths_table(report: PlanReport) -> Table:
    """Each hop of each elastic service's node-port path (clients to SkyServe's load balancer, the controller to
    the K3s API, the spot regions and the GPU pool), walked through the recorded network."""
    blocked = sum(1 for verdict in report.elastic_paths if verdict.ok is False)
    table = Table(
        title="Elastic services: localhost:<node port> -> SkyServe's load balancer -> replicas, through the recorded "
        "network" + (f" — {blocked} blocked" if blocked else "")
    )
    for column in ("Service", "Node port", "Hop", "From", "To", "TCP", "Resources", "Why"):
        table.add_column(column, justify="right" if column in ("Node port", "TCP") else "left")
    exported = report.outputs.get("elasticPaths") or {}
    for verdict in report.elastic_paths:
        node_port = (exported.get(verdict.service) or {}).get("nodePort")
        table.add_row(
            verdict.service,
            "-" if node_port is None else str(node_port),
            verdict.hop,
            verdict.source,
            verdict.target,
            verdict.ports,
            "?" if verdict.ok is None else "ok" if verdict.ok else "blocked",
            verdict.reason,
            style="bold red" if verdict.ok is False else None,
        )
    return table


def access_view(report: PlanReport) -> Table:
    """Who can read and write each secret, computed from the resources (``?``: the source cannot tell)."""
    table = Table(
        title="Who can read what: each secret's readers and writers, from the recorded IAM policies and bindings "
        "(checked against lmrun.domain.access)"
    )
    table.add_column("Secret", no_wrap=True)
    table.add_column("Store")
    table.add_column("Readers", overflow="fold")
    table.add_column("Writers", overflow="fold")
    for row in report.access.rows:
        listed = row.to_json()
        style = "yellow" if UNDECIDED in listed["readers"] + listed["writers"] else None
        table.add_row(row.name, row.store, ", ".join(listed["readers"]), ", ".join(listed["writers"]), style=style)
    return table


_COST_LABELS = {
    "fabric": "fabric",
    "control_plane": "control plane",
    "gpu_extras": "GPU disks + IPs",
    "flow_logs": "flow logs",
    "nat": "NAT gateways",
}


def cost_items_table(report: PlanReport) -> Table:
    cost = report.cost
    table = Table(title="Priced resources (USD/month)")
    table.add_column("Part")
    table.add_column("Resource")
    table.add_column("What")
    table.add_column("USD/month", justify="right")
    for item in sorted(cost.items, key=lambda i: (list(_COST_LABELS).index(i.category), i.resource)):
        table.add_row(_COST_LABELS[item.category], item.resource, item.what, f"{item.monthly_usd:.2f}")
    for entry in cost.unpriced:
        table.add_row("not priced", "", entry, "?", style="yellow")
    return table


def cost_table(report: PlanReport) -> Table:
    cost = report.cost
    hours = prices.HOURS_PER_MONTH
    table = Table(
        title=f"Estimated cost — {cost.price_region} list prices, snapshot {cost.snapshot} "
        "(estimates; data transfer and S3 usage not included)"
    )
    table.add_column("Part")
    table.add_column("USD", justify="right")
    table.add_column("Per")
    table.add_column("Covers")
    table.add_row(
        "fabric",
        f"{cost.fabric_monthly_usd:.2f}",
        "month",
        "TGW/VPN/endpoints; VPCs, subnets, routes, SGs, peering: $0",
    )
    table.add_row(
        "control plane", f"{cost.control_plane_monthly_usd:.2f}", "month", "non-GPU VMs, their EBS and public IPv4"
    )
    table.add_row("GPU fleet, spot", f"{cost.gpu_hourly_usd_spot:.4f}", "hour", "spot GPU instances")
    table.add_row("GPU fleet, on-demand", f"{cost.gpu_hourly_usd_on_demand:.4f}", "hour", "on-demand GPU instances")
    table.add_row(
        "GPU fleet",
        f"{cost.gpu_hourly_usd:.4f}",
        "hour",
        f"≈ {cost.gpu_hourly_usd * hours:.2f}/month always on",
        style="bold",
    )
    table.add_row("GPU disks + IPs", f"{cost.gpu_extras_hourly_usd:.4f}", "hour", "root volumes, public IPv4")
    for elastic in cost.elastic:
        table.add_row(f"elastic {elastic.name}, baseline", f"{elastic.baseline_usd_hour:.4f}", "hour", elastic.basis)
        table.add_row(
            f"elastic {elastic.name}, at max",
            f"{elastic.max_usd_hour:.4f}",
            "hour",
            f"spot {elastic.max_spot_usd_hour:.4f} + on-demand {elastic.max_on_demand_usd_hour:.4f}",
            style="bold",
        )
    if cost.elastic:
        table.add_row("SkyServe controller", f"{cost.elastic_controller_usd_hour:.4f}", "hour", CONTROLLER_BASIS)
    backup = cost.phoenix_backup
    if backup is not None:
        table.add_row(
            "Phoenix backups (S3)",
            f"{backup.usd_month_per_gb:.2f}",
            "month per GB",
            f"{backup.copies} copies of the gzipped database (every {backup.interval_minutes} min, kept "
            f"{backup.retention_days} d); ≤ {backup.usd_month_at_volume_size:.2f}/month if it filled its "
            f"{backup.volume_gb} GB volume",
        )
    flow_logs = cost.flow_logs
    if flow_logs is not None:
        table.add_row(
            "flow logs",
            f"{cost.flow_logs_monthly_usd:.2f}",
            "month",
            f"{flow_logs.networks} networks, {flow_logs.vms} VMs x {flow_logs.monthly_gb_per_vm:g} GB/month assumed "
            f"({flow_logs.source}); S3 delivery + {flow_logs.retention_days} d storage, Cloud Logging ingestion",
        )
    nat = cost.nat
    if nat is not None:
        table.add_row(
            "NAT gateways",
            f"{cost.nat_monthly_usd:.2f}",
            "month",
            f"{nat.gateways} gateway(s) of the private subnets (SkyPilot): ${prices.NAT_GATEWAY_USD_HOUR}/h + "
            f"Elastic IP + {nat.monthly_gb_per_gateway:g} GB/month each at ${prices.NAT_GATEWAY_USD_GB}/GB assumed "
            f"({nat.source})",
        )
    return table


def violation_table(report: PlanReport) -> Table:
    mandatory = len(report.mandatory_violations)
    table = Table(
        title=f"Policy pack: {len(report.violations)} violation(s), {mandatory} mandatory"
        + (" — the plan fails (exit 3)" if mandatory else "")
    )
    table.add_column("Level", no_wrap=True)
    table.add_column("Policy", no_wrap=True)
    table.add_column("Resource", overflow="fold")
    table.add_column("Message")
    for violation in sorted(report.violations, key=lambda v: (v.level != MANDATORY, v.policy, v.resource)):
        style = "bold red" if violation.level == MANDATORY else "yellow"
        # The JSON keeps the full URN; the table shows the resource's name (the URN's last part).
        name = violation.resource.rsplit("::", 1)[-1]
        table.add_row(violation.level, violation.policy, name, violation.message, style=style)
    return table


def _largest(results: list[ContractResult]) -> ContractResult:
    """The row nearest its limit: the largest measured value (a count or a text when none is a number)."""
    measured = [r for r in results if isinstance(r.value, int | float) and not isinstance(r.value, bool)]
    return max(measured, key=lambda r: r.value) if measured else results[0]


def contract_table(report: PlanReport) -> Table:
    """Each platform contract: how many resources it covers, the largest value beside its limit (the largest
    EC2 user data, the fullest SSM parameter...), then every broken row."""
    by_contract: dict[str, list[ContractResult]] = defaultdict(list)
    for result in report.contracts:
        by_contract[result.contract].append(result)
    broken = [r for r in report.contracts if not r.ok]
    table = Table(
        title=f"Platform contracts: {len(report.contracts)} checked, {len(broken)} broken"
        + (" — the plan fails (exit 1)" if broken else "")
    )
    table.add_column("Contract", no_wrap=True)
    table.add_column("Checked", justify="right")
    table.add_column("Largest / broken", overflow="fold")
    table.add_column("Value", justify="right", overflow="fold")
    table.add_column("Limit", overflow="fold")
    for contract, results in sorted(by_contract.items()):
        top = _largest(results)
        table.add_row(contract, str(len(results)), top.resource, str(top.value), str(top.limit))
    for result in broken:
        table.add_row(result.contract, "", result.resource, str(result.value), str(result.limit), style="bold red")
    return table


def count_table(report: PlanReport) -> Table:
    resources = report.snapshot.resources
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
    if report.groups:
        console.print(group_table(report))
    if report.reachability:
        console.print(reachability_table(report))
    if report.elastic_paths:
        console.print(elastic_paths_table(report))
        console.print(f"Reachability check, {NOT_MODELLED}.")
    if report.access.rows:
        console.print(access_view(report))
    console.print(cost_items_table(report))
    console.print(cost_table(report))
    console.print(count_table(report))
    if report.contracts:
        console.print(contract_table(report))
    if report.violations:
        console.print(violation_table(report))
    else:
        console.print("Policy pack: no violations.")
