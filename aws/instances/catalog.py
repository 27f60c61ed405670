"""GPU instance catalog: which EC2 instance types carry a GPU x count, what they cost, where they run.

The plan needs this before any API call (a node's instance type decides quotas, cost and whether the node's
region can host it at all), so it is a dated snapshot kept in the repository, not a lookup.

Snapshot: 2026-11. Sources:

- vCPUs, memory, GPU memory, us-east-1 on-demand prices and the regions offering each family: SkyPilot's
  public AWS catalog (``skypilot-org/skypilot-catalog``, ``catalogs/v8/aws/vms.csv``), itself generated
  from the AWS Price List API and ``describe-instance-type-offerings``, cross-checked against the EC2
  instance-type pages. That catalog only lists regions enabled in the account that generated it, so a
  region missing here may still offer a family (opt-in regions especially).
- Spot prices: a *typical* figure, the on-demand price times a per-family ratio read off the median
  us-east-1 AZ spot price in the same snapshot. Spot prices move hourly and differ per AZ.

Every price is an **estimate** in USD per hour (Linux, us-east-1, no reservations or savings plans); other
regions usually cost 5-40 % more. They are for the plan's cost view, never for billing. Refresh with the
AWS Price List API (``pricing:GetProducts``) and ``ec2:DescribeSpotPriceHistory``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SNAPSHOT = "2026-11"
"""When the figures below were taken."""

PRICE_REGION = "us-east-1"
"""The region the hourly prices refer to."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU model as the mesh names it (the ``gpu`` field of a node)."""

    name: str
    memory_gib: int
    """Memory of one GPU, GiB."""
    families: tuple[str, ...]
    """EC2 instance families carrying it."""


@dataclass(frozen=True)
class InstanceType:
    """One EC2 GPU instance type."""

    name: str
    family: str
    gpu: str
    gpu_count: int
    vcpus: int
    memory_gib: int
    gpu_memory_gib: int
    """Total GPU memory across all GPUs, GiB."""
    on_demand_usd_hour: float
    """Estimated on-demand price in ``PRICE_REGION`` (see module docstring)."""
    spot_usd_hour: float | None
    """Typical spot price in ``PRICE_REGION``; None where the type is not sold as spot."""

    def hourly_usd(self, *, spot: bool) -> float:
        """The estimated hourly price; spot falls back to on-demand where no spot price is known."""
        if spot and self.spot_usd_hour is not None:
            return self.spot_usd_hour
        return self.on_demand_usd_hour


# Spot/on-demand ratio per family: median us-east-1 AZ spot price of the family's xlarge-ish type divided by
# its on-demand price, in the snapshot. None: no spot market for the family.
_SPOT_RATIO: dict[str, float | None] = {
    "g4dn": 0.39,
    "g5": 0.36,
    "g6": 0.47,
    "g6e": 0.45,
    "p4d": 0.37,
    "p4de": 0.36,
    "p5": 0.33,
    "p5en": 0.29,
    "p6-b200": 0.19,
}

# family -> regions offering it (SkyPilot v8 catalog snapshot; see module docstring for the caveat).
FAMILY_REGIONS: dict[str, frozenset[str]] = {
    "g4dn": frozenset(
        {
            "af-south-1",
            "ap-east-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-south-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "me-south-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        }
    ),
    "g5": frozenset(
        {
            "ap-east-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-west-1",
            "eu-west-2",
            "me-central-1",
            "us-east-1",
            "us-east-2",
            "us-west-2",
        }
    ),
    "g6": frozenset(
        {
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-south-2",
            "eu-west-2",
            "eu-west-3",
            "me-central-1",
            "us-east-1",
            "us-east-2",
            "us-west-2",
        }
    ),
    "g6e": frozenset(
        {
            "ap-northeast-1",
            "ap-northeast-2",
            "eu-central-1",
            "eu-north-1",
            "eu-south-2",
            "us-east-1",
            "us-east-2",
            "us-west-2",
        }
    ),
    "p4d": frozenset(
        {
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-west-1",
            "eu-west-2",
            "us-east-1",
            "us-east-2",
            "us-west-2",
        }
    ),
    "p4de": frozenset({"ap-northeast-1", "ap-southeast-1", "eu-central-1", "us-east-1", "us-west-2"}),
    "p5": frozenset(
        {
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ca-central-1",
            "eu-north-1",
            "eu-west-2",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        }
    ),
    "p5en": frozenset(
        {
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-3",
            "eu-north-1",
            "eu-south-2",
            "me-central-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        }
    ),
    "p6-b200": frozenset({"us-east-1", "us-east-2", "us-west-2"}),
}

GPUS: dict[str, GpuInfo] = {
    g.name: g
    for g in (
        GpuInfo("T4", 16, ("g4dn",)),
        GpuInfo("A10G", 24, ("g5",)),
        GpuInfo("L4", 24, ("g6",)),
        GpuInfo("L40S", 48, ("g6e",)),
        GpuInfo("A100", 40, ("p4d",)),
        GpuInfo("A100-80GB", 80, ("p4de",)),
        GpuInfo("H100", 80, ("p5",)),
        GpuInfo("H200", 141, ("p5en",)),
        GpuInfo("B200", 179, ("p6-b200",)),
    )
}

# Accepted spellings -> catalog name (matching is case-insensitive on top of these).
_ALIASES: dict[str, str] = {
    "A10": "A10G",
    "A100-40GB": "A100",
    "A100:40GB": "A100",
    "A100:80GB": "A100-80GB",
    "A100-80G": "A100-80GB",
    "H100-80GB": "H100",
}

# (name, gpu, gpu_count, vcpus, memory GiB, on-demand USD/h in us-east-1)
_ROWS: tuple[tuple[str, str, int, int, int, float], ...] = (
    ("g4dn.xlarge", "T4", 1, 4, 16, 0.526),
    ("g4dn.2xlarge", "T4", 1, 8, 32, 0.752),
    ("g4dn.4xlarge", "T4", 1, 16, 64, 1.204),
    ("g4dn.8xlarge", "T4", 1, 32, 128, 2.176),
    ("g4dn.16xlarge", "T4", 1, 64, 256, 4.352),
    ("g4dn.12xlarge", "T4", 4, 48, 192, 3.912),
    ("g4dn.metal", "T4", 8, 96, 384, 7.824),
    ("g5.xlarge", "A10G", 1, 4, 16, 1.006),
    ("g5.2xlarge", "A10G", 1, 8, 32, 1.212),
    ("g5.4xlarge", "A10G", 1, 16, 64, 1.624),
    ("g5.8xlarge", "A10G", 1, 32, 128, 2.448),
    ("g5.16xlarge", "A10G", 1, 64, 256, 4.096),
    ("g5.12xlarge", "A10G", 4, 48, 192, 5.672),
    ("g5.24xlarge", "A10G", 4, 96, 384, 8.144),
    ("g5.48xlarge", "A10G", 8, 192, 768, 16.288),
    ("g6.xlarge", "L4", 1, 4, 16, 0.8048),
    ("g6.2xlarge", "L4", 1, 8, 32, 0.9776),
    ("g6.4xlarge", "L4", 1, 16, 64, 1.3232),
    ("g6.8xlarge", "L4", 1, 32, 128, 2.0144),
    ("g6.16xlarge", "L4", 1, 64, 256, 3.3968),
    ("g6.12xlarge", "L4", 4, 48, 192, 4.6016),
    ("g6.24xlarge", "L4", 4, 96, 384, 6.6752),
    ("g6.48xlarge", "L4", 8, 192, 768, 13.3504),
    ("g6e.xlarge", "L40S", 1, 4, 32, 1.861),
    ("g6e.2xlarge", "L40S", 1, 8, 64, 2.24208),
    ("g6e.4xlarge", "L40S", 1, 16, 128, 3.00424),
    ("g6e.8xlarge", "L40S", 1, 32, 256, 4.52856),
    ("g6e.16xlarge", "L40S", 1, 64, 512, 7.57719),
    ("g6e.12xlarge", "L40S", 4, 48, 384, 10.49264),
    ("g6e.24xlarge", "L40S", 4, 96, 768, 15.06559),
    ("g6e.48xlarge", "L40S", 8, 192, 1536, 30.13118),
    ("p4d.24xlarge", "A100", 8, 96, 1152, 21.95764),
    ("p4de.24xlarge", "A100-80GB", 8, 96, 1152, 27.44705),
    ("p5.4xlarge", "H100", 1, 16, 256, 6.88),
    ("p5.48xlarge", "H100", 8, 192, 2048, 55.04),
    ("p5en.48xlarge", "H200", 8, 192, 2048, 63.296),
    ("p6-b200.48xlarge", "B200", 8, 192, 2048, 113.9328),
)


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _instance(row: tuple[str, str, int, int, int, float]) -> InstanceType:
    name, gpu, count, vcpus, memory, on_demand = row
    family = _family(name)
    ratio = _SPOT_RATIO[family]
    # p5.4xlarge is sold on-demand and through capacity blocks only (no spot price in the snapshot).
    spot = None if ratio is None or name == "p5.4xlarge" else round(on_demand * ratio, 4)
    return InstanceType(name, family, gpu, count, vcpus, memory, GPUS[gpu].memory_gib * count, on_demand, spot)


INSTANCE_TYPES: dict[str, InstanceType] = {row[0]: _instance(row) for row in _ROWS}


def gpu_names() -> tuple[str, ...]:
    """The GPU names the catalog knows, in catalog order."""
    return tuple(GPUS)


def canonical_gpu(gpu: str) -> str:
    """The catalog's spelling of a GPU name (case-insensitive, a few aliases). Raises KeyError if unknown."""
    wanted = gpu.strip().upper()
    for name in GPUS:
        if name.upper() == wanted:
            return name
    for alias, name in _ALIASES.items():
        if alias.upper() == wanted:
            return name
    raise KeyError(f"unknown GPU {gpu!r}; known GPUs: {', '.join(GPUS)}")


def instance_types_for(gpu: str, count: int) -> tuple[InstanceType, ...]:
    """Every instance type with exactly ``count`` of ``gpu``, cheapest first.

    Raises KeyError for an unknown GPU and ValueError for a count no instance type has (the message lists
    the counts that exist).
    """
    name = canonical_gpu(gpu)
    if count < 1:
        raise ValueError(f"gpu count must be at least 1, got {count}")
    matches = [t for t in INSTANCE_TYPES.values() if t.gpu == name and t.gpu_count == count]
    if not matches:
        counts = sorted({t.gpu_count for t in INSTANCE_TYPES.values() if t.gpu == name})
        raise ValueError(f"no instance type has {count}x {name}; available counts: {counts}")
    return tuple(sorted(matches, key=lambda t: (t.on_demand_usd_hour, t.vcpus)))


def smallest_instance_type(gpu: str, count: int) -> InstanceType:
    """The cheapest (hence smallest) instance type with exactly ``count`` of ``gpu``."""
    return instance_types_for(gpu, count)[0]


def instance_type(name: str) -> InstanceType:
    """Catalog entry of an instance type. Raises KeyError if the catalog does not know it."""
    try:
        return INSTANCE_TYPES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a GPU instance type in the catalog") from None


def regions_offering(instance_type_name: str) -> frozenset[str]:
    """Regions whose catalog entry offers the instance type's family."""
    return FAMILY_REGIONS[instance_type(instance_type_name).family]


def offered_in(instance_type_name: str, region: str) -> bool:
    """Whether the catalog says ``region`` offers the instance type (its family, really)."""
    return region in regions_offering(instance_type_name)


def gpu_regions(gpu: str) -> frozenset[str]:
    """Regions offering at least one instance family that carries ``gpu``."""
    info = GPUS[canonical_gpu(gpu)]
    return frozenset().union(*(FAMILY_REGIONS[f] for f in info.families))


Offered = Callable[[str, str], bool]
"""(instance type, region) -> whether the region offers it: :func:`offered_in`, or an account's recorded offerings
(:mod:`lmrun.aws.instances.availability`)."""


def choose_instance_type(
    gpu: str, count: int, region: str, *, spot: bool, offered: Offered = offered_in
) -> InstanceType:
    """The cheapest catalog instance type with ``count`` x ``gpu`` offered in ``region`` (and sold as spot
    when ``spot``). The spec has already refused combinations with no such type."""
    for candidate in instance_types_for(gpu, count):
        if offered(candidate.name, region) and (not spot or candidate.spot_usd_hour is not None):
            return candidate
    raise ValueError(f"no {count}x {gpu} instance type in {region}")


MAX_ALTERNATIVE_PRICE_RATIO = 1.5
"""How much more (on-demand list price) an alternative instance type of a spot node may cost than its chosen one."""


def alternative_instance_types(
    chosen: InstanceType, region: str, *, offered: Offered = offered_in
) -> tuple[InstanceType, ...]:
    """Spot pools a spot node's group may also launch into: the other catalog types with exactly its GPUs (model
    and count), offered in ``region`` and sold as spot, at most :data:`MAX_ALTERNATIVE_PRICE_RATIO` times its
    on-demand price, cheapest first (e.g. ``g6.2xlarge`` beside ``g6.xlarge``; ``g6.4xlarge`` costs 1.64x).

    Each type is its own spot capacity pool: capacity rebalancing ("configure your Auto Scaling group to use
    multiple instance types and Availability Zones", EC2 Auto Scaling User Guide, Capacity Rebalancing) and
    price-capacity-optimized allocation need more than one pool to move a node to when its pool runs dry.
    """
    cap = chosen.on_demand_usd_hour * MAX_ALTERNATIVE_PRICE_RATIO
    return tuple(
        candidate
        for candidate in instance_types_for(chosen.gpu, chosen.gpu_count)
        if candidate.name != chosen.name
        and candidate.spot_usd_hour is not None
        and candidate.on_demand_usd_hour <= cap
        and offered(candidate.name, region)
    )
