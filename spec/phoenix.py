"""Spec of the Phoenix observability node (``lmrun:phoenix``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError

from lmrun.domain.ports import PHOENIX_GRPC_NODE_PORT as GRPC_NODE_PORT
from lmrun.domain.ports import PHOENIX_UI_NODE_PORT as UI_NODE_PORT
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import NodePort

DEFAULT_PHOENIX_INSTANCE_TYPE = "t3.large"


class PhoenixSpec(SpecModel):
    """Arize Phoenix collecting the mesh's LLM traces, with its data on a volume that survives."""

    enabled: bool = Field(default=True, description="Run Phoenix (vLLM nodes then export traces to it).")
    placement: Literal["node", "server"] = Field(
        default="node", description="`node`: its own small instance in the main region; `server`: on the K3s server."
    )
    instance_type: str = Field(
        default=DEFAULT_PHOENIX_INSTANCE_TYPE,
        pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$",
        description="Instance type of the Phoenix node (placement `node`).",
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
    """Node ports Phoenix takes (when enabled and valid), for the mesh-wide uniqueness check."""
    try:
        phoenix = PhoenixSpec.model_validate(raw.get("phoenix", {}), by_name=False)
    except ValidationError:
        return {}
    if not phoenix.enabled:
        return {}
    return {phoenix.ui_node_port: "phoenix-ui", phoenix.grpc_node_port: "phoenix-grpc"}


def phoenix_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules inside ``lmrun:phoenix`` that span fields."""
    try:
        phoenix = PhoenixSpec.model_validate(raw.get("phoenix", {}), by_name=False)
    except ValidationError:
        return []
    if phoenix.enabled and phoenix.ui_node_port == phoenix.grpc_node_port:
        return [
            ConfigIssue(
                config_path(("phoenix", "grpcNodePort")),
                f"node port {phoenix.grpc_node_port} is also lmrun:phoenix.uiNodePort; they must differ",
            )
        ]
    return []
