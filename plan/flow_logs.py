"""Spec -> flow-log plan: whether every mesh network logs its flows, and how (pure; no Pulumi)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmrun.spec.model import MeshSpec


@dataclass(frozen=True)
class FlowLogsPlan:
    """Flow logs of every AWS VPC (one S3 bucket in the main region) and of every site subnet."""

    retention_days: int
    """Days the bucket keeps a log file."""
    aggregation_interval_seconds: int
    """60 or 600: the longest a flow record aggregates, on both clouds."""
    sampling: float
    """Share of a site subnet's flows that are logged (site clouds that sample; AWS logs every flow)."""
    monthly_gb_per_vm: float
    """The cost estimate's volume assumption per VM (changes no resource)."""

    def export(self) -> dict[str, Any]:
        """The plain ``flowLogs`` stack output the cost estimate reads its assumption from."""
        return {
            "retention_days": self.retention_days,
            "aggregation_interval_seconds": self.aggregation_interval_seconds,
            "sampling": self.sampling,
            "monthly_gb_per_vm": self.monthly_gb_per_vm,
        }


def plan_flow_logs(spec: MeshSpec) -> FlowLogsPlan | None:
    """The flow-log plan; None when ``lmrun:flowLogs.enabled`` is false."""
    flow_logs = spec.flow_logs
    if not flow_logs.enabled:
        return None
    return FlowLogsPlan(
        retention_days=flow_logs.retention_days,
        aggregation_interval_seconds=flow_logs.aggregation_interval_seconds,
        sampling=flow_logs.sampling,
        monthly_gb_per_vm=flow_logs.monthly_gb_per_vm,
    )
