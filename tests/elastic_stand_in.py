"""STAND-IN until wt-elastic's ``lmrun:elasticServices`` lands (the lead replaces it at merge with stacks that declare
elastic services): a stack's SkyPilot plan with elastic services added, so the node-port bridge (the Service
without selector, the server's timer, the access row, the reachability walk and ``lmrun sky bind``) can be
planned offline before the spec exists."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import lmrun.plan.mesh as plan_mesh
from lmrun.mock_engine import Recording
from lmrun.verify.offline import PlanReport, plan_stack
from tests.conftest import ROOT, stack_config


@dataclass(frozen=True)
class ElasticStandIn:
    """What the bridge reads of wt-elastic's ``ElasticServicePlan``."""

    name: str
    node_port: int
    app_port: int
    spot_regions: tuple[str, ...]


CHAT = ElasticStandIn("chat", 30400, 8000, ("us-west-2", "eu-west-1"))


@contextlib.contextmanager
def with_elastic(*services: ElasticStandIn) -> Iterator[None]:
    """Every plan made inside has ``services`` as its SkyPilot plan's elastic services."""
    real = plan_mesh.plan_skypilot

    def planned(*args: Any, **kwargs: Any) -> Any:
        sky, issues = real(*args, **kwargs)
        return (dataclasses.replace(sky, elastic=services) if sky is not None else None), issues

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_mesh, "plan_skypilot", planned)
        yield


@functools.cache
def elastic_plan() -> PlanReport:
    """``global``'s offline plan with :data:`CHAT` (cached: read-only)."""
    with with_elastic(CHAT):
        return plan_stack(ROOT, stack_config("global"))


def recording() -> Recording:
    return elastic_plan().recording


__all__ = ["CHAT", "ElasticStandIn", "elastic_plan", "recording", "with_elastic"]
