"""Benchmark the offline plan of a stack against the bare Pulumi SDK registering as many trivial resources,
and the offline plan of generated stacks of 200 and 400 GPU nodes with each check's share.

    .venv/bin/python scripts/benchmark.py [--stack global] [--repeats 3] [--json-only]
        [--scale 200:main,200:spread,400:main,400:spread] [--baseline DIR [--baseline-repeats 2]]

(`make bench` runs it with the defaults.) Three figures, each repeated and reported as median and min:

- **plan**: ``lmrun.verify.offline.plan_stack`` of the stack, in process: the real ``__main__.py`` (config -> spec ->
  plan -> components -> resources) under the recording mock engine, as ``lmrun plan`` runs it.
- **bare SDK**: the same mock engine registering the same number of resources of a minimal
  ``pulumi.CustomResource`` subclass (a few plain inputs, no parents, no providers). The difference is what
  our spec, plan, components and pulumi_aws's resource classes add on top of the engine's own cost.
- **import**: a fresh interpreter's wall time for ``import lmrun.components`` minus an empty interpreter's,
  and ``-X importtime``'s cumulative figure with the share of ``pulumi`` and ``pulumi_aws``.

Then **scale**: stacks generated here (:func:`scale_config`) of N GPU nodes (one service each, Phoenix off),
either all in the main region (``main``) or round-robin over every region the mesh can plan (``spread``: the
main region and 32 spokes, nodes in those offering a GPU), each planned once in process, with the share of
each step: the program under mocks, the policy pack, the reachability walk, the cost estimate.

``--baseline DIR`` also times ``python -m lmrun plan --json`` end to end on the first scale stack, with the
lmrun of another checkout (``git worktree add --detach DIR 8d51f47``) against this one, alternating runs in
one process so both see the same machine.

Everything is offline and deterministic (mocks echo inputs; no lookups); only the timings vary.
The last line printed is one JSON summary, for tools.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from lmrun.aws.instances import catalog
from lmrun.aws.region.catalog import REGIONS
from lmrun.aws.region.selection import is_usable
from lmrun.domain.ports import NODE_PORT_RANGE, SKYSERVE_LB_PORTS
from lmrun.mock_engine import Recording, run_program
from lmrun.spec.stackfile import StackConfig, load_stack_config
from lmrun.verify.offline import plan_stack

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Timing:
    """Wall seconds of each repeat of one measurement, and how many resources each run registered."""

    label: str
    seconds: tuple[float, ...]
    resources: int
    cloud_resources: int
    """Custom resources that are not providers (what a cloud would create)."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def ms_per_resource(self) -> float:
        return 1000 * self.median / self.resources if self.resources else 0.0


def _timed(label: str, repeats: int, run: Callable[[], Recording]) -> Timing:
    seconds: list[float] = []
    counts: set[tuple[int, int]] = set()
    for _ in range(repeats):
        start = time.perf_counter()
        recording = run()
        seconds.append(time.perf_counter() - start)
        counts.add((len(recording.resources), len(recording.custom)))
    if len(counts) != 1:
        raise RuntimeError(f"{label}: resource count changed between repeats: {sorted(counts)}")
    resources, cloud = counts.pop()
    return Timing(label, tuple(seconds), resources, cloud)


def plan_recording(stack: str, project_dir: Path = ROOT) -> Recording:
    """One offline plan of ``stack`` (preview mode, as ``lmrun plan`` runs it)."""
    return plan_stack(project_dir, load_stack_config(project_dir, stack=stack)).recording


def bench_plan(stack: str, repeats: int, project_dir: Path = ROOT) -> Timing:
    """Time the offline plan of ``stack``; the resource count includes providers and components."""
    return _timed(f"plan {stack}", repeats, lambda: plan_recording(stack, project_dir))


class Trivial(pulumi.CustomResource):
    """The cheapest resource the SDK can register: a few plain inputs, no schema, no provider."""

    def __init__(self, name: str, index: int) -> None:
        super().__init__("bench:index:Trivial", name, {"index": index, "label": name, "tags": {"bench": "1"}})


def bare_recording(count: int) -> Recording:
    """The SDK alone: ``count`` trivial resources under the same recording mock engine."""

    def program() -> None:
        for index in range(count):
            Trivial(f"trivial-{index:05d}", index)

    return run_program(program, project="bench", stack="bench", preview=True)


def bench_bare(count: int, repeats: int) -> Timing:
    return _timed("bare SDK", repeats, lambda: bare_recording(count))


IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def _python_env() -> dict[str, str]:
    return dict(os.environ)


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_python_env(), cwd=ROOT)
    return time.perf_counter() - start


def bench_import(repeats: int, module: str = "lmrun.components") -> dict[str, float]:
    """Fresh-interpreter import cost of ``module``: wall seconds over an empty interpreter, and -X importtime."""
    empty = [_wall("pass") for _ in range(repeats)]
    loaded = [_wall(f"import {module}") for _ in range(repeats)]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
        env=_python_env(),
        cwd=ROOT,
    )
    cumulative: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            # A module appears once (when first imported); keep that cumulative figure.
            cumulative.setdefault(match.group(4), int(match.group(2)))
    return {
        "wall_median_s": statistics.median(loaded) - statistics.median(empty),
        "wall_min_s": min(loaded) - min(empty),
        "interpreter_s": statistics.median(empty),
        "importtime_s": cumulative.get(module, 0) / 1e6,
        "importtime_pulumi_s": cumulative.get("pulumi", 0) / 1e6,
        "importtime_pulumi_aws_s": cumulative.get("pulumi_aws", 0) / 1e6,
    }


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pulumi": _version("pulumi"),
        "pulumi_aws": _version("pulumi_aws"),
        "writes_bytecode": "PYTHONDONTWRITEBYTECODE" not in os.environ,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def run(stack: str, repeats: int, *, imports: bool = True) -> dict[str, Any]:
    """All measurements of one benchmark run, as the JSON summary."""
    plan = bench_plan(stack, repeats)
    bare = bench_bare(plan.resources, repeats)
    summary: dict[str, Any] = {
        "stack": stack,
        "repeats": repeats,
        "resources": plan.resources,
        "cloud_resources": plan.cloud_resources,
        "plan_first_s": round(plan.seconds[0], 3),
        "plan_median_s": round(plan.median, 3),
        "plan_min_s": round(plan.best, 3),
        "bare_median_s": round(bare.median, 3),
        "bare_min_s": round(bare.best, 3),
        "plan_ms_per_resource": round(plan.ms_per_resource, 2),
        "bare_ms_per_resource": round(bare.ms_per_resource, 2),
        "overhead_ratio": round(plan.median / bare.median, 2) if bare.median else None,
        "machine": machine(),
    }
    if imports:
        summary["import"] = {key: round(value, 3) for key, value in bench_import(repeats).items()}
    return summary


def table(summary: dict[str, Any]) -> str:
    n = summary["resources"]
    rows = [
        ("what", "resources", "median s", "min s", "ms/resource"),
        (f"plan {summary['stack']}", str(n), f"{summary['plan_median_s']:.3f}", f"{summary['plan_min_s']:.3f}",
         f"{summary['plan_ms_per_resource']:.2f}"),
        ("bare SDK", str(n), f"{summary['bare_median_s']:.3f}", f"{summary['bare_min_s']:.3f}",
         f"{summary['bare_ms_per_resource']:.2f}"),
    ]  # fmt: skip
    if "import" in summary:
        imp = summary["import"]
        rows.append(("import lmrun.components", "", f"{imp['wall_median_s']:.3f}", f"{imp['wall_min_s']:.3f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = summary["machine"]
    lines.append("")
    lines.append(
        f"plan: {n} resources ({summary['cloud_resources']} cloud resources, the rest providers and components); "
        f"first repeat {summary['plan_first_s']:.3f} s (lazy pulumi_aws imports)"
    )
    lines.append(f"overhead of spec+plan+components over the bare SDK (median/median): x{summary['overhead_ratio']}")
    if "import" in summary:
        imp = summary["import"]
        lines.append(
            f"-X importtime lmrun.components: {imp['importtime_s']:.3f} s cumulative "
            f"(pulumi {imp['importtime_pulumi_s']:.3f} s, pulumi_aws {imp['importtime_pulumi_aws_s']:.3f} s); "
            f"empty interpreter {imp['interpreter_s']:.3f} s"
        )
    lines.append(f"machine: nproc={m['nproc']} python {m['python']} pulumi {m['pulumi']} pulumi_aws {m['pulumi_aws']}")
    return "\n".join(lines)


DEFAULT_SCALES = "200:main,200:spread,400:main,400:spread"
MAIN_REGION = "us-east-1"
CHECKS = ("program", "policy", "reachability", "cost")
MODEL = {"model": "Qwen/Qwen2.5-7B-Instruct", "modelRevision": "a09a35458c702b33eeacc393d103063234e8bc28"}


def _gpu_in(region: str) -> str | None:
    """A GPU the catalog offers in ``region`` (L4 where it can)."""
    offered = [gpu for gpu in catalog.gpu_names() if region in catalog.gpu_regions(gpu)]
    return "L4" if "L4" in offered else (offered[0] if offered else None)


BENCH_AMI = "ami-0123456789abcdef0"


def scale_config(nodes: int, spread: bool) -> StackConfig:
    """A stack of ``nodes`` GPU nodes, each its own service on its own node port: all in the main region, or
    spread round-robin over every region the mesh can plan that offers a GPU (every other one a spoke)."""
    spokes = [r for r in REGIONS if r != MAIN_REGION and is_usable(r)] if spread else []
    hosts = [r for r in (MAIN_REGION, *spokes) if _gpu_in(r)]
    declared = []
    ports = [port for port in NODE_PORT_RANGE if port not in SKYSERVE_LB_PORTS]  # the mesh reserves those
    for index in range(nodes):
        region = hosts[index % len(hosts)]
        name = f"n{index:03d}"
        declared.append({"name": name, "region": region, "gpu": _gpu_in(region), **MODEL, "nodePort": ports[index]})
    # Any well-formed AMI id: the plan only needs each image it boots pinned (nothing is launched).
    images: dict[str, dict[str, str]] = {MAIN_REGION: {"server": BENCH_AMI}}
    for region in hosts:
        images.setdefault(region, {})["gpu"] = BENCH_AMI
    config = {
        "pulumi:disable-default-providers": json.dumps(["*"]),
        "lmrun:mainRegion": MAIN_REGION,
        "lmrun:regions": json.dumps(spokes),
        "lmrun:images": json.dumps(images),
        "lmrun:nodes": json.dumps(declared),
        "lmrun:phoenix": json.dumps({"enabled": False}),
    }
    name = f"nodes-{nodes}-{'spread' if spread else 'main'}"
    return StackConfig("lmrun", name, config, (), ROOT / "stacks" / f"Pulumi.{name}.yaml")


def parse_scales(text: str) -> list[tuple[int, bool]]:
    """``200:main,400:spread`` -> [(200, False), (400, True)]."""
    scales = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        count, _, where = item.partition(":")
        if not count.isdigit() or where not in ("main", "spread"):
            raise ValueError(f"{item!r}: expected NODES:main or NODES:spread")
        scales.append((int(count), where == "spread"))
    return scales


def bench_scale(nodes: int, spread: bool) -> dict[str, Any]:
    """One in-process plan of a generated stack: wall seconds and each check's seconds and share."""
    config = scale_config(nodes, spread)
    start = time.perf_counter()
    report = plan_stack(ROOT, config)
    total = time.perf_counter() - start
    seconds = {check: round(report.timings.get(check, 0.0), 3) for check in CHECKS}
    return {
        "stack": config.stack,
        "nodes": nodes,
        "regions": len(report.regions),
        "resources": len(report.recording.resources),
        "paths": len(report.verdicts),
        "plan_s": round(total, 3),
        "seconds": seconds,
        "shares": {check: round(seconds[check] / total, 3) if total else 0.0 for check in CHECKS},
    }


def _tree(checkout: Path, target: Path) -> Path:
    """``checkout``'s lmrun laid out as installed (symlinks), for ``PYTHONPATH``."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "link_tree.py"), str(checkout), str(target)], check=True)
    return target


def _cli_plan_seconds(tree: Path, project: Path, stack_file: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -P -m lmrun plan --json`` with ``tree``'s lmrun first on the path (CPU
    time is what a busy machine distorts least). It runs in the stack file's directory with ``-P``: from a
    checkout's root, ``import lmrun`` would find the checkout's own ``lmrun/`` folder, and the editable
    install would fill in the rest from this repository."""
    env = {**_python_env(), "PYTHONPATH": str(tree)}
    command = [
        sys.executable,
        "-P",
        "-m",
        "lmrun",
        "plan",
        "--project-dir",
        str(project),
        "--config-file",
        str(stack_file),
    ]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*command, "--json"], check=True, env=env, cwd=stack_file.parent, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, cpu


def bench_baseline(baseline: Path, nodes: int, spread: bool, repeats: int, workdir: Path) -> dict[str, Any]:
    """``lmrun plan --json`` of a generated stack, end to end, with ``baseline``'s lmrun and with this one,
    alternating (before, after, before, after, ...) so both see the same machine."""
    config = scale_config(nodes, spread)
    stack_file = workdir / f"Pulumi.{config.stack}.yaml"
    stack_file.write_text(json.dumps({"config": {k: _yaml_value(v) for k, v in config.config.items()}}))
    trees = {"before": (_tree(baseline, workdir / "before"), baseline), "after": (_tree(ROOT, workdir / "after"), ROOT)}
    wall: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeats):
        for label, (tree, project) in trees.items():
            seconds, cpu_seconds = _cli_plan_seconds(tree, project, stack_file)
            wall[label].append(round(seconds, 2))
            cpu[label].append(round(cpu_seconds, 2))
    before, after = statistics.median(wall["before"]), statistics.median(wall["after"])
    return {
        "stack": config.stack,
        "command": f"python -m lmrun plan --config-file Pulumi.{config.stack}.yaml --json",
        "baseline": str(baseline),
        "before_s": wall["before"],
        "after_s": wall["after"],
        "before_cpu_s": cpu["before"],
        "after_cpu_s": cpu["after"],
        "ratio": round(after / before, 3) if before else None,
        "cpu_ratio": round(statistics.median(cpu["after"]) / statistics.median(cpu["before"]), 3),
    }


def _yaml_value(value: str) -> Any:
    """A flat config value back as the stack file holds it (JSON is YAML)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def scale_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("stack", "nodes", "regions", "resources", "paths", "plan s", *(f"{c} s (%)" for c in CHECKS))
    body = [
        (
            row["stack"],
            str(row["nodes"]),
            str(row["regions"]),
            str(row["resources"]),
            str(row["paths"]),
            f"{row['plan_s']:.2f}",
            *(f"{row['seconds'][c]:.2f} ({100 * row['shares'][c]:.0f}%)" for c in CHECKS),
        )
        for row in rows
    ]
    table_rows = [header, *body]
    widths = [max(len(r[i]) for r in table_rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in table_rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="global", help="stack in stacks/ to plan (default: global)")
    parser.add_argument("--repeats", "-n", type=int, default=3, help="repeats of each measurement (default: 3)")
    parser.add_argument("--no-imports", action="store_true", help="skip the subprocess import timing")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON summary")
    parser.add_argument(
        "--scale",
        default=DEFAULT_SCALES,
        help=f"generated stacks to plan, NODES:main|spread, comma-separated ('' for none; default {DEFAULT_SCALES})",
    )
    parser.add_argument("--baseline", type=Path, help="another checkout of the repository: time its `lmrun plan` too")
    parser.add_argument("--baseline-repeats", type=int, default=2, help="runs of each side with --baseline")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        scales = parse_scales(args.scale)
    except ValueError as exc:
        parser.error(str(exc))
    summary = run(args.stack, args.repeats, imports=not args.no_imports)
    summary["scale"] = [bench_scale(nodes, spread) for nodes, spread in scales]
    if args.baseline is not None:
        import tempfile

        nodes, spread = scales[0] if scales else (200, False)
        with tempfile.TemporaryDirectory() as workdir:
            summary["baseline"] = bench_baseline(args.baseline, nodes, spread, args.baseline_repeats, Path(workdir))
    if not args.json_only:
        print(table(summary))
        if summary["scale"]:
            print()
            print(scale_table(summary["scale"]))
        if "baseline" in summary:
            base = summary["baseline"]
            print()
            print(
                f"{base['command']}: wall before {base['before_s']} s ({base['baseline']}), after {base['after_s']} s "
                f"(x{base['ratio']}); CPU before {base['before_cpu_s']} s, after {base['after_cpu_s']} s "
                f"(x{base['cpu_ratio']})"
            )
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
