"""Shared harness: plan stacks offline through the real program and cache the recordings per process."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lmrun.spec.stackfile import StackConfig, load_stack_config
from lmrun.verify.offline import PlanReport, plan_stack

ROOT = Path(__file__).resolve().parent.parent


def stack_config(stack: str, **overrides: Any) -> StackConfig:
    """A stack from stacks/, with ``lmrun:`` keys overridden (plain Python values, encoded like Pulumi)."""
    base = load_stack_config(ROOT, stack=stack)
    config = dict(base.config)
    for key, value in overrides.items():
        config[f"lmrun:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return StackConfig(base.project, base.stack, config, base.secret_keys, base.source)


@functools.cache
def _planned(stack: str, preview: bool, overrides_json: str) -> PlanReport:
    return plan_stack(ROOT, stack_config(stack, **json.loads(overrides_json)), preview=preview)


def plan(stack: str, *, preview: bool = False, **overrides: Any) -> PlanReport:
    """Offline plan of a stack (cached: recordings are read-only in tests)."""
    return _planned(stack, preview, json.dumps(overrides, sort_keys=True))


@pytest.fixture(params=[False, True], ids=["up", "preview"])
def preview(request: pytest.FixtureRequest) -> bool:
    """Run a test both as `pulumi up` and as `pulumi preview` would (unknowns can hide checks in preview)."""
    return bool(request.param)


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root like the repository's: its Pulumi.yaml and __main__.py, nothing else."""
    root = tmp_path_factory.mktemp("project")
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, root / name)
    return root
