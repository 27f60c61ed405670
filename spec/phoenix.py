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
    backup_interval_minutes: int = Field(
        default=5, ge=1, le=1440, description="Minutes between database snapshots to S3."
    )
    backup_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days S3 keeps a snapshot (lifecycle expiry)."
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
