"""GCP GPU machines for nodes in GCP sites: gpu x count -> machine type, accelerator and hourly prices.

Snapshot: 2026-11, from the Compute Engine "GPU machine types" and "GPU pricing" pages (us-central1, Linux,
on-demand and spot, GPU and machine together). Estimates for the plan's cost view, never for billing;
availability differs per zone, so a node's zone must offer the accelerator (checked only at apply time).
"""

from __future__ import annotations

from dataclasses import dataclass


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
