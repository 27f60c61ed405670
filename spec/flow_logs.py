"""Spec of the mesh's network audit trail (``lmrun:flowLogs``): flow logs of every AWS VPC and of every site
subnet, as one option for the whole mesh (a partial trail is the gap an investigation falls into)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmrun.spec.model_base import SpecModel

DEFAULT_RETENTION_DAYS = 90
DEFAULT_MONTHLY_GB_PER_VM = 0.25
"""The volume the cost estimate assumes per VM (see :class:`FlowLogsSpec`): an order of magnitude, not a
measurement. A VM's own mesh connections (K3s agent, SSM agent, WireGuard, node ports) and the internet's
background scans of its public address come to some 2,000-3,000 flow records an hour; at 10-minute aggregation
and ~90-120 bytes a record (the default format) that is 0.15-0.25 GB a month. A VM serving many short client
connections logs far more: measure yours (the bill's ``VendedLog-Bytes``, GCP's ``Log Volume``) and set it."""


class FlowLogsSpec(SpecModel):
    """Flow logs of every mesh network: each AWS VPC (to one S3 bucket in the main region) and each GCP site
    subnet (to Cloud Logging)."""

    enabled: bool = Field(
        default=False,
        description="Log the flows of every AWS VPC of the mesh (accepted and rejected traffic) and of every GCP "
        "site subnet. Turning it on adds the logs and their bucket (the GCP subnets change in place) and changes no "
        "node; turning it off leaves the bucket and its logs until they expire.",
    )
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        le=3650,
        description="Days the S3 bucket keeps a log file (lifecycle expiry). GCP sites log to the project's "
        "Cloud Logging `_Default` bucket, whose retention is the project's (30 days unless changed).",
    )
    aggregation_interval_seconds: Literal[60, 600] = Field(
        default=600,
        description="Longest time one flow record aggregates (the values both clouds accept); 60 records a "
        "long-lived connection ten times as often as 600.",
    )
    sampling: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of a GCP site subnet's flows that are logged (GCP's `flowSampling`; AWS flow logs "
        "always record every flow). 1.0 keeps the trail complete.",
    )
    monthly_gb_per_vm: float = Field(
        default=DEFAULT_MONTHLY_GB_PER_VM,
        gt=0,
        le=10_000,
        description="Flow-log GB one VM produces in a month, assumed by the plan's cost estimate only (it "
        "changes no resource). The default is an order of magnitude for a quiet mesh VM; set it from your "
        "bill.",
    )
