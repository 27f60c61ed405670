"""GPU vCPU quotas: read them with boto3 Service Quotas and compare them with what a stack's nodes need.

EC2 limits running instances per region by **vCPUs** per instance-family group, separately for on-demand
and spot. The mesh's G instances (g4dn, g5, g6, g6e) count against:

- ``L-DB2E81BA`` Running On-Demand G and VT instances,
- ``L-3819A6DF`` All G and VT Spot Instance Requests.

P instances (p4d, p5, ...) have quotas of their own (``L-417A185B`` / ``L-7212CCBC``) that this module does
not read; :func:`unchecked_nodes` names the nodes that would need them.

Reading (boto3) and judging (:func:`compare`, pure) are apart so the verdicts are tested without AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from lmrun.aws import NAME
from lmrun.aws.instances import catalog

if TYPE_CHECKING:
    from lmrun.spec import MeshSpec

SERVICE_CODE = "ec2"
ON_DEMAND_G_VT = "L-DB2E81BA"
"""Running On-Demand G and VT instances (vCPUs)."""
SPOT_G_VT = "L-3819A6DF"
"""All G and VT Spot Instance Requests (vCPUs)."""
QUOTA_NAMES = {ON_DEMAND_G_VT: "On-Demand G and VT vCPUs", SPOT_G_VT: "Spot G and VT vCPUs"}
DEFAULT_MAX_WORKERS = 8

Market = Literal["on-demand", "spot"]
Status = Literal["enough", "short", "unreadable", "missing"]

ClientFactory = Callable[[str], Any]
"""region -> a ``service-quotas`` client for that region."""


def request_url(region: str, code: str) -> str:
    """The console page where an operator requests an increase of ``code`` in ``region``."""
    return f"https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code}"


def counts_against_g_vt(instance_type: catalog.InstanceType) -> bool:
    """Whether the instance type's vCPUs count against the G and VT quotas."""
    return instance_type.family.startswith(("g", "vt"))


# ---- needs (pure) --------------------------------------------------------------------------------------------


def _node_types(spec: MeshSpec) -> Iterable[tuple[Any, catalog.InstanceType]]:
    for node in spec.nodes:
        if node.cloud != NAME or node.region is None:
            continue  # nodes of site clouds count against their own cloud's quotas, not these
        yield node, catalog.choose_instance_type(node.gpu, node.gpu_count, node.region, spot=node.use_spot)


def vcpu_needs(spec: MeshSpec) -> dict[str, tuple[int, int]]:
    """region -> (on-demand vCPUs, spot vCPUs) the stack's G/VT nodes need, from the instance types the plan
    allows each node (one instance per node; a spot node counts its largest alternative, which its group may
    launch; a capacity rebalance briefly runs a second instance beside it)."""
    needs: dict[str, tuple[int, int]] = {}
    for node, instance_type in _node_types(spec):
        if not counts_against_g_vt(instance_type):
            continue
        on_demand, spot = needs.get(node.region, (0, 0))
        if node.use_spot:
            alternatives = catalog.alternative_instance_types(instance_type, node.region)
            spot += max(t.vcpus for t in (instance_type, *alternatives))
        else:
            on_demand += instance_type.vcpus
        needs[node.region] = (on_demand, spot)
    return dict(sorted(needs.items()))


def unchecked_nodes(spec: MeshSpec) -> dict[str, str]:
    """node name -> instance type, for nodes whose family the G and VT quotas do not cover (P instances)."""
    return {node.name: t.name for node, t in _node_types(spec) if not counts_against_g_vt(t)}


# ---- reading (boto3) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaReading:
    """One quota in one region as read: ``value`` None when it could not be read (``error`` says why)."""

    region: str
    code: str
    value: float | None
    source: Literal["applied", "default"] | None = None
    error: str | None = None


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _error_code(exc: Exception) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def read_quota(client: Any, region: str, code: str) -> QuotaReading:
    """The applied value of ``code``; the AWS default where none is applied (NoSuchResourceException)."""
    try:
        quota = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code).get("Quota", {})
        if quota.get("Value") is not None:
            return QuotaReading(region, code, float(quota["Value"]), "applied")
    except (ClientError, BotoCoreError) as exc:
        if _error_code(exc) != "NoSuchResourceException":
            return QuotaReading(region, code, None, error=_error_text(exc))
    try:
        quota = client.get_aws_default_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code).get("Quota", {})
    except (ClientError, BotoCoreError) as exc:
        return QuotaReading(region, code, None, error=_error_text(exc))
    if quota.get("Value") is None:
        return QuotaReading(region, code, None, error="no applied or default value")
    return QuotaReading(region, code, float(quota["Value"]), "default")


def default_client_factory(region: str) -> Any:
    """A ``service-quotas`` client for ``region`` from the default credential chain."""
    import boto3  # type: ignore[import-untyped]

    return boto3.session.Session().client("service-quotas", region_name=region)


def read_quotas(
    needs: Mapping[str, tuple[int, int]],
    *,
    client_factory: ClientFactory | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> dict[str, dict[str, QuotaReading]]:
    """region -> quota code -> reading, for each quota with a need in ``needs`` (region -> (on-demand vCPUs,
    spot vCPUs)); regions are read concurrently."""
    factory = client_factory or default_client_factory
    wanted = {
        region: [code for code, need in ((ON_DEMAND_G_VT, on_demand), (SPOT_G_VT, spot)) if need > 0]
        for region, (on_demand, spot) in sorted(needs.items())
    }
    wanted = {region: codes for region, codes in wanted.items() if codes}

    def one(region: str) -> tuple[str, dict[str, QuotaReading]]:
        codes = wanted[region]
        try:
            client = factory(region)
        except (BotoCoreError, ClientError, ValueError) as exc:
            return region, {code: QuotaReading(region, code, None, error=_error_text(exc)) for code in codes}
        return region, {code: read_quota(client, region, code) for code in codes}

    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(wanted)))) as pool:
        return dict(pool.map(one, wanted))


# ---- verdicts (pure) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Needed vs available vCPUs of one market in one region."""

    region: str
    market: Market
    code: str
    needed: int
    available: float | None
    status: Status
    detail: str = ""

    @property
    def shortfall(self) -> int:
        """vCPUs missing (0 unless ``status`` is ``short``)."""
        if self.status != "short" or self.available is None:
            return 0
        return self.needed - int(self.available)

    @property
    def request_url(self) -> str:
        return request_url(self.region, self.code)

    @property
    def summary(self) -> str:
        if self.status == "enough":
            return "enough"
        if self.status == "short":
            return f"short by {self.shortfall} vCPUs"
        if self.status == "missing":
            return "region missing from the quota readings"
        return f"quota unreadable ({self.detail})" if self.detail else "quota unreadable"


def compare(needs: Mapping[str, tuple[int, int]], readings: Mapping[str, Mapping[str, QuotaReading]]) -> list[Verdict]:
    """One verdict per region and market with a need (sorted by region): enough, short by N, or why it
    cannot be judged (region not read at all, or the quota unreadable)."""
    verdicts: list[Verdict] = []
    for region, (on_demand, spot) in sorted(needs.items()):
        markets: tuple[tuple[Market, str, int], ...] = (
            ("on-demand", ON_DEMAND_G_VT, on_demand),
            ("spot", SPOT_G_VT, spot),
        )
        for market, code, needed in markets:
            if needed <= 0:
                continue
            region_readings = readings.get(region)
            if region_readings is None or code not in region_readings:
                verdicts.append(Verdict(region, market, code, needed, None, "missing"))
                continue
            reading = region_readings[code]
            if reading.value is None:
                verdicts.append(Verdict(region, market, code, needed, None, "unreadable", reading.error or ""))
                continue
            status: Status = "enough" if needed <= reading.value else "short"
            verdicts.append(Verdict(region, market, code, needed, reading.value, status, reading.source or ""))
    return verdicts


def overall(verdicts: Iterable[Verdict]) -> Status:
    """``short`` if any verdict is short, else ``unreadable`` if any could not be judged, else ``enough``."""
    statuses = {v.status for v in verdicts}
    if "short" in statuses:
        return "short"
    if statuses & {"unreadable", "missing"}:
        return "unreadable"
    return "enough"
