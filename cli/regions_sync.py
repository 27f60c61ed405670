"""``lmrun regions sync``: choose spoke regions from live EC2 offerings and write them into the stack file.

The stack's shape (which spokes, which AZs get subnets) must be fixed before ``pulumi up`` runs, because
resources are never created from a lookup's result. This command is where the lookup happens instead:
once, by an operator, with the result committed as plain config (``lmrun:regions`` and
``lmrun:availabilityZones``) that reviewers can diff.

It also records what it learnt about the GPUs (``lmrun:offerings``): the instance types it asked about (the
wanted types and every catalog type that could carry a declared node's or group's GPUs) and, per region of the
mesh, those offered there. The plan then places nodes by the account's own offerings rather than the catalog's
snapshot, and says which source decided each node. ``keep_regions`` (``--keep-regions``) records the offerings of
the stack's current regions without choosing spokes.

The stack file is edited in round-trip mode (:mod:`lmrun.cli.stack_edit`) so an operator's comments and key
order survive: only the keys this command owns change, in place; missing ones are appended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from lmrun.aws.instances import catalog
from lmrun.aws.region.catalog import REGIONS
from lmrun.aws.region.offerings import DEFAULT_MAX_WORKERS, OfferingsReport, RegionOfferings, collect_offerings
from lmrun.aws.region.selection import plannable_az_ids, select_spoke_regions
from lmrun.cli.stack_edit import FlowList, write_stack_keys
from lmrun.clouds import HUB_CLOUD
from lmrun.spec import ConfigError, ConfigIssue, MeshSpec, parse_spec
from lmrun.spec.config import PREFIX, namespaced
from lmrun.spec.elastic import ElasticServiceSpec
from lmrun.spec.gpu_pool import valid_pools
from lmrun.spec.groups import valid_groups
from lmrun.spec.model import DEFAULT_GPU_INSTANCE_TYPES
from lmrun.spec.nodes import NodeSpec
from lmrun.spec.partial import whole_entries
from lmrun.spec.stackfile import load_stack_config

if TYPE_CHECKING:
    import boto3  # type: ignore[import-untyped]

REGIONS_KEY = f"{PREFIX}regions"
AZS_KEY = f"{PREFIX}availabilityZones"
OFFERINGS_KEY = f"{PREFIX}offerings"


@dataclass(frozen=True)
class SyncResult:
    """What a sync decided and whether it wrote the stack file."""

    path: Path
    main_region: str
    instance_types: tuple[str, ...]
    spokes: tuple[str, ...]
    availability_zones: dict[str, tuple[str, ...]]
    """AZ ids written for the main region and every spoke."""
    offerings: dict[str, Any]
    """``lmrun:offerings`` as written: ``{"instanceTypes": [...], "regions": {region: [types]}}``."""
    not_chosen: dict[str, str]
    """Catalog regions that are not spokes, with the reason (rogue, not enabled, error, no offering...)."""
    notes: tuple[str, ...]
    """Decisions worth telling the operator (catalog AZs kept for the hub, AZ ids refused...)."""
    report: OfferingsReport
    changed: bool
    """The keys this command owns differ from what the file held."""
    written: bool
    """The file was rewritten (changed and not a dry run)."""


def sync_stack_regions(
    project_dir: Path,
    *,
    stack: str | None = None,
    config_file: Path | None = None,
    session: boto3.Session | None = None,
    regions: Iterable[str] | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    dry_run: bool = False,
    keep_regions: bool = False,
    show_progress: bool = True,
    console: Console | None = None,
) -> SyncResult:
    """Query offerings for the stack's ``gpuInstanceTypes`` (and the types its nodes and groups could run on), pick
    spokes, write them and the offerings into the stack file.

    ``regions`` limits the candidate spokes (default: every catalog region); ``keep_regions`` asks only the stack's
    own regions and rewrites ``lmrun:offerings`` alone. Nothing is written unless
    the resulting config passes the same validation ``pulumi up`` applies (:func:`lmrun.spec.parse_spec`):
    a sync must never leave a stack that cannot plan. Raises :class:`ConfigError` (with config paths)
    for a stack whose ``mainRegion``/``gpuInstanceTypes`` are unusable or whose result would not parse.
    """
    stack_config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    path = stack_config.source
    raw = namespaced(stack_config.config)
    inputs = _sync_inputs(raw)
    main_region = inputs.main_region
    instance_types = inputs.gpu_instance_types
    asked = sorted({*instance_types, *placeable_types(raw)})
    listed = raw.get("regions")
    current = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
    if keep_regions:
        regions = current

    if session is None:
        import boto3

        session = boto3.Session()
    candidates = None if regions is None else sorted({*regions, main_region})
    report = collect_offerings(
        session,
        asked,
        home_region=main_region,
        regions=candidates,
        max_workers=max_workers,
        show_progress=show_progress,
        console=Console(stderr=True) if console is None else console,
    )

    # Spokes and their AZs follow the wanted types only; the other asked types are recorded, never a reason for a
    # spoke.
    wanted = {region: _only(offer, instance_types) for region, offer in report.offerings.items()}
    offered_types = {region: offer.instance_types for region, offer in wanted.items()}
    spokes = select_spoke_regions(offered_types, main_region=main_region, enabled_regions=report.enabled_regions)
    notes: list[str] = []
    azs: dict[str, tuple[str, ...]] = {}
    for region in [main_region, *spokes]:
        offer = wanted.get(region)
        kept, rejected = plannable_az_ids(region, offer.az_ids if offer else ())
        if rejected:
            notes.append(f"{region}: AZ ids {', '.join(rejected)} cannot get a subnet in the CIDR plan; left out")
        if kept:
            azs[region] = tuple(kept)
        elif region == main_region:
            azs[region] = REGIONS[region].az_ids
            notes.append(
                f"{main_region} (main) offers none of {', '.join(instance_types)}; kept its catalog AZs "
                f"{', '.join(azs[region])}"
            )
    spokes = [s for s in spokes if s in azs]

    not_chosen = dict(report.skipped)
    for region, offer in wanted.items():
        if region == main_region or region in spokes or region in not_chosen:
            continue
        not_chosen[region] = (
            "offers none of the wanted types" if not offer.offered else "no AZ id the CIDR plan can use"
        )

    if keep_regions:
        spokes, azs = current, {}
        missing = [r for r in [main_region, *current] if r not in report.offerings]
        if missing:
            notes.append(f"not recorded (the catalog decides there): {', '.join(missing)}")
    offerings = _offerings_record(asked, report, [main_region, *spokes])
    owned: dict[str, Any] = {}
    if not keep_regions:
        owned |= {REGIONS_KEY: list(spokes), AZS_KEY: {r: list(z) for r, z in azs.items()}}
    owned[OFFERINGS_KEY] = offerings
    new_raw = {**raw, **{key.removeprefix(PREFIX): value for key, value in owned.items()}}
    parse_spec(new_raw)  # raises ConfigError with config paths; the file stays untouched

    changed = any(raw.get(key.removeprefix(PREFIX)) != value for key, value in owned.items())
    if changed and not dry_run:
        write_stack_keys(path, owned)
    result = SyncResult(
        path=path,
        main_region=main_region,
        instance_types=instance_types,
        spokes=tuple(spokes),
        availability_zones=azs,
        offerings=offerings,
        not_chosen=dict(sorted(not_chosen.items())),
        notes=tuple(notes),
        report=report,
        changed=changed,
        written=changed and not dry_run,
    )
    print_summary(result, console or Console())
    return result


def placeable_types(raw: Mapping[str, Any]) -> set[str]:
    """Every catalog instance type that could carry the GPUs of a node, a group, a GPU pool or an elastic service
    the config declares (their offerings decide where the plan can place them)."""
    shapes: set[tuple[str, int]] = {(g.gpu, g.gpu_count) for _, g in valid_groups(raw.get("groups"))}
    shapes |= {(p.gpu, p.gpu_count) for _, p in valid_pools(raw.get("gpuPool"))}
    shapes |= {(e.gpu, e.gpu_count) for _, e in whole_entries(raw.get("elasticServices"), ElasticServiceSpec)}
    shapes |= {(n.gpu, n.gpu_count) for _, n in whole_entries(raw.get("nodes"), NodeSpec) if n.cloud == HUB_CLOUD}
    types: set[str] = set()
    for gpu, count in shapes:
        try:
            types |= {t.name for t in catalog.instance_types_for(gpu, count)}
        except (KeyError, ValueError):  # an unknown GPU or count: the spec reports it
            continue
    return types


def _only(offer: RegionOfferings, instance_types: tuple[str, ...]) -> RegionOfferings:
    """``offer`` restricted to ``instance_types``."""
    return RegionOfferings(offer.region, {t: z for t, z in offer.offered.items() if t in instance_types})


def _offerings_record(asked: list[str], report: OfferingsReport, regions: list[str]) -> dict[str, Any]:
    """``lmrun:offerings``: the asked catalog types, and for each of ``regions`` that answered, those it offers
    (the plan places only catalog types; a region that did not answer stays unrecorded)."""
    recorded = [t for t in asked if t in catalog.INSTANCE_TYPES]
    return {
        "instanceTypes": FlowList(recorded),
        "regions": {
            region: FlowList(t for t in report.offerings[region].instance_types if t in recorded)
            for region in sorted(set(regions))
            if region in report.offerings
        },
    }


@dataclass(frozen=True)
class _SyncInputs:
    main_region: str
    gpu_instance_types: tuple[str, ...]


def _sync_inputs(raw: Mapping[str, Any]) -> _SyncInputs:
    """The two keys a sync reads, validated by the spec's own field rules (so errors carry config paths).

    Only these are checked here: the keys a sync rewrites may be stale or wrong, and fixing them is the
    point of running it.
    """
    if "mainRegion" not in raw:
        raise ConfigError([ConfigIssue(f"{PREFIX}mainRegion", "is required to choose spoke regions")])
    subset = {"mainRegion": raw["mainRegion"], "gpuInstanceTypes": raw.get("gpuInstanceTypes")}
    if subset["gpuInstanceTypes"] is None:
        subset["gpuInstanceTypes"] = list(DEFAULT_GPU_INSTANCE_TYPES)
    spec: MeshSpec = parse_spec(subset)
    return _SyncInputs(spec.main_region, spec.gpu_instance_types)


# ---------------------------------------------------------------------------------------------------------
# Summary


def print_summary(result: SyncResult, console: Console) -> None:
    """Chosen regions with their offered types and AZs, then every region left out and why."""
    table = Table(title=f"Regions for {result.path.name} ({', '.join(result.instance_types)})")
    table.add_column("region")
    table.add_column("role")
    table.add_column("offered types")
    table.add_column("AZ ids")
    for region in [result.main_region, *result.spokes]:
        offer = result.report.offerings.get(region)
        types = ", ".join(offer.instance_types) if offer and offer.offered else "-"
        role = "main" if region == result.main_region else "spoke"
        table.add_row(region, role, types, ", ".join(result.availability_zones.get(region, ())))
    console.print(table)
    if result.not_chosen:
        skipped = Table(title="Not chosen")
        skipped.add_column("region")
        skipped.add_column("reason")
        for region, reason in result.not_chosen.items():
            skipped.add_row(region, reason)
        console.print(skipped)
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(
        f"offerings of {len(result.offerings['regions'])} region(s) for {len(result.offerings['instanceTypes'])} "
        "instance type(s) recorded in lmrun:offerings"
    )
    if result.written:
        verb = "wrote"
    elif result.changed:
        verb = "would write (dry run)"
    else:
        verb = "unchanged"
    console.print(
        f"{verb}: {result.path} — {len(result.spokes)} spoke region(s), "
        f"max {result.report.max_concurrency} concurrent queries"
    )
