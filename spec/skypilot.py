"""Spec of the mesh as SkyPilot infrastructure (``lmrun:skypilot``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from lmrun.domain.skypilot import SKY_NODE_PREFIX
from lmrun.spec.errors import ConfigIssue, config_path, echo
from lmrun.spec.model_base import SpecModel

# S3 bucket names: 3-63 characters of lowercase letters, digits, '-' (and '.', refused here: a dotted name
# breaks TLS on virtual-hosted-style URLs). https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
BUCKET_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


def _bucket_name(value: str) -> str:
    if not re.match(BUCKET_NAME_PATTERN, value):
        raise ValueError(
            f"{echo(value)} is not an S3 bucket name: 3-63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit"
        )
    return value


BucketName = Annotated[str, AfterValidator(_bucket_name)]


class SkyPilotSpec(SpecModel):
    """SkyPilot clusters and managed jobs launched into the mesh's VPCs, joining K3s with the agent credential."""

    enabled: bool = Field(
        default=False,
        description="Create what SkyPilot needs to launch into the mesh (a fixed-name instance profile, a same-named "
        "security group in every mesh VPC, a checkpoint bucket, private subnets behind a NAT gateway in the main "
        "region: ~$41/month); `lmrun sky render` writes its config and tasks.",
    )
    use_ssm: bool = Field(
        default=True,
        description="SkyPilot reaches its VMs through Session Manager (`aws.use_ssm`; no SSH port open anywhere). "
        "false: SSH from lmrun:operatorCidrs only (the policy pack's no-ssh rule then needs allowSsh).",
    )
    bucket: BucketName | None = Field(
        default=None,
        description="Name of the checkpoint bucket, 3-63 lowercase letters, digits and '-' (S3 names are global: "
        "pick one of yours). "
        "Default: lmrun-<stack>-skypilot.",
    )
    checkpoint_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days S3 keeps a checkpoint object after its last write."
    )


def skypilot_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules between ``lmrun:skypilot`` and the rest of the config."""
    try:
        sky = SkyPilotSpec.model_validate(raw.get("skypilot", {}), by_name=False)
    except ValidationError:
        return []  # reported by the whole-spec validation
    if not sky.enabled:
        return []
    issues: list[ConfigIssue] = []
    if not sky.use_ssm and not raw.get("operatorCidrs"):
        issues.append(
            ConfigIssue(
                config_path(("skypilot", "useSsm")),
                "false means SkyPilot reaches its VMs by SSH, admitted only from lmrun:operatorCidrs, which is empty: "
                "list the networks SkyPilot's API server runs in, or leave useSsm true",
            )
        )
    nodes = raw.get("nodes")
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        name = node.get("name") if isinstance(node, Mapping) else None
        if isinstance(name, str) and name.startswith(SKY_NODE_PREFIX):
            issues.append(
                ConfigIssue(
                    config_path(("nodes", index, "name")),
                    f"{name!r}: names starting with {SKY_NODE_PREFIX!r} are the SkyPilot VMs' (lmrun:skypilot)",
                )
            )
    return issues
