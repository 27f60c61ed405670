"""Spec of the Phoenix observability node (``lmrun:phoenix``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from lmrun.domain.ports import PHOENIX_GRPC_NODE_PORT as GRPC_NODE_PORT
from lmrun.domain.ports import PHOENIX_UI_NODE_PORT as UI_NODE_PORT
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import NodePort
from lmrun.spec.partial import entry
from lmrun.spec.values import InstanceType

DEFAULT_PHOENIX_INSTANCE_TYPE = "t3.large"


class PhoenixSpec(SpecModel):
    """Arize Phoenix collecting the mesh's LLM traces, with its data on a volume that survives."""

    enabled: bool = Field(default=True, description="Run Phoenix (vLLM nodes then export traces to it).")
    placement: Literal["node", "server"] = Field(
        default="node", description="`node`: its own small instance in the main region; `server`: on the K3s server."
    )
    instance_type: InstanceType = Field(
        default=DEFAULT_PHOENIX_INSTANCE_TYPE, description="EC2 instance type of the Phoenix node (placement `node`)."
    )
    volume_size: int = Field(default=50, ge=10, le=16384, description="Data volume in GB (encrypted, retained).")
    retention_days: int = Field(default=30, ge=1, le=36500, description="Days Phoenix keeps traces.")
    # Every snapshot is a full gzipped copy of the database: the defaults keep ~265 copies (hourly for 7 days,
    # plus a day of overwritten `latest` versions), not the ~17,000 of a 5-minute/30-day schedule. Hourly bounds
    # what a lost data volume costs (the volume itself is retained and protected; S3 is the last resort) to an
    # hour of traces; 7 days leaves a week to notice a bad upgrade or a corrupted database and restore before it.
    # See lmrun.plan.backup for the arithmetic and the plan's cost table for its price.
    backup_interval_minutes: int = Field(
        default=60,
        ge=1,
        le=1440,
        description="Minutes between database snapshots to S3 (each is a full gzipped copy of the database).",
    )
    backup_retention_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="Days S3 keeps a snapshot (lifecycle expiry); overwritten `latest` copies go after a day.",
    )
    ui_node_port: NodePort = Field(default=UI_NODE_PORT, description="Node port of the UI and OTLP/HTTP (6006).")
    grpc_node_port: NodePort = Field(default=GRPC_NODE_PORT, description="Node port of OTLP/gRPC (4317).")


def reserved_node_ports(raw: Mapping[str, Any]) -> dict[int, str]:
    """Node ports Phoenix takes (when enabled), for the mesh-wide uniqueness check; a broken port takes none."""
    phoenix = entry(0, raw.get("phoenix", {}), PhoenixSpec)
    if phoenix is None or not phoenix.sound("enabled") or not phoenix.spec.enabled:
        return {}
    ports = {"ui_node_port": "phoenix-ui", "grpc_node_port": "phoenix-grpc"}
    return {getattr(phoenix.spec, field): name for field, name in ports.items() if phoenix.sound(field)}


def phoenix_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules inside ``lmrun:phoenix`` that span fields."""
    phoenix = entry(0, raw.get("phoenix", {}), PhoenixSpec)
    if phoenix is None or not phoenix.sound("enabled", "ui_node_port", "grpc_node_port"):
        return []
    spec = phoenix.spec
    if spec.enabled and spec.ui_node_port == spec.grpc_node_port:
        return [
            ConfigIssue(
                config_path(("phoenix", "grpcNodePort")),
                f"node port {spec.grpc_node_port} is also lmrun:phoenix.uiNodePort; they must differ",
            )
        ]
    return []
