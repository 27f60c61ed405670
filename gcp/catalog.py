"""GCP GPU machines for nodes in GCP sites (gpu x count -> machine type, accelerator and hourly prices), the
Cloud Logging price of flow logs, and the image families the images of GCP sites are pinned from.

Snapshot: 2026-11, from the Compute Engine "GPU machine types" and "GPU pricing" pages (us-central1, Linux,
on-demand and spot, GPU and machine together). Estimates for the plan's cost view, never for billing;
availability differs per zone, so a node's zone must offer the accelerator (checked only at apply time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmrun.domain.names import IMAGE_GATEWAY, IMAGE_GPU


@dataclass(frozen=True)
class GcpMachine:
    """A GCP machine shape carrying GPUs."""

    machine_type: str
    accelerator_type: str
    """``guest_accelerator`` type; empty for machine types with built-in GPUs (G2, A2, A3 attach them)."""
    gpu: str
    gpu_count: int
    vcpus: int
    on_demand_usd_hour: float
    spot_usd_hour: float

    @property
    def attaches_accelerator(self) -> bool:
        """N1 machines take GPUs as ``guest_accelerator``; G2/A2/A3 have them built in."""
        return self.machine_type.startswith("n1-")

    def hourly_usd(self, *, spot: bool) -> float:
        return self.spot_usd_hour if spot else self.on_demand_usd_hour


CLOUD_LOGGING_USD_GIB = 0.50
"""Cloud Logging ingestion per GiB (VPC flow logs land there), 30 days of storage included; the first 50 GiB a
project ingests each month are free, shared with every other log of the project, so the estimate does not
subtract them (Google Cloud Observability pricing, Cloud Logging)."""

MACHINES: tuple[GcpMachine, ...] = (
    GcpMachine("n1-standard-8", "nvidia-tesla-t4", "T4", 1, 8, 0.73, 0.22),
    GcpMachine("g2-standard-8", "nvidia-l4", "L4", 1, 8, 0.85, 0.34),
    GcpMachine("g2-standard-24", "nvidia-l4", "L4", 2, 24, 2.00, 0.80),
    GcpMachine("g2-standard-48", "nvidia-l4", "L4", 4, 48, 4.00, 1.60),
    GcpMachine("a2-highgpu-1g", "nvidia-tesla-a100", "A100", 1, 12, 3.67, 1.47),
    GcpMachine("a2-highgpu-8g", "nvidia-tesla-a100", "A100", 8, 96, 29.39, 11.76),
    GcpMachine("a3-highgpu-8g", "nvidia-h100-80gb", "H100", 8, 208, 88.25, 35.30),
)


def machines_for(gpu: str, count: int) -> tuple[GcpMachine, ...]:
    """Machines with exactly ``count`` x ``gpu`` (case-insensitive), cheapest first. ValueError if none."""
    matches = [m for m in MACHINES if m.gpu.upper() == gpu.strip().upper() and m.gpu_count == count]
    if not matches:
        offered = sorted({(m.gpu, m.gpu_count) for m in MACHINES})
        raise ValueError(f"no GCP machine has {count}x {gpu}; offered: {', '.join(f'{c}x {g}' for g, c in offered)}")
    return tuple(sorted(matches, key=lambda m: m.on_demand_usd_hour))


# ---------------------------------------------------------------------------------------------------------
# Images. A family names whatever image its project published last, so a template built from a family
# changes whenever the project publishes: sites pin exact images in the stack config instead
# (``lmrun:sites[].images``). The families below are documentation, never a fallback: they say where the
# pinned images come from and how to find the current one.

IMAGE_SELF_LINK = re.compile(
    r"^(?:https://www\.googleapis\.com/compute/(?:v1|beta)/)?"
    r"projects/(?P<project>[a-z][-a-z0-9.:]*[a-z0-9])/global/images/(?P<name>[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)$"
)
"""A pinned image: ``projects/<project>/global/images/<name>``, optionally as the full self-link URL."""


@dataclass(frozen=True)
class ImageFamily:
    """Where the images of one VM role come from."""

    project: str
    family: str
    description: str
    seen: str
    """An image of the family seen in public use (2026), to show the shape of a pin. Not verified here and
    never used unless a stack pins it; the current one comes from :meth:`describe_command`."""

    def describe_command(self) -> str:
        """The gcloud command that prints the family's current image, in the form a pin takes."""
        return (
            f"gcloud compute images describe-from-family {self.family} --project {self.project} "
            "--format='value(selfLink)'"
        )


IMAGE_FAMILIES: dict[str, ImageFamily] = {
    IMAGE_GATEWAY: ImageFamily(
        "ubuntu-os-cloud",
        "ubuntu-2404-lts-amd64",
        "Ubuntu 24.04 LTS (cloud-init, WireGuard in the kernel, iptables); the bootstrap installs wireguard-tools",
        "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260918",
    ),
    IMAGE_GPU: ImageFamily(
        "deeplearning-platform-release",
        "common-cu128-ubuntu-2204-nvidia-570",
        "Deep Learning VM: Ubuntu 22.04 with the NVIDIA 570 driver and CUDA 12.8 preinstalled",
        "projects/deeplearning-platform-release/global/images/common-cu128-ubuntu-2204-nvidia-570-v20260320",
    ),
}
"""Image role of a GCP site -> the family its pinned image is taken from."""


def image_issue(value: str) -> str | None:
    """Why ``value`` cannot be a pinned GCP image (None when it can)."""
    if "/family/" in value or value.startswith("family/"):
        return f"{value!r} is an image family: it moves with every release; pin one image of it"
    if not IMAGE_SELF_LINK.match(value):
        return f"{value!r} is not a pinned image: give 'projects/<project>/global/images/<name>' or its self-link"
    return None
