"""The offline plan: run the project's real ``__main__.py`` under the recording mock engine, then run the
policy pack (``lmrun.policy.rules``) over what it recorded and estimate the cost (``lmrun.cost``)."""

from __future__ import annotations

import functools
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrun.cost import CostEstimate, estimate_cost
from lmrun.policy.rules import MANDATORY, Resource, Violation, evaluate
from lmrun.stackfile import StackConfig
from lmrun.testing import Recording, RecordingMocks, mesh_mocks, redact, run_program


@dataclass(frozen=True)
class PlanReport:
    """The resources a stack declares, the program's exports and the policy pack's verdict, ready to print."""

    stack: str
    recording: Recording
    violations: tuple[Violation, ...] = ()
    """Every violation of an enabled rule of the policy pack, at its resolved level."""

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
            "reachability": self.recording.outputs.get("reachability") or [],
            "violations": [v.to_json() for v in self.violations],
            "cost": self.cost.to_json(),
        }


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
) -> PlanReport:
    """Run the program of ``project_dir`` with ``stack``'s config, then the policy pack over its resources.

    ConfigError from the program propagates. ``mocks`` defaults to :func:`lmrun.testing.mesh_mocks`
    (answers exactly the lookups the program makes).
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
    return PlanReport(stack=stack.stack, recording=recording, violations=check_policies(recording, policy_config))
