"""``lmrun sky render``: write SkyPilot's config, the join bundle and the task templates of a stack; ``lmrun sky bind``:
point an elastic service's node port at its SkyServe load balancer.

Everything comes from the stack's plan: the command plans the stack offline (the program under the mock engine,
then every check, the SkyPilot names against the resources among them) and renders its ``skypilot`` output
(:mod:`lmrun.render.skypilot`). A plan that fails writes nothing.

``bind`` runs after ``sky serve up``: it takes the load balancer's ``IP:PORT`` from ``--endpoint`` or from SkyPilot
(``sky.serve.status``; SkyPilot is a dev/test extra of lmrun-mesh, not a runtime dependency), checks it as the K3s
server will (:func:`lmrun.render.serve_endpoints.check_endpoint`: inside the main VPC of the stack's plan, a
load-balancer port), and writes the service's String parameter in the main region; the server applies it within
a minute.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


class SkyBindError(InputError):
    """The service is not an elastic service of the stack, or its endpoint is not one the server would apply."""


def sky_serve_endpoint(service: str) -> str:
    """The load balancer's ``IP:PORT`` of ``service`` as SkyPilot reports it (``sky serve status SERVICE
    --endpoint``), without its scheme."""
    try:
        import sky
    except ImportError:
        raise SkyBindError(
            f"{service}: asking SkyPilot for the endpoint needs SkyPilot, a dev/test extra of lmrun-mesh (not a "
            "runtime dependency): pip install 'skypilot[aws]==0.14.1', or pass --endpoint IP:PORT from "
            f"`sky serve status {service} --endpoint`"
        ) from None
    records: list[dict[str, Any]] = sky.get(sky.serve.status([service]))
    record = next((r for r in records if r.get("name") == service), None)
    endpoint = record.get("endpoint") if record is not None else None
    if not endpoint:
        raise SkyBindError(f"{service}: SkyPilot reports no endpoint for it (is it up? `sky serve status {service}`)")
    return str(endpoint).split("://", 1)[-1]


def bind_stack(
    project_dir: Path,
    *,
    stack: str,
    service: str,
    endpoint: str | None,
    ask_skypilot: Callable[[str], str] | None = None,
) -> tuple[str, str]:
    """Write ``service``'s serve endpoint parameter (String, overwritten) in the stack's main region; the parameter
    and the ``IP:PORT`` written. The stack is planned offline first (its main VPC, its elastic services);
    ``ask_skypilot`` (default :func:`sky_serve_endpoint`) gives the endpoint when ``endpoint`` is None."""
    import boto3  # type: ignore[import-untyped]

    from lmrun.render.serve_endpoints import check_endpoint
    from lmrun.verify.offline import plan_stack

    outputs = plan_stack(project_dir, load_stack_config(project_dir, stack=stack)).outputs
    services = outputs.get("elasticPaths") or {}
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise SkyBindError(f"{service}: not an elastic service of stack {stack} (its elastic services: {known})")
    main = str(outputs["mainRegion"])
    vpc_cidr = str(outputs["regions"][main]["cidr"])
    value = endpoint if endpoint is not None else (ask_skypilot or sky_serve_endpoint)(service)
    option = "--endpoint" if endpoint is not None else f"SkyPilot's endpoint of {service}"
    try:
        address, port = check_endpoint(value, vpc_cidr)
    except ValueError as problem:
        raise SkyBindError(f"{option} {value}: {problem}") from None
    parameter = str(services[service]["endpointParameter"])
    bound = f"{address}:{port}"
    boto3.client("ssm", region_name=main).put_parameter(
        Name=parameter,
        Value=bound,
        Type="String",
        Overwrite=True,
        Description=f"SkyServe load balancer of elastic service {service} (lmrun sky bind)",
    )
    return parameter, bound


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


def _cmd_bind(args: argparse.Namespace) -> int:
    parameter, bound = bind_stack(args.project_dir, stack=args.stack, service=args.service, endpoint=args.endpoint)
    print(f"{parameter} = {bound}: the K3s server points {args.service}'s node port there within a minute")
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
    bind = sky.add_parser("bind", help="point an elastic service's node port at its SkyServe load balancer")
    bind.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    bind.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.NAME.yaml")
    bind.add_argument("service", metavar="SERVICE", help="the elastic service (lmrun:elasticServices)")
    bind.add_argument(
        "--endpoint",
        metavar="IP:PORT",
        help="the load balancer (`sky serve status SERVICE --endpoint`); default: ask SkyPilot",
    )
    bind.set_defaults(handler=_cmd_bind)
