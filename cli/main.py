"""``lmrun``: the operator CLI (offline plan, checks of a preview or state file, region sync, quotas, join
bundles, config reference).

Exit codes:

- 0 success;
- 1 unexpected failure, quotas that could not be read, a plan (or checked file) whose resources do not
  carry a path the reachability model says they do (or carry one it refuses), break a platform contract or
  grant access to a secret other than the access matrix says, or a pin that drifted from PyPI
  (``lmrun pins check``);
- 2 invalid input: the stack's config (one line per problem, with its config path), the policy pack config's
  (``--policy-config``), an option naming a file, directory, stack or site that cannot be used, or a file given
  to ``check`` that is not the document its option names (one line naming the option, checked before any
  long work), or a join bundle that does not exist;
- 3 the plan (or checked file) violates a mandatory rule of the policy pack (the violations are printed);
- 4 a GPU vCPU quota is short (``lmrun quotas``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lmrun.cli.arguments import OneLineParser, check_arguments
from lmrun.cli.models import add_models_command
from lmrun.cli.sky import register as register_sky
from lmrun.domain.errors import (
    EXIT_FAILURE,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_POLICY_VIOLATION,
    EXIT_QUOTA_SHORT,
    InputError,
    LmrunError,
)
from lmrun.spec.stackfile import load_stack_config

if TYPE_CHECKING:
    from lmrun.verify.checks import PlanReport

EXIT_INVALID_CONFIG = EXIT_INVALID_INPUT


def _add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: reads stacks/Pulumi.NAME.yaml")
    source.add_argument("--config-file", type=Path, help="any stack file (Pulumi.NAME.yaml)")


class PolicyConfigFileError(InputError):
    """The ``--policy-config`` file is missing or not a JSON object."""


def _read_policy_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyConfigFileError(f"--policy-config {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise PolicyConfigFileError(
            f"--policy-config {path}: expected a JSON object mapping rule names to levels or settings"
        )
    return document


def _cmd_plan(args: argparse.Namespace) -> int:
    from lmrun.verify.offline import plan_stack

    policy_config = _read_policy_config(args.policy_config)
    stack = load_stack_config(args.project_dir, stack=args.stack, config_file=args.config_file)
    report = plan_stack(args.project_dir, stack, policy_config=policy_config)
    if args.graph is not None:
        from lmrun.cli.graph import draw_mesh

        draw_mesh(report, args.graph)
    return _show(report, args, note=f"mesh graph written to {args.graph}" if args.graph is not None else None)


def _show(report: PlanReport, args: argparse.Namespace, note: str | None = None) -> int:
    """Print a report as ``plan`` and ``check`` do (tables, or one JSON document); the exit code."""
    from lmrun.cli.plan_view import output_console, print_report

    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")
    else:
        print_report(report, output_console())
        if note:
            print(note)
    return EXIT_POLICY_VIOLATION if report.mandatory_violations else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from lmrun.verify.documents import check_document

    policy_config = _read_policy_config(args.policy_config)
    stack = None
    if args.stack or args.config_file:
        stack = load_stack_config(args.project_dir, stack=args.stack, config_file=args.config_file)
    if args.from_preview is not None:
        report = check_document(args.from_preview, "preview", stack_config=stack, policy_config=policy_config)
    else:
        report = check_document(args.from_state, "state", stack_config=stack, policy_config=policy_config)
    if "reachability" not in report.outputs:
        print(
            "note: the file holds neither the stack's outputs nor its config: no path is checked and the GPU fleet "
            "is not priced (pass --stack or --config-file)",
            file=sys.stderr,
        )
    return _show(report, args)


def _graph_path(value: str) -> Path:
    path = Path(value)
    if path.suffix.lower() not in (".svg", ".png"):
        raise argparse.ArgumentTypeError(f"{value}: the graph file must end in .svg or .png")
    return path


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from lmrun.cli.config_reference import config_reference

    sys.stdout.write(config_reference())
    return EXIT_OK


def _cmd_regions_sync(args: argparse.Namespace) -> int:
    from lmrun.cli.regions_sync import sync_stack_regions

    sync_stack_regions(
        args.project_dir,
        stack=args.stack,
        config_file=args.config_file,
        regions=args.region or None,
        max_workers=args.max_workers,
        dry_run=args.dry_run,
        keep_regions=args.keep_regions,
        show_progress=not args.no_progress,
    )
    return EXIT_OK


def _cmd_images_sync(args: argparse.Namespace) -> int:
    from lmrun.cli.images_sync import sync_stack_images

    sync_stack_images(args.project_dir, stack=args.stack, config_file=args.config_file, dry_run=args.dry_run)
    return EXIT_OK


def _cmd_join_bundle(args: argparse.Namespace) -> int:
    from lmrun.cli.join_bundle import bundles_from_json, external_site, stack_bundles, write_bundle

    # The stack and the site first: only an external site of a valid stack has a bundle to fetch.
    external_site(load_stack_config(args.project_dir, stack=args.stack), args.site)
    if args.from_json is not None:
        text = sys.stdin.read() if str(args.from_json) == "-" else args.from_json.read_text()
        bundles = bundles_from_json(text, f"--from-json {args.from_json}")
    else:
        bundles = stack_bundles(args.project_dir, args.stack)
    written = write_bundle(bundles, args.site, args.out)
    print(f"wrote {written.config} (0600, holds the site's private key) and {written.script}")
    print(f"on the site's gateway: sudo bash {written.script.name}")
    return EXIT_OK


def _cmd_quotas(args: argparse.Namespace) -> int:
    from lmrun.cli.plan_view import output_console
    from lmrun.cli.quotas_view import check_stack_quotas, print_quotas

    report = check_stack_quotas(args.project_dir, stack=args.stack, config_file=args.config_file, write=args.write)
    print_quotas(report, output_console())
    if report.status == "short":
        return EXIT_QUOTA_SHORT
    return EXIT_OK if report.status == "enough" else EXIT_FAILURE


def _cmd_pins_check(args: argparse.Namespace) -> int:
    from lmrun.cli.pins import PYPI, check_pins

    rows = check_pins(index_url=args.index_url or PYPI)
    print("\n".join(str(row) for row in rows))
    return EXIT_OK if all(row.ok for row in rows) else EXIT_FAILURE


def _positive(value: str) -> int:
    number = int(value) if value.strip().isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lmrun", description=__doc__.splitlines()[0] if __doc__ else None)
    # Subcommand parsers are OneLineParsers too; the modules that add their own commands take any parser.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", required=True)
    )

    plan = commands.add_parser("plan", help="plan a stack offline under the mock engine")
    _add_stack_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    plan.add_argument(
        "--policy-config",
        type=Path,
        metavar="FILE",
        help="policy pack config (JSON, the shape of `pulumi preview --policy-pack-config`); default: none",
    )
    plan.add_argument("--graph", type=_graph_path, metavar="FILE", help="also draw the mesh to FILE (.svg or .png)")
    plan.set_defaults(handler=_cmd_plan)

    check = commands.add_parser(
        "check",
        help="run the plan's checks (policy, reachability, cost) on a `pulumi preview --json` or "
        "`pulumi stack export` file",
    )
    document = check.add_mutually_exclusive_group(required=True)
    document.add_argument("--from-preview", type=Path, metavar="FILE", help="the output of `pulumi preview --json`")
    document.add_argument("--from-state", type=Path, metavar="FILE", help="the output of `pulumi stack export`")
    check.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    stack_file = check.add_mutually_exclusive_group()
    stack_file.add_argument("--stack", help="plan the paths to check from stacks/Pulumi.NAME.yaml")
    stack_file.add_argument("--config-file", type=Path, help="plan the paths to check from this stack file")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    check.add_argument("--policy-config", type=Path, metavar="FILE", help="policy pack config (as for `plan`)")
    check.set_defaults(handler=_cmd_check)

    reference = commands.add_parser(
        "config-reference", help="print the Markdown reference of every lmrun: config key (from the spec)"
    )
    reference.set_defaults(handler=_cmd_config_reference)

    regions = commands.add_parser("regions", help="spoke-region commands")
    region_commands = regions.add_subparsers(dest="regions_command", required=True)
    sync = region_commands.add_parser("sync", help="choose spoke regions from live GPU offerings (boto3)")
    _add_stack_arguments(sync)
    sync.add_argument("--dry-run", action="store_true", help="query and print the result; leave the file alone")
    sync.add_argument("--max-workers", type=_positive, default=8, help="regions queried concurrently (default 8)")
    candidates = sync.add_mutually_exclusive_group()
    candidates.add_argument(
        "--region",
        action="append",
        metavar="REGION",
        help="consider only this spoke candidate (repeatable; default: every region the mesh knows)",
    )
    candidates.add_argument(
        "--keep-regions",
        action="store_true",
        help="record the offerings of the stack's own regions (lmrun:offerings) and leave lmrun:regions and "
        "lmrun:availabilityZones alone",
    )
    sync.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sync.set_defaults(handler=_cmd_regions_sync)

    images = commands.add_parser("images", help="pinned-image commands")
    image_sync = images.add_subparsers(dest="images_command", required=True).add_parser(
        "sync", help="pin the current public AMIs of every image the stack boots (boto3)"
    )
    _add_stack_arguments(image_sync)
    image_sync.add_argument("--dry-run", action="store_true", help="print the diff; leave the file alone")
    image_sync.set_defaults(handler=_cmd_images_sync)

    bundle = commands.add_parser("join-bundle", help="write an external site's WireGuard config and bootstrap")
    bundle.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    bundle.add_argument("--stack", required=True, help="the deployed stack")
    bundle.add_argument("--site", required=True, help="an external site of lmrun:sites")
    bundle.add_argument("--out", type=Path, default=Path.cwd(), help="directory to write the two files into")
    bundle.add_argument("--from-json", type=Path, help="read the joinBundles stack output from this file ('-': stdin)")
    bundle.set_defaults(handler=_cmd_join_bundle)

    quotas = commands.add_parser(
        "quotas", help="compare the stack's GPU vCPU needs with the G and VT quotas (boto3; exit 4 when short)"
    )
    _add_stack_arguments(quotas)
    quotas.add_argument(
        "--write",
        action="store_true",
        help="also record the G and VT quotas of every mesh region in the stack file (lmrun:quotas), where the plan "
        "places replica groups within them",
    )
    quotas.set_defaults(handler=_cmd_quotas)

    register_sky(commands)
    add_models_command(commands, _add_stack_arguments)

    pins = commands.add_parser("pins", help="pinned VM runtimes").add_subparsers(dest="pins_command", required=True)
    pins_check = pins.add_parser("check", help="compare each pin's recorded Requires-Python with PyPI (exit 1: drift)")
    pins_check.add_argument("--index-url", help="a JSON API like PyPI's (default: https://pypi.org/pypi)")
    pins_check.set_defaults(handler=_cmd_pins_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)  # every file, directory and stack an option names, before any long work
        code: int = args.handler(args)
    except LmrunError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the last line of defence: one line, exit 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code
