"""GPU vCPU quotas: read them with boto3 Service Quotas, compare them with what a stack's nodes need, and record
them in the stack (``lmrun quotas --write``) for the plan to place replica groups within.

Which quotas a node draws on, and how many vCPUs, is :mod:`lmrun.aws.instances.gpu_quotas` (the G and VT quotas
``L-DB2E81BA`` on-demand and ``L-3819A6DF`` spot; P instances draw on P quotas this module does not read:
:func:`unchecked_nodes` names their nodes). The needs come from the plan's own placement, replica groups
included, so ``lmrun quotas`` judges the fleet ``pulumi up`` would launch.

Reading (boto3) and judging (:func:`compare`, pure) are apart so the verdicts are tested without AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from lmrun.aws import NAME
from lmrun.aws.instances.gpu_quotas import ON_DEMAND_G_VT, QUOTA_NAMES, SPOT_G_VT, quota_draw
from lmrun.plan.groups import place_groups
from lmrun.plan.placement import cloud_placement
from lmrun.spec.errors import PlanError

if TYPE_CHECKING:
    from lmrun.plan.cluster import NodePlan
    from lmrun.spec import MeshSpec

__all__ = ["ON_DEMAND_G_VT", "QUOTA_NAMES", "SPOT_G_VT"]

SERVICE_CODE = "ec2"
DEFAULT_MAX_WORKERS = 8

Market = Literal["on-demand", "spot"]
Status = Literal["enough", "short", "unreadable", "missing"]

ClientFactory = Callable[[str], Any]
"""region -> a ``service-quotas`` client for that region."""


def request_url(region: str, code: str) -> str:
    """The console page where an operator requests an increase of ``code`` in ``region``."""
    return f"https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code}"


# ---- needs (pure) --------------------------------------------------------------------------------------------


def placed_nodes(spec: MeshSpec) -> list[NodePlan]:
    """The AWS nodes the plan would launch, replica groups and GPU pools included, each on the instance type it
    gets (raises :class:`PlanError` when a group cannot be placed). Nodes of site clouds count against their own cloud's
    quotas, not these."""
    groups = place_groups(spec)
    if groups.issues:
        raise PlanError(groups.issues)
    placer = cloud_placement(NAME)
    return [
        placer.place_node(node, spec, image="")
        for node in (*spec.nodes, *groups.nodes, *(node for _, node in groups.pool_nodes))
        if node.cloud == NAME and node.region is not None
    ]


def vcpu_needs(spec: MeshSpec) -> dict[str, tuple[int, int]]:
    """region -> (on-demand vCPUs, spot vCPUs) the stack's G/VT nodes need, from the instance types the plan
    allows each node (:func:`lmrun.aws.instances.gpu_quotas.quota_draw`)."""
    needs: dict[str, tuple[int, int]] = {}
    for node in placed_nodes(spec):
        draw = quota_draw(node.instance_type, node.alternative_instance_types, spot=node.spot)
        if draw is None:
            continue
        on_demand, spot = needs.get(node.region, (0, 0))
        if draw.code == SPOT_G_VT:
            spot += draw.vcpus
        else:
            on_demand += draw.vcpus
        needs[node.region] = (on_demand, spot)
    return dict(sorted(needs.items()))


def unchecked_nodes(spec: MeshSpec) -> dict[str, str]:
    """node name -> instance type, for nodes whose family the G and VT quotas do not cover (P instances)."""
    return {
        node.name: node.instance_type
        for node in placed_nodes(spec)
        if quota_draw(node.instance_type, (), spot=node.spot) is None
    }


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
    wanted = {
        region: [code for code, need in ((ON_DEMAND_G_VT, on_demand), (SPOT_G_VT, spot)) if need > 0]
        for region, (on_demand, spot) in sorted(needs.items())
    }
    return _read(wanted, client_factory=client_factory, max_workers=max_workers)


def read_every_quota(
    regions: Iterable[str], *, client_factory: ClientFactory | None = None, max_workers: int = DEFAULT_MAX_WORKERS
) -> dict[str, dict[str, QuotaReading]]:
    """Every quota lmrun records (:data:`QUOTA_NAMES`) in each of ``regions``, concurrently (``--write``)."""
    return _read(
        {region: list(QUOTA_NAMES) for region in sorted(set(regions))},
        client_factory=client_factory,
        max_workers=max_workers,
    )


def _read(
    wanted: Mapping[str, list[str]], *, client_factory: ClientFactory | None, max_workers: int
) -> dict[str, dict[str, QuotaReading]]:
    factory = client_factory or default_client_factory
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


def recorded_values(readings: Mapping[str, Mapping[str, QuotaReading]]) -> dict[str, dict[str, int]]:
    """``lmrun:quotas`` from readings: region -> code -> vCPUs (Service Quotas answers a float; vCPUs are whole)."""
    return {
        region: {code: int(reading.value) for code, reading in sorted(codes.items()) if reading.value is not None}
        for region, codes in sorted(readings.items())
    }


def unreadable(readings: Mapping[str, Mapping[str, QuotaReading]]) -> list[QuotaReading]:
    """The readings that have no value (each with its error)."""
    return [r for codes in readings.values() for r in codes.values() if r.value is None]


def overall(verdicts: Iterable[Verdict]) -> Status:
    """``short`` if any verdict is short, else ``unreadable`` if any could not be judged, else ``enough``."""
    statuses = {v.status for v in verdicts}
    if "short" in statuses:
        return "short"
    if statuses & {"unreadable", "missing"}:
        return "unreadable"
    return "enough"
