"""``lmrun regions sync``: choose spoke regions from live EC2 offerings and write them into the stack file.

The stack's shape (which spokes, which AZs get subnets) must be fixed before ``pulumi up`` runs, because
resources are never created from a lookup's result. This command is where the lookup happens instead:
once, by an operator, with the result committed as plain config (``lmrun:regions`` and
``lmrun:availabilityZones``) that reviewers can diff.

The stack file is edited with ruamel.yaml's round-trip mode so an operator's comments and key order
survive: only the two keys this command owns change, in place; missing ones are appended.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from lmrun.aws.region.catalog import REGIONS
from lmrun.aws.region.offerings import DEFAULT_MAX_WORKERS, OfferingsReport, collect_offerings
from lmrun.aws.region.selection import plannable_az_ids, select_spoke_regions
from lmrun.spec import ConfigError, ConfigIssue, MeshSpec, parse_spec
from lmrun.spec.config import PREFIX, namespaced
from lmrun.spec.model import DEFAULT_GPU_INSTANCE_TYPES
from lmrun.spec.stackfile import StackFileError, load_stack_config

if TYPE_CHECKING:
    import boto3  # type: ignore[import-untyped]

REGIONS_KEY = f"{PREFIX}regions"
AZS_KEY = f"{PREFIX}availabilityZones"


@dataclass(frozen=True)
class SyncResult:
    """What a sync decided and whether it wrote the stack file."""

    path: Path
    main_region: str
    instance_types: tuple[str, ...]
    spokes: tuple[str, ...]
    availability_zones: dict[str, tuple[str, ...]]
    """AZ ids written for the main region and every spoke."""
    not_chosen: dict[str, str]
    """Catalog regions that are not spokes, with the reason (rogue, not enabled, error, no offering...)."""
    notes: tuple[str, ...]
    """Decisions worth telling the operator (catalog AZs kept for the hub, AZ ids refused...)."""
    report: OfferingsReport
    changed: bool
    """The two keys differ from what the file held."""
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
    show_progress: bool = True,
    console: Console | None = None,
) -> SyncResult:
    """Query offerings for the stack's ``gpuInstanceTypes``, pick spokes, write them into the stack file.

    ``regions`` limits the candidate spokes (default: every catalog region). Nothing is written unless
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

    if session is None:
        import boto3

        session = boto3.Session()
    candidates = None if regions is None else sorted({*regions, main_region})
    report = collect_offerings(
        session,
        instance_types,
        home_region=main_region,
        regions=candidates,
        max_workers=max_workers,
        show_progress=show_progress,
        console=Console(stderr=True) if console is None else console,
    )

    offered_types = {region: offer.instance_types for region, offer in report.offerings.items()}
    spokes = select_spoke_regions(offered_types, main_region=main_region, enabled_regions=report.enabled_regions)
    notes: list[str] = []
    azs: dict[str, tuple[str, ...]] = {}
    for region in [main_region, *spokes]:
        offer = report.offerings.get(region)
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
    for region, offer in report.offerings.items():
        if region == main_region or region in spokes or region in not_chosen:
            continue
        not_chosen[region] = (
            "offers none of the wanted types" if not offer.offered else "no AZ id the CIDR plan can use"
        )

    new_raw = {**raw, "regions": list(spokes), "availabilityZones": {r: list(z) for r, z in azs.items()}}
    parse_spec(new_raw)  # raises ConfigError with config paths; the file stays untouched

    old_regions = raw.get("regions")
    old_azs = raw.get("availabilityZones")
    changed = old_regions != new_raw["regions"] or old_azs != new_raw["availabilityZones"]
    if changed and not dry_run:
        write_stack_keys(path, {REGIONS_KEY: list(spokes), AZS_KEY: {r: list(z) for r, z in azs.items()}})
    result = SyncResult(
        path=path,
        main_region=main_region,
        instance_types=instance_types,
        spokes=tuple(spokes),
        availability_zones=azs,
        not_chosen=dict(sorted(not_chosen.items())),
        notes=tuple(notes),
        report=report,
        changed=changed,
        written=changed and not dry_run,
    )
    print_summary(result, console or Console())
    return result


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
# Round-trip editing of the stack file


def write_stack_keys(path: Path, values: Mapping[str, Any]) -> None:
    """Set ``config:`` keys of a stack file, keeping every comment, the key order and the indentation.

    Existing keys are updated in place; missing keys are appended to ``config:``. The new text is checked
    (re-read with a plain YAML parser) before it atomically replaces the file.
    """
    text = path.read_text()
    rt = _round_trip_yaml(text)
    document = rt.load(text)
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    config = document.get("config")
    if config is None:
        config = document["config"] = CommentedMap()
    if not isinstance(config, CommentedMap):
        raise StackFileError(f"{path}: 'config' must be a mapping")
    for key, value in values.items():
        _replace_value(config, key, _to_node(value))

    buffer = StringIO()
    rt.dump(document, buffer)
    new_text = buffer.getvalue()
    reread = (yaml.safe_load(new_text) or {}).get("config") or {}
    for key, value in values.items():
        if reread.get(key) != value:
            raise StackFileError(f"{path}: rewriting {key} produced {reread.get(key)!r}, expected {value!r}")
    _atomic_write(path, new_text)


def _round_trip_yaml(text: str) -> YAML:
    """A ruamel round-trip dumper that writes new blocks with the file's own indentation."""
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap an operator's long values
    mapping, sequence, offset = _guess_indent(text)
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    rt.explicit_start = text.lstrip().startswith("---")
    return rt


def _guess_indent(text: str) -> tuple[int, int, int]:
    """``(mapping, sequence, offset)`` as ruamel wants them, read from the first nested key and list.

    ruamel applies one indentation to the whole document, so it must match what the file already uses
    or the untouched parts would be re-indented. Default: the style of ``pulumi config set`` (2, 4, 2).
    """
    mapping = 2
    parent_indent: int | None = None
    offset: int | None = None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if stripped.startswith("- ") or stripped == "-":
            if parent_indent is not None and offset is None:
                offset = max(indent - parent_indent, 0)
            continue
        if indent > 0 and parent_indent == 0 and mapping == 2 and offset is None:
            mapping = indent
        parent_indent = indent
        if offset is not None:
            break
    if offset is None:
        offset = mapping
    return mapping, offset + 2, offset


def _to_node(value: Any) -> Any:
    """Plain lists/dicts as ruamel nodes; empty ones in flow style (``[]``, ``{}``) as a person writes them."""
    if isinstance(value, Mapping):
        node: CommentedMap | CommentedSeq = CommentedMap((k, _to_node(v)) for k, v in value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        node = CommentedSeq(_to_node(v) for v in value)
    else:
        return value
    if not node:
        node.fa.set_flow_style()
    return node


_SEQ_SLOT = 0  # ruamel: index in ``ca.items[i]`` of the comment after sequence item i
_MAP_SLOT = 2  # ruamel: index in ``ca.items[key]`` of the comment after a mapping value

_Location = tuple[CommentedMap | CommentedSeq, Any, int]


def _replace_value(parent: CommentedMap, key: str, new: Any) -> None:
    """Replace ``parent[key]`` (or append it), keeping the comment lines that follow the old value.

    ruamel attaches the full-line comments *after* a block value (typically the comment introducing the
    next key) to the old value's last leaf, so replacing the value naively drops them. They are moved to
    the new value's last leaf. An end-of-line comment on the key itself stays; one on an item of the old
    value goes with that item, since the item is rewritten.
    """
    if key not in parent:
        rest = None
        if parent:
            last = _tail_location(parent, list(parent)[-1])
            eol, rest = _split_comment(_get_comment(last))
            _set_comment(last, eol)  # an end-of-block comment moves below the appended key
        parent[key] = new
        if rest is not None:
            _attach_comment(parent, key, rest)
        return
    old = _tail_location(parent, key)
    eol, rest = _split_comment(_get_comment(old))
    _set_comment(old, None)
    parent[key] = new
    if old[0] is parent:  # the old value was a scalar or empty: its end-of-line comment is the key's
        _set_comment((parent, key, _MAP_SLOT), eol)
    if rest is not None:
        _attach_comment(parent, key, rest)


def _tail_location(parent: CommentedMap, key: Any) -> _Location:
    """Where ruamel keeps the comment that follows ``parent[key]``: on its deepest last leaf."""
    value = parent[key]
    if isinstance(value, CommentedMap) and value:
        return _tail_location(value, list(value)[-1])
    if isinstance(value, CommentedSeq) and value:
        last = value[-1]
        if isinstance(last, CommentedMap) and last:
            return _tail_location(last, list(last)[-1])
        return (value, len(value) - 1, _SEQ_SLOT)
    return (parent, key, _MAP_SLOT)


def _get_comment(location: _Location) -> CommentToken | None:
    node, index, slot = location
    entry = node.ca.items.get(index)
    token: CommentToken | None = entry[slot] if entry else None
    return token


def _set_comment(location: _Location, token: CommentToken | None) -> None:
    node, index, slot = location
    entry = node.ca.items.setdefault(index, [None, None, None, None])
    entry[slot] = token
    if not any(entry):
        del node.ca.items[index]


def _split_comment(token: CommentToken | None) -> tuple[CommentToken | None, CommentToken | None]:
    """Split a trailing comment into its end-of-line part and the full lines after it.

    ruamel stores ``value  # eol\n  # next\n`` as one token; a token without an end-of-line part starts
    with a newline (``\n  # next\n``), which is the form the full lines must keep when moved.
    """
    if token is None:
        return None, None
    value = str(token.value)
    if not value.startswith("#"):
        return None, token
    first, _, rest = value.partition("\n")
    eol = CommentToken(first + "\n", token.start_mark, None, token.column)
    return eol, (CommentToken("\n" + rest, token.start_mark) if rest else None)


def _attach_comment(parent: CommentedMap, key: Any, token: CommentToken) -> None:
    """Put full-line comments after ``parent[key]``, behind any end-of-line comment already there."""
    location = _tail_location(parent, key)
    existing = _get_comment(location)
    if existing is not None:
        token = CommentToken(str(existing.value) + str(token.value)[1:], existing.start_mark, None, existing.column)
    _set_comment(location, token)


def _atomic_write(path: Path, text: str) -> None:
    """Replace the file in one step: an interrupted sync never leaves half a stack file."""
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
