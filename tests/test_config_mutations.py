"""Random mutations of the example stacks never crash the plan (issue 12: 22 of 400 ended in raw exceptions).

Each example deletes keys, swaps values for values of other types, nests them, puts numbers out of range,
adds non-string keys and enormous strings, anywhere in a stack file's ``config:``, and runs the real CLI on
it. Every outcome must be 0 (planned), 2 (refused: one line per problem, each starting with its path, in the
project's words) or 3 (a mandatory policy violated); never 1 or a traceback. Derandomized, a fixed number of
examples: the same cases on every run, and a bounded runtime (the test measures its CPU time, which the other
tests running beside it on the machine do not inflate).
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrun.cli import main
from lmrun.domain.errors import EXIT_INVALID_INPUT, EXIT_OK, EXIT_POLICY_VIOLATION
from tests.conftest import ROOT

EXAMPLES = 120
STACKS = {name: yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text()) for name in ("dev", "global")}
LIBRARY_WORDS = ("Input should", "Field required", "Extra inputs", "Value error", "String should", "pydantic")

Place = tuple[Any, Any]
"""A container (dict or list) and a key or index in it."""


def _places(value: Any) -> list[Place]:
    """Every place inside a config tree, parents before children."""
    found: list[Place] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found.append((value, key))
        found.extend(_places(item))
    return found


WRONG_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1.5, 10**20, 65536, "", "x", "on", "2024-01-01", [], {}]),
    st.sampled_from(["x" * 10_000, "ami-" + "0" * 17, "10.130.0.0/16", "0.0.0.0/0", "Qwen/" + "q" * 300]),
    st.lists(st.sampled_from([1, "a", None]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "name", "port"]), st.sampled_from([1, "b"]), max_size=2),
)
NON_STRING_KEYS = st.sampled_from([1, True, None, 2.5])


@st.composite
def mutated_stacks(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[str]]:
    """An example stack file with one to three mutations, and their descriptions (for the failure message)."""
    # `global` three times in four: a mutant of it that still plans costs ~4 s, a mutant of `dev` ~0.2 s.
    name = draw(st.sampled_from(["dev", "dev", "dev", "global"]))
    document = copy.deepcopy(STACKS[name])
    done: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        places = _places(document["config"]) if isinstance(document.get("config"), dict) else []
        if not places or draw(st.integers(0, 19)) == 0:
            document["config"] = draw(st.sampled_from(["x", 5, [], None]))
            done.append(f"config: {document['config']!r}")
            continue
        container, key = draw(st.sampled_from(places))
        kind = draw(st.sampled_from(["delete", "wrong", "nest", "number", "key", "duplicate"]))
        if kind == "delete":
            del container[key]
        elif kind == "wrong":
            container[key] = draw(WRONG_VALUES)
        elif kind == "nest":
            container[key] = draw(st.sampled_from([[container[key]], {"value": container[key]}]))
        elif kind == "number":
            container[key] = draw(st.sampled_from([-1, 0, 1, 1023, 30000, 32768, 65536, 2**31, 10**30]))
        elif kind == "key":
            target = container[key] if isinstance(container[key], dict) else container
            if isinstance(target, dict):
                target[draw(NON_STRING_KEYS)] = draw(WRONG_VALUES)
        elif isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        done.append(f"{kind} {key!r}")
    return name, document, done


def _run(project_dir: Path, document: dict[str, Any]) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as folder:
        stack_file = Path(folder) / "Pulumi.mutant.yaml"
        stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
        args = ["plan", "--config-file", str(stack_file), "--project-dir", str(project_dir), "--json"]
        # Hypothesis runs every example inside one test call: capsys would mix them, so each gets its own streams.
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
        return code, out.getvalue(), err.getvalue()


def test_mutations_end_in_a_plan_a_refusal_or_a_policy_verdict(project_dir: Path) -> None:
    outcomes: dict[int, int] = {}
    start, cpu_start = time.perf_counter(), time.process_time()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_stacks())
    def check(case: tuple[str, dict[str, Any], list[str]]) -> None:
        name, document, done = case
        code, out, err = _run(project_dir, document)
        context = f"{name} after {done}:\n{err[:2000]}"
        assert code in (EXIT_OK, EXIT_INVALID_INPUT, EXIT_POLICY_VIOLATION), context
        assert "Traceback" not in err, context
        if code == EXIT_INVALID_INPUT:
            lines = err.splitlines()
            assert out == "" and lines, context
            assert len(lines) < 200 and all(len(line) <= 1100 for line in lines), context
            assert not any(word in err for word in LIBRARY_WORDS), context
            assert all(": " in line for line in lines), context
        outcomes[code] = outcomes.get(code, 0) + 1

    check()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"{EXAMPLES} mutations in {seconds:.1f} s ({cpu_seconds:.1f} s CPU): {outcomes}")
    assert sum(outcomes.values()) == EXAMPLES
    assert outcomes.get(EXIT_INVALID_INPUT, 0) > EXAMPLES // 2, outcomes  # the mutations do break things
    assert outcomes.get(EXIT_OK, 0) > 0, outcomes  # and some leave a stack that plans
    assert cpu_seconds < 60, f"{EXAMPLES} mutations took {cpu_seconds:.1f} s of CPU"


# The raw exceptions the 400 mutations of `global` ended in (exit 1), each reproduced in its stack.
CRASHES: dict[str, tuple[str, dict[str, Any], str]] = {
    "unhashable-dict-in-regions": (
        "global",
        {"lmrun:regions": [{"us-east-2": None}, "us-west-2"]},
        "lmrun:regions[0]: should be a string",
    ),
    "mapping-as-main-region": ("dev", {"lmrun:mainRegion": {"us-east-1": 1}}, "lmrun:mainRegion: should be a string"),
    "non-string-key": ("dev", {7: "x"}, "7: has no namespace"),
    "yaml-on-key": ("dev", {"on": "x"}, "on: has no namespace"),
    "list-as-node": ("global", {"lmrun:nodes": [["qwen-use2"]]}, "lmrun:nodes[0]: should be a mapping"),
}


@pytest.mark.parametrize("case", CRASHES.values(), ids=CRASHES.keys())
def test_reported_crashes_are_refusals(case: tuple[str, dict[Any, Any], str], project_dir: Path) -> None:
    name, changes, line = case
    document = copy.deepcopy(STACKS[name])
    document["config"].update(changes)
    code, out, err = _run(project_dir, document)
    assert (code, out) == (EXIT_INVALID_INPUT, ""), err
    assert any(reported.startswith(line) for reported in err.splitlines()), err
