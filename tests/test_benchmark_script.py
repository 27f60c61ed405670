"""scripts/benchmark.py counts what it times: its figures are checked against the mock engine, not timed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lmrun.mock_engine import run_program
from lmrun.spec.stackfile import load_stack_config
from lmrun.verify.offline import plan_stack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lmrun_benchmark_script", ROOT / "scripts" / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_reported_count_is_what_the_engine_records(benchmark: ModuleType) -> None:
    summary = benchmark.run("dev", 1, imports=False)

    stack = load_stack_config(ROOT, stack="dev")
    recorded = plan_stack(ROOT, stack).recording
    assert summary["resources"] == len(recorded.resources) > 0
    assert summary["cloud_resources"] == len(recorded.custom) > 0
    assert summary["stack"] == "dev" and summary["repeats"] == 1
    json.dumps(summary)  # the summary line is valid JSON


def test_bare_sdk_registers_exactly_the_requested_count(benchmark: ModuleType) -> None:
    recording = benchmark.bare_recording(25)
    assert len(recording.resources) == 25
    assert {r.type for r in recording.resources} == {"bench:index:Trivial"}

    # The same program under a plain run_program call (no benchmark wrapper) records the same thing.
    def program() -> None:
        for index in range(25):
            benchmark.Trivial(f"t-{index}", index)

    assert len(run_program(program, project="bench", stack="bench").resources) == 25


def test_main_prints_a_table_and_a_json_line(benchmark: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmark.main(["--stack", "dev", "--repeats", "1", "--no-imports", "--scale", "3:main,3:spread"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split()[:2] == ["what", "resources"]
    summary = json.loads(out[-1])
    assert summary["stack"] == "dev" and summary["resources"] > 0
    assert {"plan_median_s", "bare_median_s", "overhead_ratio", "machine"} <= set(summary)
    assert any(line.startswith("nodes-3-spread ") for line in out)
    main_only, spread = summary["scale"]
    assert (main_only["stack"], main_only["regions"], spread["stack"], spread["regions"]) == (
        "nodes-3-main",
        1,
        "nodes-3-spread",
        33,
    )
    for row in summary["scale"]:
        assert set(row["shares"]) == {"program", "policy", "reachability", "cost"}
        assert row["paths"] >= 3 and sum(row["seconds"].values()) <= row["plan_s"] + 0.01


def test_scale_stacks_place_one_service_per_node_where_a_gpu_is_offered(benchmark: ModuleType) -> None:
    config = benchmark.scale_config(70, spread=True)
    nodes = json.loads(config.config["lmrun:nodes"])
    spokes = json.loads(config.config["lmrun:regions"])
    assert len(spokes) == 32 and "ap-east-1" not in spokes  # every region the mesh plans, but the rogue one
    assert len({n["nodePort"] for n in nodes}) == len({n["name"] for n in nodes}) == 70
    assert {n["region"] for n in nodes} <= {"us-east-1", *spokes}
    assert len({n["region"] for n in nodes}) > 20
    assert json.loads(benchmark.scale_config(5, spread=False).config["lmrun:regions"]) == []
    assert benchmark.parse_scales("200:main, 400:spread") == [(200, False), (400, True)]
    with pytest.raises(ValueError, match="NODES:main or NODES:spread"):
        benchmark.parse_scales("200:everywhere")


@pytest.mark.slow
def test_baseline_runs_the_other_checkouts_lmrun(benchmark: ModuleType, tmp_path: Path) -> None:
    """With this very checkout as the baseline both sides plan the same stack; and the link tree the baseline
    runs from holds the baseline's lmrun, not this editable install's."""
    result = benchmark.bench_baseline(ROOT, 2, False, 1, tmp_path)
    assert result["stack"] == "nodes-2-main" and len(result["before_s"]) == len(result["after_s"]) == 1
    assert all(seconds > 0 for seconds in (*result["before_cpu_s"], *result["after_cpu_s"]))
    assert (tmp_path / "before" / "lmrun" / "verify").resolve() == (ROOT / "verify").resolve()
