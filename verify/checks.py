"""The offline checks composed: the policy pack, the reachability of every planned path, the platform contracts,
who can read each secret (against the access matrix) and the cost estimate over one stack's resources, whatever
recorded them, into the report ``lmrun plan`` and ``lmrun check`` print.

Why one place: ``lmrun plan`` (the program run under the mock engine) and ``lmrun check --from-preview`` /
``--from-state`` (a file the Pulumi CLI wrote) must give the same verdicts for the same resources, so both
hand a :class:`lmrun.verify.resources.Snapshot` to :func:`run_checks` and print the :class:`PlanReport` it
returns the same way. Each check's wall time is kept in :attr:`PlanReport.timings` (``make bench`` reports
the shares).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lmrun.domain.errors import LmrunError
from lmrun.mock_engine import Recording, redact
from lmrun.policy.rules import MANDATORY, Violation, evaluate
from lmrun.verify.access import AccessMismatchError, AccessTable, access_table
from lmrun.verify.contracts import ContractError, ContractResult, check_contracts
from lmrun.verify.cost import CostEstimate, estimate_cost
from lmrun.verify.elastic_paths import ElasticPathError, ElasticPathVerdict, elastic_paths_from_resources
from lmrun.verify.reachability import PathVerdict, reachability_from_resources
from lmrun.verify.resources import Snapshot
from lmrun.verify.sources import snapshot_of


@dataclass(frozen=True)
class PlanReport:
    """The resources a stack declares, its exports and the checks' verdicts, ready to print."""

    stack: str
    source: Recording | Snapshot
    """The mock engine's recording (``lmrun plan``) or the snapshot read from a file (``lmrun check``)."""
    violations: tuple[Violation, ...] = ()
    """Every violation of an enabled rule of the policy pack, at its resolved level."""
    verdicts: tuple[PathVerdict, ...] = ()
    """For each entry of the ``reachability`` export, in order: whether the resources carry it."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Wall seconds of each step that made the report (``program``, ``policy``, ``reachability``, ``cost``,
    ``contracts``, ``access``)."""
    contracts: tuple[ContractResult, ...] = ()
    """Every platform contract's verdict on every resource it covers."""
    access: AccessTable = field(default_factory=lambda: AccessTable((), ()))
    """Who can read and write each secret, computed from the resources (:mod:`lmrun.verify.access`)."""
    elastic_paths: tuple[ElasticPathVerdict, ...] = ()
    """Every hop of every elastic service's node-port path (:mod:`lmrun.verify.elastic_paths`)."""

    @functools.cached_property
    def snapshot(self) -> Snapshot:
        """The resources and the stack's outputs, as every check reads them."""
        return snapshot_of(self.source)

    @property
    def recording(self) -> Recording:
        """The mock engine's recording (only a plan has one)."""
        if not isinstance(self.source, Recording):
            raise TypeError(f"stack {self.stack} was checked from a {self.snapshot.source}, not recorded by a plan")
        return self.source

    @property
    def outputs(self) -> dict[str, Any]:
        return self.snapshot.outputs

    @property
    def regions(self) -> dict[str, dict[str, str]]:
        regions: dict[str, dict[str, str]] = self.outputs.get("regions") or {}
        return regions

    @property
    def main_region(self) -> str | None:
        main = self.outputs.get("mainRegion")
        if isinstance(main, str):
            return main
        return next((name for name, info in self.regions.items() if info.get("role") == "main"), None)

    @property
    def node_ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.outputs.get("nodePorts") or {}
        return ports

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = self.outputs.get("nodes") or {}
        return nodes

    @property
    def groups(self) -> dict[str, dict[str, Any]]:
        """The ``groups`` export: each replica group's policy, decision, replicas (name, location, reason) and the
        locations it tried; empty when the stack has none."""
        groups: dict[str, dict[str, Any]] = self.outputs.get("groups") or {}
        return groups

    @property
    def phoenix(self) -> Any:
        """The ``phoenix`` export as the program gives it (None when the stack has no Phoenix)."""
        return redact(self.outputs.get("phoenix"))

    @property
    def sites(self) -> dict[str, Any]:
        """The ``sites`` export (``{name: {cidr, kind, mtu, ...}}``); empty when the stack has none."""
        sites: dict[str, Any] = redact(self.outputs.get("sites")) or {}
        return sites

    @property
    def reachability(self) -> list[dict[str, Any]]:
        """The program's paths (the topology model's ``ok``) beside the resources' verdict (``resources_ok``:
        None when the source cannot tell)."""
        paths: list[dict[str, Any]] = list(self.outputs.get("reachability") or [])
        if len(self.verdicts) != len(paths):
            return paths
        return [
            {**path, "resources_ok": verdict.ok, "resources_reason": verdict.reason}
            for path, verdict in zip(paths, self.verdicts, strict=True)
        ]

    @property
    def reachability_mismatches(self) -> list[dict[str, Any]]:
        """Paths where the model and the resources disagree: the plan cannot be trusted."""
        return [p for p in self.reachability if p.get("resources_ok") is not None and p["ok"] != p["resources_ok"]]

    @property
    def mandatory_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.level == MANDATORY]

    @functools.cached_property
    def cost(self) -> CostEstimate:
        return estimate_cost(self.snapshot, self.outputs)

    def to_json(self) -> dict[str, Any]:
        resources = self.snapshot.resources
        names = {r.urn: r.name for r in resources}
        return {
            "stack": self.stack,
            "resources": [
                {
                    "type": r.type,
                    "name": r.name,
                    "parent": names.get(r.parent),
                    "provider": names.get(r.provider_urn),
                    "inputs": redact(r.inputs),
                }
                for r in resources
            ],
            "regions": self.regions,
            "node_ports": self.node_ports,
            "nodes": self.nodes,
            "groups": self.groups,
            "phoenix": self.phoenix,
            "sites": self.sites,
            "reachability": self.reachability,
            "elastic_paths": [verdict.to_json() for verdict in self.elastic_paths],
            "violations": [v.to_json() for v in self.violations],
            "contracts": [c.to_json() for c in self.contracts],
            "secrets": self.access.to_json(),
            "cost": self.cost.to_json(),
        }


class ReachabilityMismatchError(LmrunError):
    """The program's reachability (the topology model) and its resources disagree on some path.

    Not a config error: the library declared resources that do not carry what it promises (or carry what
    it refuses). ``lmrun plan`` and ``lmrun check`` report it and exit 1.
    """

    label = "error: reachability mismatch"

    def __init__(self, report: PlanReport) -> None:
        self.report = report
        lines = []
        for path in report.reachability_mismatches:
            said = "reachable" if path["ok"] else "unreachable"
            lines.append(
                f"{path['from']} -> {path['to']} tcp/{path['port']}: the program declares it {said}, but its "
                f"resources say {'it flows' if path['resources_ok'] else 'it does not'}: {path['resources_reason']}"
            )
        super().__init__(
            f"stack {report.stack}: {len(lines)} path(s) where the plan and its resources disagree:\n"
            + "\n".join(lines)
        )


def run_checks(
    stack: str,
    source: Recording | Snapshot,
    *,
    policy_config: Mapping[str, Any] | None = None,
    check_reachability: bool = True,
    timings: Mapping[str, float] | None = None,
) -> PlanReport:
    """The policy pack, the reachability of every path of the ``reachability`` output, the platform contracts,
    the secrets' access table and the cost estimate over ``source``'s resources (``policy_config`` has
    ``--policy-pack-config``'s shape).

    Raises ``lmrun.policy.rules.PolicyConfigError`` for an unknown rule, property or level,
    :class:`ReachabilityMismatchError` (unless ``check_reachability`` is false) when a path's ``ok`` and the
    resources' verdict differ, :class:`lmrun.verify.elastic_paths.ElasticPathError` (unless ``check_reachability``
    is false) when a hop of an elastic service's node-port path is blocked,
    :class:`lmrun.verify.contracts.ContractError` when a resource breaks a
    platform contract, and :class:`lmrun.verify.access.AccessMismatchError` when who can read or write a secret
    differs from :data:`lmrun.domain.access.ACCESS_MATRIX`. ``timings`` are earlier steps' (the program run) to
    keep beside the checks'.
    """
    snapshot = snapshot_of(source)
    spent = dict(timings or {})
    start = time.perf_counter()
    # The values the stack decides (the hub's port, the peering quota) are the rules' defaults: one source.
    violations = tuple(evaluate(snapshot, policy_config, snapshot.outputs.get("policySettings")))
    spent["policy"] = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = tuple(reachability_from_resources(snapshot))
    elastic = tuple(elastic_paths_from_resources(snapshot))
    spent["reachability"] = time.perf_counter() - start
    start = time.perf_counter()
    contracts = tuple(check_contracts(snapshot.resources, snapshot.outputs))
    spent["contracts"] = time.perf_counter() - start
    start = time.perf_counter()
    access = access_table(snapshot)
    spent["access"] = time.perf_counter() - start
    report = PlanReport(stack, source, violations, verdicts, spent, contracts, access, elastic)
    report.__dict__["snapshot"] = snapshot  # the cached property: the checks' own snapshot
    start = time.perf_counter()
    _ = report.cost
    spent["cost"] = time.perf_counter() - start
    if check_reachability and report.reachability_mismatches:
        raise ReachabilityMismatchError(report)
    blocked = [verdict for verdict in elastic if verdict.ok is False]
    if check_reachability and blocked:
        raise ElasticPathError(stack, blocked)
    broken = [result for result in report.contracts if not result.ok]
    if broken:
        raise ContractError(stack, broken)
    disagreements = access.disagreements
    if disagreements:
        raise AccessMismatchError(stack, disagreements)
    return report
