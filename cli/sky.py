"""``lmrun sky render``: write SkyPilot's config, the join bundle and the task templates of a stack.

Everything comes from the stack's plan: the command plans the stack offline (the program under the mock engine,
then every check, the SkyPilot names against the resources among them) and renders its ``skypilot`` output
(:mod:`lmrun.render.skypilot`). A plan that fails writes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lmrun.domain.errors import InputError
from lmrun.render.skypilot import SkyPilotMesh, executable, rendered_files
from lmrun.spec.stackfile import load_stack_config


class SkyRenderError(InputError):
    """The stack does not enable SkyPilot (``lmrun:skypilot.enabled``)."""


def render_stack(project_dir: Path, *, stack: str | None, config_file: Path | None) -> dict[str, str]:
    """Relative path -> text of every file, from the stack's offline plan."""
    from lmrun.verify.offline import plan_stack

    config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    exported = plan_stack(project_dir, config).outputs.get("skypilot")
    if not exported:
        raise SkyRenderError(f"stack {config.stack}: lmrun:skypilot: set `enabled: true` to launch SkyPilot tasks")
    return rendered_files(SkyPilotMesh.from_json(exported))


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    """Write ``files`` under ``out`` (scripts 0755, the rest 0644); the paths written."""
    written = []
    for relative, text in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o755 if executable(relative) else 0o644)
        written.append(path)
    return written


def _cmd_render(args: argparse.Namespace) -> int:
    files = render_stack(args.project_dir, stack=args.stack, config_file=args.config_file)
    for path in write_files(files, args.out):
        print(path)
    print(f"next: cp {args.out / 'config.yaml'} ~/.sky/config.yaml, then run the tasks from {args.out}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``sky`` command group."""
    sky = commands.add_parser("sky", help="SkyPilot on the mesh").add_subparsers(dest="sky_command", required=True)
    render = sky.add_parser("render", help="write config.yaml, the join bundle and task templates of a stack")
    render.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: reads stacks/Pulumi.NAME.yaml")
    source.add_argument("--config-file", type=Path, help="any stack file (Pulumi.NAME.yaml)")
    render.add_argument("--out", type=Path, required=True, help="directory to write into")
    render.set_defaults(handler=_cmd_render)
