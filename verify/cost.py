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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lmrun.aws import prices
from lmrun.aws.instances import catalog
from lmrun.mock_engine.engine import RecordedResource
from lmrun.plan.backup import BackupStorage, backup_storage_from_export
from lmrun.verify import tokens
from lmrun.verify.resources import Resource, Snapshot, flag, get, number, plain
from lmrun.verify.sources import snapshot_of

Category = Literal["fabric", "control_plane", "gpu_extras"]


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
# Reading inputs (the reader's accessors: secrets unwrapped, unknowns read as missing)


def _number(value: Any, default: float = 0.0) -> float:
    """A numeric input; ``default`` when missing or unknown."""
    found = number(value)
    return default if found is None else found


def is_gpu_instance_type(instance_type: str) -> bool:
    return instance_type in catalog.INSTANCE_TYPES


def _hourly_to_monthly(usd_hour: float) -> float:
    return usd_hour * prices.HOURS_PER_MONTH


# ----------------------------------------------------------------------------------------------------------
# Estimating


class _Estimator:
    def __init__(self, snapshot: Snapshot, fleet_machines: frozenset[str] = frozenset()) -> None:
        self.snapshot = snapshot
        self.items: list[CostItem] = []
        self.unpriced: list[str] = []
        self.fleet_machines = fleet_machines
        """Machine types of the ``nodes`` export: their hours are the GPU fleet's, priced there."""

    def add(self, category: Category, resource: Resource, what: str, monthly_usd: float) -> None:
        self.items.append(CostItem(category, resource.name, what, monthly_usd))

    def public_ipv4(self, resource: Resource, explicit: Any) -> bool:
        """Whether the machine gets an auto-assigned public IPv4: its own setting, else its subnets'."""
        own = flag(explicit)
        if own is not None:
            return own
        return any(
            flag(get(s.inputs, "mapPublicIpOnLaunch")) for s in self.snapshot.depends_on(resource, tokens.SUBNET)
        )

    def volume(self, category: Category, resource: Resource, spec: Any, what: str, count: int = 1) -> None:
        volume_type = str(get(spec, "volumeType") or get(spec, "type") or prices.DEFAULT_VOLUME_TYPE)
        size = _number(get(spec, "volumeSize") or get(spec, "size"), prices.DEFAULT_ROOT_VOLUME_GB)
        monthly = prices.ebs_usd_month(
            volume_type, size, iops=_number(get(spec, "iops")), throughput=_number(get(spec, "throughput"))
        )
        if monthly is None:
            self.unpriced.append(f"{resource.name}: EBS volume type {volume_type!r}")
            return
        times = f"{count} x " if count != 1 else ""
        self.add(category, resource, f"{what}: {times}{size:g} GB {volume_type}", monthly * count)

    def machine(
        self,
        resource: Resource,
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

    def instance(self, resource: Resource) -> None:
        inputs = resource.inputs
        instance_type = str(get(inputs, "instanceType") or "")
        volumes: list[tuple[Any, str]] = [(get(inputs, "rootBlockDevice") or {}, "root volume")]
        volumes += [(device, "EBS volume") for device in get(inputs, "ebsBlockDevices") or []]
        # An Elastic IP on the instance replaces its auto-assigned address (and is priced as the Eip).
        has_eip = bool(self.snapshot.dependents(resource, tokens.EIP, tokens.EIP_ASSOCIATION))
        public = not has_eip and self.public_ipv4(resource, get(inputs, "associatePublicIpAddress"))
        self.machine(resource, instance_type, volumes, public)

    def group(self, resource: Resource) -> None:
        templates = self.snapshot.depends_on(resource, tokens.LAUNCH_TEMPLATE)
        if not templates:
            self.unpriced.append(f"{resource.name}: auto scaling group without a launch template in the plan")
            return
        template = templates[0].inputs
        count = int(_number(get(resource.inputs, "desiredCapacity"), _number(get(resource.inputs, "minSize"), 1.0)))
        instance_type = str(get(template, "instanceType") or "")
        mappings = get(template, "blockDeviceMappings") or []
        volumes = [(get(m, "ebs") or {}, "root volume" if i == 0 else "EBS volume") for i, m in enumerate(mappings)]
        volumes = volumes or [({}, "root volume")]  # the AMI's own root volume
        explicit = get(template, "networkInterfaces", 0, "associatePublicIpAddress")
        self.machine(resource, instance_type, volumes, self.public_ipv4(resource, explicit), count)

    def run(self) -> None:
        snapshot = self.snapshot
        nat_eips = {
            eip.urn for nat in snapshot.of_type(tokens.NAT_GATEWAY) for eip in snapshot.depends_on(nat, tokens.EIP)
        }
        for resource in snapshot.resources:
            type_ = resource.type
            if type_ == tokens.INSTANCE:
                self.instance(resource)
            elif type_ == tokens.AUTOSCALING_GROUP:
                self.group(resource)
            elif type_ == tokens.EBS_VOLUME:
                self.volume("control_plane", resource, resource.inputs, "EBS volume")
            elif type_ == tokens.EIP:
                category: Category = "fabric" if resource.urn in nat_eips else "control_plane"
                self.add(category, resource, "Elastic IP", _hourly_to_monthly(prices.PUBLIC_IPV4_USD_HOUR))
            elif type_ == tokens.NAT_GATEWAY:
                self.add("fabric", resource, "NAT gateway", _hourly_to_monthly(prices.NAT_GATEWAY_USD_HOUR))
            elif type_ in tokens.TGW_ATTACHMENTS:
                monthly = _hourly_to_monthly(prices.TRANSIT_GATEWAY_ATTACHMENT_USD_HOUR)
                self.add("fabric", resource, "Transit Gateway attachment", monthly)
            elif type_ == tokens.VPN_CONNECTION:
                self.add("fabric", resource, "Site-to-Site VPN", _hourly_to_monthly(prices.VPN_CONNECTION_USD_HOUR))
            elif type_ == tokens.VPC_ENDPOINT and str(get(resource.inputs, "vpcEndpointType")) == "Interface":
                azs = max(1, len(get(resource.inputs, "subnetIds") or []))
                monthly = _hourly_to_monthly(prices.INTERFACE_ENDPOINT_USD_HOUR) * azs
                self.add("fabric", resource, f"interface VPC endpoint in {azs} AZ(s)", monthly)
            elif type_ in tokens.GCP_UNPRICED_COMPUTE:
                machine = get(resource.inputs, "machineType")
                if machine in self.fleet_machines:  # a site's GPU node: one price, in one table
                    self.unpriced.append(
                        f"{resource.name}: {type_} disks (its {machine} machine is priced in the GPU fleet)"
                    )
                else:
                    self.unpriced.append(f"{resource.name}: {type_} (no GCP prices in lmrun.aws.prices)")


def _gpu_hourly(nodes: Any) -> tuple[float, float]:
    spot = on_demand = 0.0
    for node in (plain(nodes) or {}).values():
        node = plain(node)
        hourly = _number(get(node, "hourly_usd"))
        if flag(get(node, "spot")):
            spot += hourly
        else:
            on_demand += hourly
    return spot, on_demand


def estimate_cost(
    resources: Snapshot | Sequence[Resource | RecordedResource], outputs: Mapping[str, Any] | None = None
) -> CostEstimate:
    """The plan's cost estimate from its resources and exports (``nodes`` gives the GPU instance-hours; the
    snapshot's own outputs when ``outputs`` is None). Linear: dependencies are indexed both ways once."""
    snapshot = snapshot_of(resources)
    outputs = snapshot.outputs if outputs is None else outputs
    fleet = plain(outputs.get("nodes")) or {}
    machines = frozenset(
        str(get(plain(node), "instance_type")) for node in (fleet.values() if isinstance(fleet, Mapping) else ())
    )
    estimator = _Estimator(snapshot, machines)
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
        unpriced=tuple(sorted(estimator.unpriced)),  # stable whatever order the engine registered in
        phoenix_backup=backup_storage_from_export(outputs.get("phoenixBackup")),
    )
