"""Benchmark the offline plan of a stack against the bare Pulumi SDK registering as many trivial resources.

    .venv/bin/python scripts/benchmark.py [--stack global] [--repeats 3] [--json-only]

(`make bench` runs it with the defaults.) Three figures, each repeated and reported as median and min:

- **plan**: ``lmrun.verify.offline.plan_stack`` of the stack, in process: the real ``__main__.py`` (config -> spec ->
  plan -> components -> resources) under the recording mock engine, as ``lmrun plan`` runs it.
- **bare SDK**: the same mock engine registering the same number of resources of a minimal
  ``pulumi.CustomResource`` subclass (a few plain inputs, no parents, no providers). The difference is what
  our spec, plan, components and pulumi_aws's resource classes add on top of the engine's own cost.
- **import**: a fresh interpreter's wall time for ``import lmrun.components`` minus an empty interpreter's,
  and ``-X importtime``'s cumulative figure with the share of ``pulumi`` and ``pulumi_aws``.

Everything is offline and deterministic (mocks echo inputs; no lookups); only the timings vary.
The last line printed is one JSON summary, for tools.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from lmrun.mock_engine import Recording, run_program
from lmrun.spec.stackfile import load_stack_config
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="global", help="stack in stacks/ to plan (default: global)")
    parser.add_argument("--repeats", "-n", type=int, default=3, help="repeats of each measurement (default: 3)")
    parser.add_argument("--no-imports", action="store_true", help="skip the subprocess import timing")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON summary")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    summary = run(args.stack, args.repeats, imports=not args.no_imports)
    if not args.json_only:
        print(table(summary))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
