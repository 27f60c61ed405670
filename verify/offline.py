"""The offline plan: run the project's real ``__main__.py`` under the recording mock engine, then run the
policy pack (``lmrun.policy.rules``) over what it recorded, estimate the cost (``lmrun.verify.cost``) and check
every planned path against the recorded network (``lmrun.verify.reachability``)."""

from __future__ import annotations

import functools
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrun.domain.errors import LmrunError
from lmrun.mock_engine import Recording, RecordingMocks, mesh_mocks, redact, run_program
from lmrun.policy.rules import MANDATORY, Resource, Violation, evaluate
from lmrun.spec.stackfile import StackConfig
from lmrun.verify.cost import CostEstimate, estimate_cost
from lmrun.verify.reachability import PathVerdict, reachability_from_resources


@dataclass(frozen=True)
class PlanReport:
    """The resources a stack declares, the program's exports and the policy pack's verdict, ready to print."""

    stack: str
    recording: Recording
    violations: tuple[Violation, ...] = ()
    """Every violation of an enabled rule of the policy pack, at its resolved level."""
    verdicts: tuple[PathVerdict, ...] = ()
    """For each entry of the ``reachability`` export, in order: whether the recorded resources carry it."""

    @property
    def regions(self) -> dict[str, dict[str, str]]:
        regions: dict[str, dict[str, str]] = self.recording.outputs.get("regions") or {}
        return regions

    @property
    def main_region(self) -> str | None:
        main = self.recording.outputs.get("mainRegion")
        if isinstance(main, str):
            return main
        return next((name for name, info in self.regions.items() if info.get("role") == "main"), None)

    @property
    def node_ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.recording.outputs.get("nodePorts") or {}
        return ports

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = self.recording.outputs.get("nodes") or {}
        return nodes

    @property
    def phoenix(self) -> Any:
        """The ``phoenix`` export as the program gives it (None when the stack has no Phoenix)."""
        return redact(self.recording.outputs.get("phoenix"))

    @property
    def sites(self) -> dict[str, Any]:
        """The ``sites`` export (``{name: {cidr, kind, mtu, ...}}``); empty when the stack has none."""
        sites: dict[str, Any] = redact(self.recording.outputs.get("sites")) or {}
        return sites

    @property
    def reachability(self) -> list[dict[str, Any]]:
        """The program's paths (the topology model's ``ok``) beside the resources' verdict (``resources_ok``)."""
        paths: list[dict[str, Any]] = list(self.recording.outputs.get("reachability") or [])
        if len(self.verdicts) != len(paths):
            return paths
        return [
            {**path, "resources_ok": verdict.ok, "resources_reason": verdict.reason}
            for path, verdict in zip(paths, self.verdicts, strict=True)
        ]

    @property
    def reachability_mismatches(self) -> list[dict[str, Any]]:
        """Paths where the model and the resources disagree: the plan cannot be trusted."""
        return [p for p in self.reachability if "resources_ok" in p and p["ok"] != p["resources_ok"]]

    @property
    def mandatory_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.level == MANDATORY]

    @functools.cached_property
    def cost(self) -> CostEstimate:
        return estimate_cost(self.recording.resources, self.recording.outputs)

    def to_json(self) -> dict[str, Any]:
        names = {r.urn: r.name for r in self.recording.resources}
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
                for r in self.recording.resources
            ],
            "regions": self.regions,
            "node_ports": self.node_ports,
            "nodes": self.nodes,
            "phoenix": self.phoenix,
            "sites": self.sites,
            "reachability": self.reachability,
            "violations": [v.to_json() for v in self.violations],
            "cost": self.cost.to_json(),
        }


class ReachabilityMismatchError(LmrunError):
    """The program's reachability (the topology model) and its recorded resources disagree on some path.

    Not a config error: the library declared resources that do not carry what it promises (or carry what
    it refuses). ``lmrun plan`` reports it and exits 1.
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


def check_policies(recording: Recording, policy_config: Mapping[str, Any] | None = None) -> tuple[Violation, ...]:
    """The policy pack over the recorded resources (``policy_config`` has ``--policy-pack-config``'s shape).

    Raises ``lmrun.policy.rules.PolicyConfigError`` for an unknown rule, property or level.
    """
    return tuple(evaluate([Resource.from_recorded(r) for r in recording.resources], policy_config))


def plan_stack(
    project_dir: Path,
    stack: StackConfig,
    *,
    preview: bool = True,
    mocks: RecordingMocks | None = None,
    policy_config: Mapping[str, Any] | None = None,
    check_reachability: bool = True,
) -> PlanReport:
    """Run the program of ``project_dir`` with ``stack``'s config, then the policy pack over its resources,
    then the static reachability check of every planned path over the recorded network.

    ConfigError from the program propagates; :class:`ReachabilityMismatchError` is raised (unless
    ``check_reachability`` is false) when a path's ``ok`` and the resources' verdict differ. ``mocks``
    defaults to :func:`lmrun.mock_engine.mesh_mocks` (answers exactly the lookups the program makes).
    """
    program_path = project_dir / "__main__.py"
    if not program_path.is_file():
        raise FileNotFoundError(f"{program_path}: the Pulumi program to plan is missing")

    def program() -> None:
        runpy.run_path(str(program_path), run_name="__main__")

    recording = run_program(
        program,
        project=stack.project,
        stack=stack.stack,
        config=stack.config,
        secret_keys=stack.secret_keys,
        preview=preview,
        mocks=mocks or mesh_mocks(),
    )
    report = PlanReport(
        stack=stack.stack,
        recording=recording,
        violations=check_policies(recording, policy_config),
        verdicts=tuple(reachability_from_resources(recording, recording.outputs)),
    )
    if check_reachability and report.reachability_mismatches:
        raise ReachabilityMismatchError(report)
    return report
