"""Live GPU offerings per region: the only boto3 code of ``lmrun regions sync``.

Why it lives here and only here: which regions carry a spoke (and which AZs get a subnet) decides how
many resources the stack has, so it must be known before ``pulumi up`` starts. ``lmrun regions sync``
asks EC2 once, writes the answer into the stack file, and the program never calls AWS to plan.

An account sees ~34 regions and each answers in a few hundred milliseconds, so the regions are asked
concurrently. A region that refuses (not enabled for the account, an SCP, a flaky endpoint) is reported
and skipped: one bad region must not stop the operator from syncing the other thirty.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lmrun.aws.region.catalog import REGIONS
from lmrun.aws.region.selection import ROGUE_REGIONS
from lmrun.domain.errors import LmrunError

if TYPE_CHECKING:
    import boto3  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

ENABLED_OPT_IN_STATUSES = frozenset({"opted-in", "opt-in-not-required"})
"""``describe_regions`` opt-in statuses under which the account can create resources in a region."""

DEFAULT_MAX_WORKERS = 8
"""Concurrent regions: enough to finish ~34 regions in a few round trips, few enough to stay far from
EC2's API rate limits and botocore's default connection pool (10 per client)."""


class OfferingsError(LmrunError):
    """The account's regions could not be listed at all (no credentials, no network): nothing to sync."""


@dataclass(frozen=True)
class RegionOfferings:
    """The wanted instance types one region offers, each with the AZ ids that offer it."""

    region: str
    offered: Mapping[str, tuple[str, ...]]
    """Instance type -> sorted AZ ids offering it; types not offered anywhere in the region are absent."""

    @property
    def instance_types(self) -> tuple[str, ...]:
        """Wanted types offered somewhere in the region, sorted."""
        return tuple(sorted(self.offered))

    @property
    def az_ids(self) -> tuple[str, ...]:
        """AZ ids offering at least one wanted type, sorted."""
        return tuple(sorted({az for zones in self.offered.values() for az in zones}))


@dataclass(frozen=True)
class OfferingsReport:
    """What a sync learnt: offerings of every region asked, and every region left out with the reason."""

    offerings: dict[str, RegionOfferings]
    """Regions that answered (including ones offering nothing), by name."""
    opt_in_status: dict[str, str]
    """``describe_regions(AllRegions=True)``: region -> opt-in status, for every region AWS lists."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Catalog regions not asked or that failed, with the reason (rogue, not opted in, API error)."""
    max_concurrency: int = 0
    """Most offering queries observed in flight at once (shows the fan-out really ran concurrently)."""

    @property
    def enabled_regions(self) -> frozenset[str]:
        """Regions the account can use (opted in, or not needing opt-in)."""
        return frozenset(r for r, status in self.opt_in_status.items() if status in ENABLED_OPT_IN_STATUSES)


def list_region_opt_in(session: boto3.Session, *, region: str) -> dict[str, str]:
    """Opt-in status of every region AWS lists for the account, asked through ``region``'s endpoint.

    ``AllRegions=True`` so regions the account has not opted into are listed too (with their status)
    rather than silently missing; the caller reports them as skipped instead of guessing.
    """
    client = session.client("ec2", region_name=region)
    try:
        response = client.describe_regions(AllRegions=True)
    except (ClientError, BotoCoreError) as exc:
        raise OfferingsError(f"cannot list the account's regions via {region}: {exc}") from exc
    return {entry["RegionName"]: entry.get("OptInStatus", "opt-in-not-required") for entry in response["Regions"]}


def query_region(client: Any, region: str, instance_types: Iterable[str]) -> RegionOfferings:
    """Which of ``instance_types`` ``region`` offers, per AZ id (all pages).

    ``availability-zone-id`` rather than ``availability-zone``: AZ names are shuffled per account, AZ ids
    name the same physical zone everywhere, and the mesh keys its subnets by AZ id.
    """
    wanted = sorted(set(instance_types))
    zones: dict[str, set[str]] = {}
    paginator = client.get_paginator("describe_instance_type_offerings")
    pages = paginator.paginate(
        LocationType="availability-zone-id",
        Filters=[{"Name": "instance-type", "Values": wanted}],
    )
    for page in pages:
        for offering in page.get("InstanceTypeOfferings", []):
            instance_type = offering["InstanceType"]
            if instance_type in wanted:  # the filter already does this; a mock or proxy might not
                zones.setdefault(instance_type, set()).add(offering["Location"])
    return RegionOfferings(region, {t: tuple(sorted(z)) for t, z in sorted(zones.items())})


def _progress(console: Console | None, *, show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]EC2 offerings"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=not show,
        transient=False,
    )


def collect_offerings(
    session: boto3.Session,
    instance_types: Iterable[str],
    *,
    home_region: str,
    regions: Iterable[str] | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    show_progress: bool = True,
    console: Console | None = None,
) -> OfferingsReport:
    """Ask every usable, enabled catalog region (or just ``regions``) which wanted types it offers.

    Rogue regions and regions the account has not enabled are not asked at all (they could never carry
    a spoke, and a disabled region answers AuthFailure anyway); they are listed in ``skipped``. Queries
    run on a bounded thread pool; each region gets its own client, made from the one ``session`` under a
    lock because boto3 sessions are not thread-safe while clients are.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    wanted = tuple(sorted(set(instance_types)))
    candidates = sorted(set(REGIONS if regions is None else regions))
    unknown = [r for r in candidates if r not in REGIONS]
    if unknown:
        raise ValueError(f"not regions this mesh knows: {', '.join(unknown)}; known regions: {', '.join(REGIONS)}")

    opt_in = list_region_opt_in(session, region=home_region)
    skipped: dict[str, str] = {}
    to_query: list[str] = []
    for region in candidates:
        status = opt_in.get(region)
        if region in ROGUE_REGIONS:
            skipped[region] = f"rogue: {ROGUE_REGIONS[region]}"
        elif status is None:
            skipped[region] = "not listed by describe_regions for this account"
        elif status not in ENABLED_OPT_IN_STATUSES:
            skipped[region] = f"not enabled for this account (opt-in status {status!r})"
        else:
            to_query.append(region)

    client_lock = threading.Lock()
    in_flight_lock = threading.Lock()
    in_flight = 0
    peak = 0

    def ask(region: str) -> RegionOfferings:
        nonlocal in_flight, peak
        with client_lock:
            client = session.client("ec2", region_name=region)
        with in_flight_lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return query_region(client, region, wanted)
        finally:
            with in_flight_lock:
                in_flight -= 1

    offerings: dict[str, RegionOfferings] = {}
    with _progress(console, show=show_progress) as progress:
        task = progress.add_task("", total=len(to_query))
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="offerings") as pool:
            futures = {pool.submit(ask, region): region for region in to_query}
            for future in as_completed(futures):
                region = futures[future]
                try:
                    offerings[region] = future.result()
                except (ClientError, BotoCoreError) as exc:
                    reason = error_reason(exc)
                    skipped[region] = f"query failed: {reason}"
                    log.warning("skipping %s: describe_instance_type_offerings failed: %s", region, reason)
                progress.update(task, advance=1, description=region)
    return OfferingsReport(
        offerings=dict(sorted(offerings.items())),
        opt_in_status=opt_in,
        skipped=dict(sorted(skipped.items())),
        max_concurrency=peak,
    )


def error_reason(exc: ClientError | BotoCoreError) -> str:
    """A one-line reason: the AWS error code when there is one (AuthFailure, UnauthorizedOperation...)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "ClientError")
        message = error.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return str(exc)
