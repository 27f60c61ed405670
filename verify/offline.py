"""The offline plan: run the project's real ``__main__.py`` under the recording mock engine, then the offline
checks (:func:`lmrun.verify.checks.run_checks`: the policy pack, every planned path against the recorded
network, the cost estimate) over what it recorded.

Why a module of its own: running the program is what only ``lmrun plan`` does; ``lmrun check`` reads the
same resources from a file the Pulumi CLI wrote and runs the same checks.
"""

from __future__ import annotations

import runpy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmrun.mock_engine import RecordingMocks, mesh_mocks, run_program
from lmrun.plan.validate import checked_plan
from lmrun.spec.stackfile import StackConfig
from lmrun.verify.checks import PlanReport, ReachabilityMismatchError, run_checks

__all__ = ["PlanReport", "ReachabilityMismatchError", "plan_stack"]


def plan_stack(
    project_dir: Path,
    stack: StackConfig,
    *,
    preview: bool = True,
    mocks: RecordingMocks | None = None,
    policy_config: Mapping[str, Any] | None = None,
    check_reachability: bool = True,
) -> PlanReport:
    """Run the program of ``project_dir`` with ``stack``'s config, then the offline checks over its resources.

    ConfigError (every problem of the stack file and the config) is raised before the program runs;
    :class:`ReachabilityMismatchError` is raised (unless
    ``check_reachability`` is false) when a path's ``ok`` and the resources' verdict differ. ``mocks``
    defaults to :func:`lmrun.mock_engine.mesh_mocks` (answers exactly the lookups the program makes).
    """
    program_path = project_dir / "__main__.py"
    if not program_path.is_file():
        raise FileNotFoundError(f"{program_path}: the Pulumi program to plan is missing")
    # Every problem of the config (the stack file's, the spec's, the plan's) before the program runs: the
    # program would stop at the first stage, and the stack file's own problems never reach it.
    checked_plan(stack.config, stack.secret_keys, mesh=stack.stack, file_issues=stack.issues)

    def program() -> None:
        runpy.run_path(str(program_path), run_name="__main__")

    start = time.perf_counter()
    recording = run_program(
        program,
        project=stack.project,
        stack=stack.stack,
        config=stack.config,
        secret_keys=stack.secret_keys,
        preview=preview,
        mocks=mocks or mesh_mocks(),
    )
    program_seconds = time.perf_counter() - start
    return run_checks(
        stack.stack,
        recording,
        policy_config=policy_config,
        check_reachability=check_reachability,
        timings={"program": program_seconds},
    )
