"""``lmrun images sync``: pin the images AWS currently publishes for every VM role the stack runs.

The program never looks an image up (:mod:`lmrun.plan.images` says why): every image is pinned in the stack
file. This command is where the lookup happens instead, once, by an operator: it reads the public SSM
parameters of :data:`lmrun.aws.images.PUBLIC_IMAGES` in every region the stack needs (one
``ssm.get_parameters`` per region, concurrently) and writes the ids into ``lmrun:images`` (in round trip:
comments and key order survive), printing the diff to review. ``--dry-run`` prints it and writes nothing.

A region that does not answer for a parameter (not published there, the region not enabled, no
credentials) is one line of the error and nothing is written: a half-synced stack would upgrade some
regions and not others.

Images of site clouds (GCP) cannot be read from here (the operator tools carry no GCP SDK): they are pinned
by hand in ``lmrun:sites[].images``. The command lists each site image the stack needs, its pin and the
``gcloud`` command that prints the current image.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from lmrun.aws.images import AMI_ID, PUBLIC_IMAGES
from lmrun.aws.region.offerings import DEFAULT_MAX_WORKERS, error_reason
from lmrun.cli.stack_edit import edited_stack_text, stack_diff, write_stack_keys
from lmrun.domain.errors import LmrunError
from lmrun.plan.images import ImageNeed, image_needs
from lmrun.spec import parse_spec
from lmrun.spec.cloud_rules import cloud_rules
from lmrun.spec.config import PREFIX, namespaced
from lmrun.spec.stackfile import load_stack_config

if TYPE_CHECKING:
    import boto3  # type: ignore[import-untyped]

IMAGES_KEY = f"{PREFIX}images"


class ImageLookupError(LmrunError):
    """AWS did not give the current image of a role in a region the stack needs: nothing was written."""

    label = "error: images not synced"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        """One line per region and parameter that failed."""
        return [f"{self.label}: {problem}" for problem in self.problems]


@dataclass(frozen=True)
class ImageSyncResult:
    """What a sync pinned, the diff of the stack file, and the site images left to the operator."""

    path: Path
    pins: dict[str, dict[str, str]]
    """The new ``lmrun:images``: AWS region -> role -> AMI id, for exactly the images the mesh boots."""
    site_needs: tuple[ImageNeed, ...]
    """Site images the stack needs (pinned by hand), with their current pins."""
    diff: str
    """Unified diff of the stack file ("" when unchanged)."""
    written: bool

    @property
    def changed(self) -> bool:
        return bool(self.diff)


def read_public_images(
    session: boto3.Session, wanted: Mapping[str, Sequence[str]], *, max_workers: int = DEFAULT_MAX_WORKERS
) -> dict[str, dict[str, str]]:
    """Region -> role -> the AMI id AWS currently publishes for the role, for every ``wanted`` region and role.

    One ``get_parameters`` per region, on a bounded thread pool (clients made from the one session under a
    lock: boto3 sessions are not thread-safe, clients are). Raises :class:`ImageLookupError` with one line
    per region and parameter that failed.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    client_lock = threading.Lock()

    def ask(region: str) -> tuple[dict[str, str], list[str]]:
        roles = list(wanted[region])
        names = {PUBLIC_IMAGES[role].parameter: role for role in roles}
        with client_lock:
            client = session.client("ssm", region_name=region)
        try:
            response = client.get_parameters(Names=sorted(names))
        except (ClientError, BotoCoreError) as exc:
            return {}, [f"{region}: cannot read {', '.join(sorted(names))}: {error_reason(exc)}"]
        found: dict[str, str] = {}
        problems = [
            f"{region}: AWS publishes no {name} there (no {names[name]} image in {region})"
            for name in response.get("InvalidParameters", [])
        ]
        for parameter in response.get("Parameters", []):
            value = str(parameter.get("Value", ""))
            if not AMI_ID.match(value):
                problems.append(f"{region}: {parameter['Name']} holds {value!r}, not an AMI id")
            else:
                found[names[parameter["Name"]]] = value
        return found, problems

    regions = sorted(wanted)
    with ThreadPoolExecutor(max_workers=min(max_workers, len(regions) or 1), thread_name_prefix="images") as pool:
        answers = dict(zip(regions, pool.map(ask, regions), strict=True))
    problems = [problem for region in regions for problem in answers[region][1]]
    if problems:
        raise ImageLookupError(problems)
    return {region: answers[region][0] for region in regions}


def sync_stack_images(
    project_dir: Path,
    *,
    stack: str | None = None,
    config_file: Path | None = None,
    session: boto3.Session | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    dry_run: bool = False,
    console: Console | None = None,
) -> ImageSyncResult:
    """Pin the current public AMI of every AWS image the stack boots into its ``lmrun:images``.

    The rest of the stack must be valid (it decides which regions run which VMs); ``lmrun:images`` itself
    is what the sync rewrites, so its old value may be anything. The new config is validated like
    ``pulumi up`` would before the file is touched. Raises ``ConfigError`` for an invalid stack and
    :class:`ImageLookupError` when AWS does not answer for a needed image (the file stays untouched).
    """
    stack_config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    path = stack_config.source
    raw = namespaced(stack_config.config)
    spec = parse_spec({key: value for key, value in raw.items() if key != "images"})
    needs = image_needs(spec)
    wanted: dict[str, list[str]] = {}
    for need in needs:
        if not need.is_site:
            wanted.setdefault(need.location, []).append(need.role)

    if session is None:
        import boto3

        session = boto3.Session()
    found = read_public_images(session, wanted, max_workers=max_workers)
    # In the order of the needs: the main region first, roles as the mesh lists them.
    pins = {region: {role: found[region][role] for role in roles} for region, roles in wanted.items()}
    parse_spec({**raw, "images": pins})  # raises ConfigError with config paths; the file stays untouched

    diff = stack_diff(path, edited_stack_text(path, {IMAGES_KEY: pins})) if raw.get("images") != pins else ""
    if diff and not dry_run:
        write_stack_keys(path, {IMAGES_KEY: pins})
    result = ImageSyncResult(
        path=path,
        pins=pins,
        site_needs=tuple(need for need in needs if need.is_site),
        diff=diff,
        written=bool(diff) and not dry_run,
    )
    print_summary(result, raw.get("images"), stack_config.stack, console or Console())
    return result


def _previous(old: Any, region: str, role: str) -> str:
    value = old.get(region) if isinstance(old, Mapping) else None
    return str(value.get(role) or "-") if isinstance(value, Mapping) else "-"


def print_summary(result: ImageSyncResult, old: Any, stack: str, console: Console) -> None:
    """The pinned AMIs (old and new), the site images to pin by hand, the diff, and what was done."""
    table = Table(title=f"AWS images for {result.path.name}")
    for column in ("region", "role", "public parameter", "pinned before", "pinned now"):
        table.add_column(column)
    for region, roles in result.pins.items():
        for role, ami in roles.items():
            table.add_row(region, role, PUBLIC_IMAGES[role].parameter, _previous(old, region, role), ami)
    console.print(table)
    if result.site_needs:
        console.print("Site images are pinned by hand (this command cannot read their clouds):")
        for need in result.site_needs:
            console.print(
                f"  {need.path} ({need.users}): {need.pinned or '(missing)'}\n"
                f"    {cloud_rules(need.cloud).pin_hint(need.role, stack)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    if result.diff:
        console.print(result.diff, highlight=False, markup=False, soft_wrap=True, end="")
    verb = "wrote" if result.written else ("would write (dry run)" if result.changed else "unchanged")
    console.print(f"{verb}: {result.path}")
