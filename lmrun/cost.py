"""The offline plan's cost estimate, from the recorded resources and the stack's exports (pure; no I/O).

Three figures, as the plan's ``--json`` reports them under ``"cost"``:

- ``fabric_monthly_usd``: what the network itself costs every month. VPCs, subnets, route tables, security
  groups, internet gateways and VPC peering are free; NAT gateways, Transit Gateway attachments, Site-to-Site
  VPN connections, interface VPC endpoints and the Elastic IPs of NAT gateways are not.
- ``control_plane_monthly_usd``: every non-GPU machine (K3s server, Phoenix, WireGuard gateway, CPU clients,
  found by resource type and instance type, not by name), its EBS volumes and public IPv4 addresses, and
  standalone EBS volumes (state and data disks) and Elastic IPs.
- ``gpu_hourly_usd``: the GPU fleet's instances per hour, from the ``nodes`` export (spot and on-demand
  beside it as ``gpu_hourly_usd_spot`` / ``gpu_hourly_usd_on_demand``). The GPU nodes' root volumes and
  public IPv4 addresses are reported apart as ``gpu_extras_hourly_usd``.

Prices: :mod:`lmrun.aws.prices` and :mod:`lmrun.aws.instances.catalog` (us-east-1 list-price snapshots;
estimates). Usage-based charges (S3 storage, data transfer, NAT data processing) are not in the totals; what
the tables cannot price is listed under ``unpriced`` rather than counted as $0. Phoenix's S3 backups are
estimated apart (``phoenix_backup``: copies kept and USD/month per GB of database, :mod:`lmrun.plan.backup`),
since their size is the database's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lmrun.aws import prices
from lmrun.aws.instances import catalog
from lmrun.plan.backup import BackupStorage, backup_storage_from_export

Category = Literal["fabric", "control_plane", "gpu_extras"]

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AUTOSCALING_GROUP = "aws:autoscaling/group:Group"
VOLUME = "aws:ebs/volume:Volume"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
VPN_CONNECTION = "aws:ec2/vpnConnection:VpnConnection"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
TGW_ATTACHMENTS = frozenset(
    {
        "aws:ec2transitgateway/vpcAttachment:VpcAttachment",
        "aws:ec2transitgateway/peeringAttachment:PeeringAttachment",
        "aws:ec2transitgateway/connect:Connect",
    }
)
UNPRICED_COMPUTE_PREFIXES = ("gcp:compute/instance:", "gcp:compute/instanceTemplate:", "gcp:compute/address:")
"""Resources that cost money but have no price table here (GCP sites): listed as unpriced."""


class PlannedResource(Protocol):
    """What the estimate reads of a resource (``lmrun.mock_engine.RecordedResource`` fits)."""

    @property
    def urn(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Any]: ...
    @property
    def dependencies(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class CostItem:
    """One priced line: a resource (or a part of it) and its monthly cost."""

    category: Category
    resource: str
    what: str
    monthly_usd: float

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "resource": self.resource,
            "what": self.what,
            "monthly_usd": round(self.monthly_usd, 2),
        }


@dataclass(frozen=True)
class CostEstimate:
    """The plan's estimate; see the module docstring for what each figure covers."""

    fabric_monthly_usd: float
    control_plane_monthly_usd: float
    gpu_hourly_usd_spot: float
    gpu_hourly_usd_on_demand: float
    gpu_extras_hourly_usd: float
    items: tuple[CostItem, ...] = ()
    unpriced: tuple[str, ...] = ()
    phoenix_backup: BackupStorage | None = None
    """Phoenix's S3 backups: copies kept and USD/month per GB of database (usage-based, not in the totals)."""
    snapshot: str = prices.SNAPSHOT
    price_region: str = prices.PRICE_REGION

    @property
    def gpu_hourly_usd(self) -> float:
        return self.gpu_hourly_usd_spot + self.gpu_hourly_usd_on_demand

    def to_json(self) -> dict[str, Any]:
        return {
            "fabric_monthly_usd": round(self.fabric_monthly_usd, 2),
            "control_plane_monthly_usd": round(self.control_plane_monthly_usd, 2),
            "gpu_hourly_usd": round(self.gpu_hourly_usd, 4),
            "gpu_hourly_usd_spot": round(self.gpu_hourly_usd_spot, 4),
            "gpu_hourly_usd_on_demand": round(self.gpu_hourly_usd_on_demand, 4),
            "gpu_extras_hourly_usd": round(self.gpu_extras_hourly_usd, 4),
            "hours_per_month": prices.HOURS_PER_MONTH,
            "price_snapshot": self.snapshot,
            "price_region": self.price_region,
            "items": [item.to_json() for item in self.items],
            "unpriced": list(self.unpriced),
            "phoenix_backup": self.phoenix_backup.to_json() if self.phoenix_backup is not None else None,
        }


# ----------------------------------------------------------------------------------------------------------
# Reading inputs


def _plain(value: Any) -> Any:
    """``lmrun.mock_engine.Secret`` wrappers unwrapped (read by shape: this module imports no Pulumi)."""
    while type(value).__name__ == "Secret" and hasattr(value, "value"):
        value = value.value
    return value


def _get(inputs: Any, *path: str | int) -> Any:
    current = _plain(inputs)
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list | tuple) or step >= len(current):
                return None
            current = _plain(current[step])
        else:
            if not isinstance(current, Mapping):
                return None
            current = _plain(current.get(step))
    return current


def _number(value: Any, default: float = 0.0) -> float:
    """A numeric input (the engine may hand ``"256"``); ``default`` when missing or unknown."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _flag(value: Any) -> bool | None:
    """A boolean input (``True`` or ``"true"``); None when missing or unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def is_gpu_instance_type(instance_type: str) -> bool:
    return instance_type in catalog.INSTANCE_TYPES


def _hourly_to_monthly(usd_hour: float) -> float:
    return usd_hour * prices.HOURS_PER_MONTH


# ----------------------------------------------------------------------------------------------------------
# Estimating


class _Estimator:
    def __init__(self, resources: Sequence[PlannedResource]) -> None:
        self.resources = resources
        self.by_urn = {r.urn: r for r in resources}
        self.items: list[CostItem] = []
        self.unpriced: list[str] = []

    def add(self, category: Category, resource: PlannedResource, what: str, monthly_usd: float) -> None:
        self.items.append(CostItem(category, resource.name, what, monthly_usd))

    def depends_on(self, resource: PlannedResource, type_: str) -> list[PlannedResource]:
        found = (self.by_urn.get(urn) for urn in resource.dependencies)
        return [r for r in found if r is not None and r.type == type_]

    def dependents(self, target: PlannedResource, types: Iterable[str]) -> list[PlannedResource]:
        wanted = set(types)
        return [r for r in self.resources if r.type in wanted and target.urn in r.dependencies]

    def public_ipv4(self, resource: PlannedResource, explicit: Any) -> bool:
        """Whether the machine gets an auto-assigned public IPv4: its own setting, else its subnets'."""
        flag = _flag(explicit)
        if flag is not None:
            return flag
        return any(_flag(_get(s.inputs, "mapPublicIpOnLaunch")) for s in self.depends_on(resource, SUBNET))

    def volume(self, category: Category, resource: PlannedResource, spec: Any, what: str, count: int = 1) -> None:
        volume_type = str(_get(spec, "volumeType") or _get(spec, "type") or prices.DEFAULT_VOLUME_TYPE)
        size = _number(_get(spec, "volumeSize") or _get(spec, "size"), prices.DEFAULT_ROOT_VOLUME_GB)
        monthly = prices.ebs_usd_month(
            volume_type, size, iops=_number(_get(spec, "iops")), throughput=_number(_get(spec, "throughput"))
        )
        if monthly is None:
            self.unpriced.append(f"{resource.name}: EBS volume type {volume_type!r}")
            return
        times = f"{count} x " if count != 1 else ""
        self.add(category, resource, f"{what}: {times}{size:g} GB {volume_type}", monthly * count)

    def machine(
        self,
        resource: PlannedResource,
        instance_type: str,
        volumes: list[tuple[Any, str]],
        public_ip: bool,
        count: int = 1,
    ) -> None:
        gpu = is_gpu_instance_type(instance_type)
        category: Category = "gpu_extras" if gpu else "control_plane"
        times = f"{count} x " if count != 1 else ""
        if not gpu:  # GPU instance-hours come from the nodes export
            usd_hour = prices.instance_usd_hour(instance_type)
            if usd_hour is None:
                self.unpriced.append(f"{resource.name}: instance type {instance_type!r}")
            else:
                self.add(category, resource, f"{times}{instance_type} instance", _hourly_to_monthly(usd_hour) * count)
        for spec, what in volumes:
            self.volume(category, resource, spec, what, count)
        if public_ip:
            monthly = _hourly_to_monthly(prices.PUBLIC_IPV4_USD_HOUR) * count
            self.add(category, resource, f"{times}public IPv4 address", monthly)

    def instance(self, resource: PlannedResource) -> None:
        inputs = resource.inputs
        instance_type = str(_get(inputs, "instanceType") or "")
        volumes: list[tuple[Any, str]] = [(_get(inputs, "rootBlockDevice") or {}, "root volume")]
        volumes += [(device, "EBS volume") for device in _get(inputs, "ebsBlockDevices") or []]
        # An Elastic IP on the instance replaces its auto-assigned address (and is priced as the Eip).
        has_eip = bool(self.dependents(resource, (EIP, EIP_ASSOCIATION)))
        public = not has_eip and self.public_ipv4(resource, _get(inputs, "associatePublicIpAddress"))
        self.machine(resource, instance_type, volumes, public)

    def group(self, resource: PlannedResource) -> None:
        templates = self.depends_on(resource, LAUNCH_TEMPLATE)
        if not templates:
            self.unpriced.append(f"{resource.name}: auto scaling group without a launch template in the plan")
            return
        template = templates[0].inputs
        count = int(_number(_get(resource.inputs, "desiredCapacity"), _number(_get(resource.inputs, "minSize"), 1.0)))
        instance_type = str(_get(template, "instanceType") or "")
        mappings = _get(template, "blockDeviceMappings") or []
        volumes = [(_get(m, "ebs") or {}, "root volume" if i == 0 else "EBS volume") for i, m in enumerate(mappings)]
        volumes = volumes or [({}, "root volume")]  # the AMI's own root volume
        explicit = _get(template, "networkInterfaces", 0, "associatePublicIpAddress")
        self.machine(resource, instance_type, volumes, self.public_ipv4(resource, explicit), count)

    def run(self) -> None:
        nat_eips = {
            urn
            for nat in self.resources
            if nat.type == NAT_GATEWAY
            for urn in nat.dependencies
            if urn in self.by_urn and self.by_urn[urn].type == EIP
        }
        for resource in self.resources:
            type_ = resource.type
            if type_ == INSTANCE:
                self.instance(resource)
            elif type_ == AUTOSCALING_GROUP:
                self.group(resource)
            elif type_ == VOLUME:
                self.volume("control_plane", resource, resource.inputs, "EBS volume")
            elif type_ == EIP:
                category: Category = "fabric" if resource.urn in nat_eips else "control_plane"
                self.add(category, resource, "Elastic IP", _hourly_to_monthly(prices.PUBLIC_IPV4_USD_HOUR))
            elif type_ == NAT_GATEWAY:
                self.add("fabric", resource, "NAT gateway", _hourly_to_monthly(prices.NAT_GATEWAY_USD_HOUR))
            elif type_ in TGW_ATTACHMENTS:
                monthly = _hourly_to_monthly(prices.TRANSIT_GATEWAY_ATTACHMENT_USD_HOUR)
                self.add("fabric", resource, "Transit Gateway attachment", monthly)
            elif type_ == VPN_CONNECTION:
                self.add("fabric", resource, "Site-to-Site VPN", _hourly_to_monthly(prices.VPN_CONNECTION_USD_HOUR))
            elif type_ == VPC_ENDPOINT and str(_get(resource.inputs, "vpcEndpointType")) == "Interface":
                azs = max(1, len(_get(resource.inputs, "subnetIds") or []))
                monthly = _hourly_to_monthly(prices.INTERFACE_ENDPOINT_USD_HOUR) * azs
                self.add("fabric", resource, f"interface VPC endpoint in {azs} AZ(s)", monthly)
            elif type_.startswith(UNPRICED_COMPUTE_PREFIXES):
                self.unpriced.append(f"{resource.name}: {type_} (no GCP prices in lmrun.aws.prices)")


def _gpu_hourly(nodes: Any) -> tuple[float, float]:
    spot = on_demand = 0.0
    for node in (_plain(nodes) or {}).values():
        node = _plain(node)
        hourly = _number(_get(node, "hourly_usd"))
        if _flag(_get(node, "spot")):
            spot += hourly
        else:
            on_demand += hourly
    return spot, on_demand


def estimate_cost(resources: Sequence[PlannedResource], outputs: Mapping[str, Any]) -> CostEstimate:
    """The plan's cost estimate from its resources and exports (``nodes`` gives the GPU instance-hours)."""
    estimator = _Estimator(resources)
    estimator.run()
    items = tuple(estimator.items)

    def total(category: Category) -> float:
        return sum((item.monthly_usd for item in items if item.category == category), 0.0)

    spot, on_demand = _gpu_hourly(outputs.get("nodes"))
    return CostEstimate(
        fabric_monthly_usd=total("fabric"),
        control_plane_monthly_usd=total("control_plane"),
        gpu_hourly_usd_spot=spot,
        gpu_hourly_usd_on_demand=on_demand,
        gpu_extras_hourly_usd=total("gpu_extras") / prices.HOURS_PER_MONTH,
        items=items,
        unpriced=tuple(estimator.unpriced),
        phoenix_backup=backup_storage_from_export(outputs.get("phoenix")),
    )
