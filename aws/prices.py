"""List prices of the mesh's non-GPU pieces, for the offline plan's cost estimate (``lmrun.verify.cost``).

GPU instance prices live in :mod:`lmrun.aws.instances.catalog`; this table covers the rest: the CPU
instances of the control plane (K3s server, Phoenix, WireGuard gateway, clients), EBS, public IPv4,
NAT gateways, Transit Gateway attachments, Site-to-Site VPN, S3 and the delivery of VPC flow logs.

Snapshot: 2026-11. Sources: AWS's published on-demand list prices for ``us-east-1`` (Linux, no
reservations or savings plans) on the EC2 On-Demand, EBS, VPC (NAT gateway, public IPv4 address),
Transit Gateway, Site-to-Site VPN, S3 and CloudWatch (vended logs) pricing pages. These figures have not
moved since the public IPv4 charge started (2024-02-01); they were written down from those pages, not
fetched by code, so refresh them with the AWS Price List API (``pricing:GetProducts``) before trusting them
for a budget. Other regions usually cost 5-40 % more. **Estimates** for the plan's cost view, never for billing.
"""

from __future__ import annotations

from typing import Final

SNAPSHOT: Final = "2026-11"
"""When the figures below were taken (same snapshot as the GPU catalog)."""

PRICE_REGION: Final = "us-east-1"
"""The region the prices refer to."""

HOURS_PER_MONTH: Final = 730
"""AWS's own convention for monthly figures (8,760 h / 12)."""

INSTANCE_USD_HOUR: Final[dict[str, float]] = {
    # Burstable (the K3s server default is t3.medium: 2 vCPU / 4 GiB).
    "t3.nano": 0.0052,
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    "t3a.small": 0.0188,
    "t3a.medium": 0.0376,
    "t3a.large": 0.0752,
    "t4g.small": 0.0168,
    "t4g.medium": 0.0336,
    "t4g.large": 0.0672,
    # General purpose.
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
    "m6g.large": 0.077,
    "m7g.large": 0.0816,
    # Compute optimized (a busy WireGuard gateway).
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c7i.large": 0.08925,
    "c6gn.medium": 0.0432,
    "c6gn.large": 0.0864,
    # Memory optimized (a large Phoenix).
    "r6i.large": 0.126,
    "r6i.xlarge": 0.252,
    "r7i.large": 0.1323,
}
"""On-demand USD/hour of the CPU instance types a control plane plausibly uses."""

EBS_USD_GB_MONTH: Final[dict[str, float]] = {
    "gp3": 0.08,
    "gp2": 0.10,
    "io1": 0.125,
    "io2": 0.125,
    "st1": 0.045,
    "sc1": 0.015,
    "standard": 0.05,
}
"""EBS storage, USD per provisioned GB-month, by volume type."""

GP3_FREE_IOPS: Final = 3000
GP3_FREE_THROUGHPUT_MBPS: Final = 125
GP3_IOPS_USD_MONTH: Final = 0.005
"""Per provisioned IOPS-month above :data:`GP3_FREE_IOPS`."""
GP3_THROUGHPUT_USD_MBPS_MONTH: Final = 0.04
"""Per provisioned MB/s-month above :data:`GP3_FREE_THROUGHPUT_MBPS`."""
PIOPS_USD_MONTH: Final = 0.065
"""io1/io2 provisioned IOPS, per IOPS-month (io2's first tier)."""

DEFAULT_ROOT_VOLUME_GB: Final = 8
"""Root volume size assumed when an instance does not set one (the size of most Linux AMIs' snapshot)."""
DEFAULT_VOLUME_TYPE: Final = "gp3"

PUBLIC_IPV4_USD_HOUR: Final = 0.005
"""Every public IPv4 address, in use or idle, Elastic IP or auto-assigned (since 2024-02-01)."""

NAT_GATEWAY_USD_HOUR: Final = 0.045
"""Per NAT gateway-hour (≈ $32.85/month), before its data processing (Amazon VPC pricing, NAT gateway: $0.045
per hour and $0.045 per GB processed in US East; other regions cost more, e.g. up to ~$0.06-0.09)."""

NAT_GATEWAY_USD_GB: Final = 0.045
"""Per GB a NAT gateway processes, whichever the direction (Amazon VPC pricing); internet egress is billed on top."""

TRANSIT_GATEWAY_ATTACHMENT_USD_HOUR: Final = 0.05
"""Per Transit Gateway attachment-hour (≈ $36.50/month), before its $0.02/GB data processing."""

VPN_CONNECTION_USD_HOUR: Final = 0.05
"""Per AWS Site-to-Site VPN connection-hour."""

INTERFACE_ENDPOINT_USD_HOUR: Final = 0.01
"""Per interface VPC endpoint per AZ-hour (gateway endpoints for S3/DynamoDB are free)."""

S3_STANDARD_USD_GB_MONTH: Final = 0.023
"""S3 Standard storage, first 50 TB. Usage-based: the plan does not know how much the backups hold."""

VENDED_LOGS_TO_S3_USD_GB: Final = 0.25
"""Delivery of vended logs (VPC flow logs) to S3, per GB, first 10 TB a month (Amazon CloudWatch pricing, Logs,
Vended Logs). Charged in the flow log's region, whatever the bucket's; other regions up to ~50 % more."""

INTER_REGION_TRANSFER_USD_GB: Final = 0.02
"""Data transfer between regions (peering included), per GB each way. Usage-based."""


def instance_usd_hour(instance_type: str) -> float | None:
    """On-demand USD/hour of a CPU instance type, or None when this table does not know it."""
    return INSTANCE_USD_HOUR.get(instance_type)


def ebs_usd_month(volume_type: str, size_gb: float, *, iops: float = 0, throughput: float = 0) -> float | None:
    """USD/month of one EBS volume (storage plus provisioned IOPS/throughput); None for an unknown type."""
    per_gb = EBS_USD_GB_MONTH.get(volume_type)
    if per_gb is None:
        return None
    cost = per_gb * size_gb
    if volume_type == "gp3":
        cost += max(0.0, iops - GP3_FREE_IOPS) * GP3_IOPS_USD_MONTH
        cost += max(0.0, throughput - GP3_FREE_THROUGHPUT_MBPS) * GP3_THROUGHPUT_USD_MBPS_MONTH
    elif volume_type in ("io1", "io2"):
        cost += iops * PIOPS_USD_MONTH
    return cost
