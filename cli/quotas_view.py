"""``lmrun quotas``: the stack's GPU vCPU needs against the account's G and VT quotas, as a table and a verdict;
with ``--write``, the quotas of every region of the mesh recorded in the stack file (``lmrun:quotas``, comments
and key order kept), where the plan places replica groups within them."""

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
    read_every_quota,
    read_quotas,
    recorded_values,
    unchecked_nodes,
    unreadable,
    vcpu_needs,
)
from lmrun.cli.stack_edit import write_stack_keys
from lmrun.domain.errors import LmrunError
from lmrun.spec import parse_spec, spec_from_config
from lmrun.spec.config import PREFIX, namespaced
from lmrun.spec.stackfile import load_stack_config

QUOTAS_KEY = f"{PREFIX}quotas"


class QuotaRecordError(LmrunError):
    """``--write`` could not read every quota: nothing is written (a partial record would place replicas on
    regions whose quota nobody read)."""

    label = "error: quotas not recorded"


_STYLES = {"enough": "green", "short": "bold red", "unreadable": "yellow", "missing": "yellow"}


@dataclass(frozen=True)
class QuotasReport:
    """What ``lmrun quotas`` found for one stack."""

    stack: str
    needs: Mapping[str, tuple[int, int]]
    verdicts: Sequence[Verdict]
    unchecked: Mapping[str, str]
    """Nodes on instance families these quotas do not cover (node -> instance type)."""
    written: Path | None = None
    """The stack file ``--write`` rewrote (None: not asked, or the record was already current)."""

    @property
    def status(self) -> Status:
        return overall(self.verdicts)


def check_stack_quotas(
    project_dir: Path,
    *,
    stack: str | None = None,
    config_file: Path | None = None,
    client_factory: ClientFactory | None = None,
    write: bool = False,
) -> QuotasReport:
    """Read the stack's spec, compute its needs and read the quotas of every region that has GPU nodes.

    With ``write``, read every recorded quota in every region of the mesh first and write them into the stack
    file (``lmrun:quotas``); the needs are then those of the fleet placed within the new record. Raises
    :class:`QuotaRecordError`, writing nothing, when a quota cannot be read."""
    stack_config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    spec = spec_from_config(stack_config.config, stack_config.secret_keys)
    written = None
    if write:
        readings = read_every_quota((spec.main_region, *spec.regions), client_factory=client_factory)
        missing = unreadable(readings)
        if missing:
            raise QuotaRecordError(
                "\n".join(f"{r.region} {r.code} ({QUOTA_NAMES[r.code]}): {r.error}" for r in missing)
                + f"\nnothing written to {stack_config.source}"
            )
        record = recorded_values(readings)
        raw = namespaced(stack_config.config)
        if raw.get("quotas") != record:
            spec = parse_spec({**raw, "quotas": record})  # never write a record the spec would refuse
            write_stack_keys(stack_config.source, {QUOTAS_KEY: record})
            written = stack_config.source
        needs = vcpu_needs(spec)
    else:
        needs = vcpu_needs(spec)
        readings = read_quotas(needs, client_factory=client_factory)
    return QuotasReport(stack_config.stack, needs, compare(needs, readings), unchecked_nodes(spec), written)


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
    if report.written is not None:
        console.print(f"wrote lmrun:quotas to {report.written}", soft_wrap=True)
    status = report.status
    if status == "enough":
        console.print("[bold green]Verdict: enough[/] - every region's G and VT quotas cover the stack's nodes.")
    elif status == "short":
        short = ", ".join(f"{v.region} {v.market} by {v.shortfall}" for v in report.verdicts if v.status == "short")
        console.print(f"[bold red]Verdict: short[/] - {short} vCPUs; request increases before `pulumi up`.")
    else:
        console.print("[bold yellow]Verdict: unknown[/] - some quotas could not be read; nothing found short.")
