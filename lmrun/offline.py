"""The offline plan: run the project's real ``__main__.py`` under the recording mock engine."""

from __future__ import annotations

import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrun.stackfile import StackConfig
from lmrun.testing import Recording, RecordingMocks, mesh_mocks, redact, run_program


@dataclass(frozen=True)
class PlanReport:
    """The resources a stack declares and the program's exports, ready to print."""

    stack: str
    recording: Recording

    @property
    def regions(self) -> dict[str, dict[str, str]]:
        regions: dict[str, dict[str, str]] = self.recording.outputs.get("regions") or {}
        return regions

    @property
    def node_ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.recording.outputs.get("nodePorts") or {}
        return ports

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = self.recording.outputs.get("nodes") or {}
        return nodes

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
        }


def plan_stack(
    project_dir: Path, stack: StackConfig, *, preview: bool = True, mocks: RecordingMocks | None = None
) -> PlanReport:
    """Run the program of ``project_dir`` with ``stack``'s config; ConfigError from the program propagates.

    ``mocks`` defaults to :func:`lmrun.testing.mesh_mocks` (answers exactly the lookups the program makes).
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
    return PlanReport(stack=stack.stack, recording=recording)
