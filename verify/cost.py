"""The offline plan's cost estimate, from the recorded resources and the stack's exports (pure; no I/O).

Three figures, as the plan's ``--json`` reports them under ``"cost"``:

- ``fabric_monthly_usd``: what the network itself costs every month. VPCs, subnets, route tables, security
  groups, internet gateways and VPC peering are free; Transit Gateway attachments, Site-to-Site VPN connections
  and interface VPC endpoints are not.
- ``nat_monthly_usd``: the NAT gateways of the private subnets (SkyPilot's VMs): each gateway's hours, its
  Elastic IP, and the data it processes at an assumed volume per gateway (``nat``: the assumption and where it
  comes from, :data:`NAT_MONTHLY_GB_PER_GATEWAY`).
- ``control_plane_monthly_usd``: every non-GPU machine (K3s server, Phoenix, WireGuard gateway, CPU clients,
  found by resource type and instance type, not by name), its EBS volumes and public IPv4 addresses, and
  standalone EBS volumes (state and data disks) and Elastic IPs.
- ``gpu_hourly_usd``: the GPU fleet's instances per hour, from the ``nodes`` export (spot and on-demand
  beside it as ``gpu_hourly_usd_spot`` / ``gpu_hourly_usd_on_demand``). The GPU nodes' root volumes and
  public IPv4 addresses are reported apart as ``gpu_extras_hourly_usd``.

- ``elastic``: each elastic service's USD/hour at its baseline (``minReplicas``) and at ``maxReplicas`` (spot and
  on-demand parts), from the ``elasticServices`` export (:class:`lmrun.plan.elastic.ElasticCost` says what each
  figure assumes), and the SkyServe controller VM they share. Not in the GPU fleet's figures: they move with load.

- ``flow_logs_monthly_usd``: the flow logs of every logged network (an AWS ``FlowLog`` to S3, a GCP subnetwork
  with a ``logConfig``): the VMs found in it times an assumed volume per VM (``flow_logs``: the assumption and
  where it comes from, the ``flowLogs`` export of ``lmrun:flowLogs.monthlyGbPerVm``), priced per GB delivered
  (vended logs to S3, Cloud Logging ingestion) plus, on S3, the files the lifecycle keeps.

Prices: :mod:`lmrun.aws.prices`, :mod:`lmrun.aws.instances.catalog` and :mod:`lmrun.gcp.catalog` (list-price
snapshots; estimates). Usage-based charges (S3 storage, data transfer) are not in the totals; what
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
from lmrun.gcp import catalog as gcp_catalog
from lmrun.mock_engine.engine import RecordedResource
from lmrun.plan.backup import LIFECYCLE_LAG_DAYS, BackupStorage, backup_storage_from_export
from lmrun.plan.elastic import CONTROLLER_DISK_GB, CONTROLLER_INSTANCE_TYPE, controller_usd_hour
from lmrun.spec.flow_logs import DEFAULT_MONTHLY_GB_PER_VM, DEFAULT_RETENTION_DAYS
from lmrun.verify import tokens
from lmrun.verify.resources import Resource, Snapshot, flag, get, integer, items, number, plain
from lmrun.verify.sources import snapshot_of

Category = Literal["fabric", "control_plane", "gpu_extras", "flow_logs", "nat"]

DAYS_PER_MONTH = 365 / 12
GIB_PER_GB = 1e9 / 2**30
FLOW_LOG_NONCURRENT_DAYS = 1
"""The flow-log bucket keeps an expired file's noncurrent version a day (``lmrun.components.flow_logs``)."""
GCP_DEFAULT_FLOW_SAMPLING = 0.5
"""What GCP samples when a ``logConfig`` does not say (pulumi-gcp ``SubnetworkLogConfig.flow_sampling``)."""


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
class FlowLogVolume:
    """What the flow-log figure assumes: the volume per VM and where that number comes from."""

    monthly_gb_per_vm: float
    retention_days: int
    source: str
    """``lmrun:flowLogs.monthlyGbPerVm`` when the plan exported it, else the built-in default."""
    networks: int = 0
    """Networks with flow logs (AWS VPCs, GCP subnetworks)."""
    vms: int = 0
    """VMs in those networks (an auto-scaling group or managed instance group counts its target size)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "monthly_gb_per_vm": self.monthly_gb_per_vm,
            "source": self.source,
            "retention_days": self.retention_days,
            "networks": self.networks,
            "vms": self.vms,
            "usd_per_gb_delivered_s3": prices.VENDED_LOGS_TO_S3_USD_GB,
            "usd_per_gib_cloud_logging": gcp_catalog.CLOUD_LOGGING_USD_GIB,
        }


def flow_log_volume_from_export(export: Any) -> FlowLogVolume:
    """The assumption from the stack's ``flowLogs`` export; the built-in defaults when there is none (a stack
    planned before the option existed, a state without outputs)."""
    if isinstance(export, Mapping):
        gb = number(export.get("monthly_gb_per_vm"))
        days = number(export.get("retention_days"))
        if gb is not None and days is not None:
            return FlowLogVolume(gb, int(days), "lmrun:flowLogs.monthlyGbPerVm")
    return FlowLogVolume(
        DEFAULT_MONTHLY_GB_PER_VM, DEFAULT_RETENTION_DAYS, "built-in default (no flowLogs export in the plan)"
    )


NAT_MONTHLY_GB_PER_GATEWAY = 100.0
"""The volume a NAT gateway processes a month, assumed: what SkyPilot's private VMs download through it (each VM
launch fetches its packages, ~5 GB for vLLM and PyTorch, and its model, ~15 GB for an 8B model in 16 bits: about
five launches a month). Larger models or more launches scale it linearly: read the line's USD per GB."""


@dataclass(frozen=True)
class NatVolume:
    """What the NAT figure assumes: the gateways found and the volume each processes a month."""

    gateways: int
    monthly_gb_per_gateway: float = NAT_MONTHLY_GB_PER_GATEWAY
    source: str = "built-in assumption (lmrun.verify.cost.NAT_MONTHLY_GB_PER_GATEWAY)"

    def to_json(self) -> dict[str, Any]:
        return {
            "gateways": self.gateways,
            "monthly_gb_per_gateway": self.monthly_gb_per_gateway,
            "source": self.source,
            "usd_per_hour": prices.NAT_GATEWAY_USD_HOUR,
            "usd_per_gb_processed": prices.NAT_GATEWAY_USD_GB,
        }


@dataclass(frozen=True)
class ElasticServiceCost:
    """One elastic service's USD/hour, as the plan exported it."""

    name: str
    baseline_usd_hour: float
    max_spot_usd_hour: float
    max_on_demand_usd_hour: float
    basis: str
    """What the figures assume, in words (the table's and the JSON's explanation)."""

    @property
    def max_usd_hour(self) -> float:
        return self.max_spot_usd_hour + self.max_on_demand_usd_hour

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "baseline_usd_hour": round(self.baseline_usd_hour, 4),
            "max_spot_usd_hour": round(self.max_spot_usd_hour, 4),
            "max_on_demand_usd_hour": round(self.max_on_demand_usd_hour, 4),
            "max_usd_hour": round(self.max_usd_hour, 4),
            "basis": self.basis,
        }


CONTROLLER_BASIS = (
    f"SkyServe controller: {CONTROLLER_INSTANCE_TYPE} on demand in the main region (what SkyPilot launches for "
    f"cpus 2+, memory 8+) and its {CONTROLLER_DISK_GB} GB gp3 disk, shared by every elastic service"
)


def _elastic_basis(name: str, service: Mapping[str, Any]) -> str:
    regions = [plain(r) for r in items(service.get("spot_regions"))]
    first = regions[0] if regions else {}
    base, low, high = (integer(service.get(k)) or 0 for k in ("base_on_demand", "min_replicas", "max_replicas"))
    fallback = flag(service.get("dynamic_ondemand_fallback"))
    return (
        f"{name}: baseline = {base} on the K3s GPU pool ($0 extra: its nodes are priced as declared nodes) + "
        f"{low - base} spot x {get(first, 'spot_usd_hour')}/h ({get(first, 'instance_type')} in "
        f"{get(first, 'region')}, the first spot region); at maxReplicas {high}: {high - base} spot at the highest "
        f"spot price of {', '.join(str(get(r, 'region')) for r in regions)}"
        + (
            " + as many on demand at the highest on-demand price (dynamicOndemandFallback, worst case)"
            if fallback
            else "; no on-demand part (dynamicOndemandFallback off)"
        )
    )


def elastic_costs(export: Any) -> tuple[ElasticServiceCost, ...]:
    """Each elastic service's figures from the ``elasticServices`` export, in name order."""
    services = plain(export) if isinstance(plain(export), Mapping) else {}
    return tuple(
        ElasticServiceCost(
            name=str(name),
            baseline_usd_hour=_number(get(service, "baseline_usd_hour")),
            max_spot_usd_hour=_number(get(service, "max_spot_usd_hour")),
            max_on_demand_usd_hour=_number(get(service, "max_on_demand_usd_hour")),
            basis=_elastic_basis(str(name), plain(service)),
        )
        for name, service in sorted(services.items())
        if isinstance(plain(service), Mapping)
    )


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
    flow_logs_monthly_usd: float = 0.0
    flow_logs: FlowLogVolume | None = None
    """The flow logs' volume assumption; None when no network logs its flows."""
    elastic: tuple[ElasticServiceCost, ...] = ()
    """Each elastic service's USD/hour (baseline, at maxReplicas); not in the GPU fleet's figures."""
    nat_monthly_usd: float = 0.0
    nat: NatVolume | None = None
    """The NAT gateways' volume assumption; None when there is no NAT gateway."""
    snapshot: str = prices.SNAPSHOT
    price_region: str = prices.PRICE_REGION

    @property
    def gpu_hourly_usd(self) -> float:
        return self.gpu_hourly_usd_spot + self.gpu_hourly_usd_on_demand

    @property
    def elastic_controller_usd_hour(self) -> float:
        """The SkyServe controller VM, when the stack has elastic services."""
        return controller_usd_hour() if self.elastic else 0.0

    @property
    def elastic_baseline_usd_hour(self) -> float:
        return sum((e.baseline_usd_hour for e in self.elastic), self.elastic_controller_usd_hour)

    @property
    def elastic_max_usd_hour(self) -> float:
        return sum((e.max_usd_hour for e in self.elastic), self.elastic_controller_usd_hour)

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
            "flow_logs_monthly_usd": round(self.flow_logs_monthly_usd, 2),
            "flow_logs": self.flow_logs.to_json() if self.flow_logs is not None else None,
            "elastic": (
                {
                    "services": [e.to_json() for e in self.elastic],
                    "controller_usd_hour": round(self.elastic_controller_usd_hour, 4),
                    "controller": CONTROLLER_BASIS,
                    "baseline_usd_hour": round(self.elastic_baseline_usd_hour, 4),
                    "max_usd_hour": round(self.elastic_max_usd_hour, 4),
                }
                if self.elastic
                else None
            ),
            "nat_monthly_usd": round(self.nat_monthly_usd, 2),
            "nat": self.nat.to_json() if self.nat is not None else None,
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

    # --- flow logs: VMs per logged network, times the assumed volume ----------------------------------------
    def _vpc_of_subnets(self, resource: Resource, path: str) -> Resource | None:
        for subnet in self.snapshot.refs(resource, path, (tokens.SUBNET,)):
            vpc = self.snapshot.ref(subnet, "vpcId", (tokens.VPC,))
            if vpc is not None:
                return vpc
        return None

    def _aws_vms(self) -> dict[str, int]:
        """VPC URN -> VMs in it (instances, and each auto-scaling group's desired capacity)."""
        found: dict[str, int] = {}
        for instance in self.snapshot.of_type(tokens.INSTANCE):
            vpc = self._vpc_of_subnets(instance, "subnetId")
            if vpc is not None:
                found[vpc.urn] = found.get(vpc.urn, 0) + 1
        for group in self.snapshot.of_type(tokens.AUTOSCALING_GROUP):
            vpc = self._vpc_of_subnets(group, "vpcZoneIdentifiers")
            if vpc is not None:
                size = _number(get(group.inputs, "desiredCapacity"), _number(get(group.inputs, "minSize"), 1.0))
                found[vpc.urn] = found.get(vpc.urn, 0) + int(size)
        return found

    def _gcp_vms(self) -> dict[str, int]:
        """Subnetwork URN -> VMs in it (instances, and each managed instance group's target size)."""
        snapshot = self.snapshot
        found: dict[str, int] = {}

        def subnets(resource: Resource) -> set[str]:
            interfaces = items(get(resource.inputs, "networkInterfaces"))
            return {
                subnet.urn
                for index in range(len(interfaces))
                for subnet in snapshot.refs(
                    resource, ("networkInterfaces", index, "subnetwork"), (tokens.GCP_SUBNETWORK,)
                )
            }

        for instance in snapshot.of_type(tokens.GCP_INSTANCE):
            for urn in subnets(instance):
                found[urn] = found.get(urn, 0) + 1
        for group in snapshot.of_type(tokens.GCP_INSTANCE_GROUP_MANAGER, tokens.GCP_REGION_INSTANCE_GROUP_MANAGER):
            size = int(_number(get(group.inputs, "targetSize"), 1.0))
            # The whole ``versions`` input: a template's self link is no id; it resolves through the dependencies.
            template_types = (tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE)
            templates = snapshot.refs(group, "versions", template_types)
            for urn in {u for template in templates for u in subnets(template)}:
                found[urn] = found.get(urn, 0) + size
        return found

    def flow_logs(self, volume: FlowLogVolume) -> FlowLogVolume:
        """One item per logged network with VMs in it; the volume assumption with what it covered."""
        networks = vms = 0
        gb_per_vm = volume.monthly_gb_per_vm
        # Each file stays its retention, up to a day more (lifecycle rounding) and a noncurrent day after it.
        kept_months = (volume.retention_days + LIFECYCLE_LAG_DAYS + FLOW_LOG_NONCURRENT_DAYS) / DAYS_PER_MONTH
        aws_vms = self._aws_vms()
        for flow_log in self.snapshot.of_type(tokens.FLOW_LOG):
            networks += 1
            vpc = self.snapshot.ref(flow_log, "vpcId", (tokens.VPC,))
            count = aws_vms.get(vpc.urn, 0) if vpc is not None else 0
            vms += count
            destination = str(get(flow_log.inputs, "logDestinationType") or "cloud-watch-logs")
            if destination != "s3":
                self.unpriced.append(f"{flow_log.name}: flow logs to {destination} (priced for S3 only)")
                continue
            if count:
                gb = count * gb_per_vm
                usd = gb * prices.VENDED_LOGS_TO_S3_USD_GB + gb * kept_months * prices.S3_STANDARD_USD_GB_MONTH
                what = f"{count} VM(s) x {gb_per_vm:g} GB/month to S3, kept {volume.retention_days} d"
                self.add("flow_logs", flow_log, what, usd)
        gcp_vms = self._gcp_vms()
        for subnet in self.snapshot.of_type(tokens.GCP_SUBNETWORK):
            config = get(subnet.inputs, "logConfig")
            if not isinstance(config, Mapping):
                continue
            networks += 1
            count = gcp_vms.get(subnet.urn, 0)
            vms += count
            if count:
                sampling = _number(get(config, "flowSampling"), GCP_DEFAULT_FLOW_SAMPLING)
                gib = count * gb_per_vm * sampling * GIB_PER_GB
                what = f"{count} VM(s) x {gb_per_vm:g} GB/month x {sampling:g} sampled, to Cloud Logging"
                self.add("flow_logs", subnet, what, gib * gcp_catalog.CLOUD_LOGGING_USD_GIB)
        return FlowLogVolume(gb_per_vm, volume.retention_days, volume.source, networks, vms)

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
                category: Category = "nat" if resource.urn in nat_eips else "control_plane"
                self.add(category, resource, "Elastic IP", _hourly_to_monthly(prices.PUBLIC_IPV4_USD_HOUR))
            elif type_ == tokens.NAT_GATEWAY:
                self.add("nat", resource, "NAT gateway hours", _hourly_to_monthly(prices.NAT_GATEWAY_USD_HOUR))
                gb = NAT_MONTHLY_GB_PER_GATEWAY
                self.add("nat", resource, f"{gb:g} GB/month processed (assumed)", gb * prices.NAT_GATEWAY_USD_GB)
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
    flow_logs = estimator.flow_logs(flow_log_volume_from_export(outputs.get("flowLogs")))
    items = tuple(estimator.items)

    def total(category: Category) -> float:
        return sum((item.monthly_usd for item in items if item.category == category), 0.0)

    spot, on_demand = _gpu_hourly(outputs.get("nodes"))
    gateways = snapshot.of_type(tokens.NAT_GATEWAY)
    return CostEstimate(
        fabric_monthly_usd=total("fabric"),
        control_plane_monthly_usd=total("control_plane"),
        gpu_hourly_usd_spot=spot,
        gpu_hourly_usd_on_demand=on_demand,
        gpu_extras_hourly_usd=total("gpu_extras") / prices.HOURS_PER_MONTH,
        items=items,
        unpriced=tuple(sorted(estimator.unpriced)),  # stable whatever order the engine registered in
        phoenix_backup=backup_storage_from_export(outputs.get("phoenixBackup")),
        flow_logs_monthly_usd=total("flow_logs"),
        flow_logs=flow_logs if flow_logs.networks else None,
        elastic=elastic_costs(outputs.get("elasticServices")),
        nat_monthly_usd=total("nat"),
        nat=NatVolume(len(gateways)) if gateways else None,
    )
