"""``lmrun quotas``: the stack's GPU vCPU needs against the account's G and VT quotas, as a table and a verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lmrun.aws.quotas import (
    QUOTA_NAMES,
    ClientFactory,
    Status,
    Verdict,
    compare,
    overall,
    read_quotas,
    unchecked_nodes,
    vcpu_needs,
)
from lmrun.spec import spec_from_config
from lmrun.spec.stackfile import load_stack_config

_STYLES = {"enough": "green", "short": "bold red", "unreadable": "yellow", "missing": "yellow"}


@dataclass(frozen=True)
class QuotasReport:
    """What ``lmrun quotas`` found for one stack."""

    stack: str
    needs: Mapping[str, tuple[int, int]]
    verdicts: Sequence[Verdict]
    unchecked: Mapping[str, str]
    """Nodes on instance families these quotas do not cover (node -> instance type)."""

    @property
    def status(self) -> Status:
        return overall(self.verdicts)


def check_stack_quotas(
    project_dir: Path,
    *,
    stack: str | None = None,
    config_file: Path | None = None,
    client_factory: ClientFactory | None = None,
) -> QuotasReport:
    """Read the stack's spec, compute its needs and read the quotas of every region that has GPU nodes."""
    stack_config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    spec = spec_from_config(stack_config.config, stack_config.secret_keys)
    needs = vcpu_needs(spec)
    readings = read_quotas(needs, client_factory=client_factory)
    return QuotasReport(stack_config.stack, needs, compare(needs, readings), unchecked_nodes(spec))


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def print_quotas(report: QuotasReport, console: Console) -> None:
    """The per-region table, the increase links for what falls short, and one verdict line."""
    if not report.verdicts:
        console.print(f"Stack [bold]{report.stack}[/]: no G/VT GPU nodes, so no G and VT vCPU quota to check.")
    else:
        table = Table(title=f"GPU vCPU quotas for stack {report.stack}")
        table.add_column("region")
        table.add_column("market")
        table.add_column("quota")
        table.add_column("needed", justify="right")
        table.add_column("available", justify="right")
        table.add_column("verdict")
        for verdict in report.verdicts:
            table.add_row(
                verdict.region,
                verdict.market,
                f"{verdict.code} ({QUOTA_NAMES[verdict.code]})",
                str(verdict.needed),
                _number(verdict.available),
                f"[{_STYLES[verdict.status]}]{verdict.summary}[/]",
            )
        console.print(table)
    wanting = [v for v in report.verdicts if v.status != "enough"]
    for verdict in wanting:
        action = "request an increase" if verdict.status == "short" else "check the quota"
        console.print(f"{verdict.region} {verdict.market}: {action} at {verdict.request_url}", soft_wrap=True)
    for node, instance_type in sorted(report.unchecked.items()):
        console.print(f"[yellow]note[/]: node {node} ({instance_type}) counts against P-instance quotas, not checked")
    status = report.status
    if status == "enough":
        console.print("[bold green]Verdict: enough[/] - every region's G and VT quotas cover the stack's nodes.")
    elif status == "short":
        short = ", ".join(f"{v.region} {v.market} by {v.shortfall}" for v in report.verdicts if v.status == "short")
        console.print(f"[bold red]Verdict: short[/] - {short} vCPUs; request increases before `pulumi up`.")
    else:
        console.print("[bold yellow]Verdict: unknown[/] - some quotas could not be read; nothing found short.")
