"""The whole stack file is checked as Pulumi would read it, and more (issue 12: "mistakes outside `lmrun:` pass
silently"; raw exceptions from `config: x`, non-string keys, `on:`, deep nesting).

Each case is a stack file's text, planned by the real CLI: before, `mainRegion: us-west-2` or `lmrn:regions`
planned with exit 0 and the default region, and the others ended in tracebacks with exit 1; now each is one
line naming the key, exit 2, beside the spec's own problems.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmrun.cli import main
from lmrun.spec.namespaces import NAMESPACES
from lmrun.spec.stackfile import load_stack_config
from tests.conftest import ROOT, TEST_AMI, plan

PINNED = f"  lmrun:images: {{us-east-1: {{server: {TEST_AMI}}}}}\n"
VALID = "config:\n  lmrun:mainRegion: us-east-1\n" + PINNED


@dataclass(frozen=True)
class FileCase:
    text: str
    lines: tuple[str, ...]
    """Each expected stderr line's start (path and message head), in order; () when the stack plans."""


CASES: dict[str, FileCase] = {
    # Before: planned with exit 0, in us-east-1, with no spoke: the user's intent was silently dropped.
    "un-namespaced-keys": FileCase(
        VALID + "  mainRegion: us-west-2\n  regions: [eu-west-1]\n",
        (
            "mainRegion: has no namespace, and Pulumi refuses such a stack config key; did you mean lmrun:mainRegion?",
            "regions: has no namespace, and Pulumi refuses such a stack config key; did you mean lmrun:regions?",
        ),
    ),
    "namespace-typo": FileCase(
        VALID + "  lmrn:regions: [eu-west-1]\n",
        ("lmrn:regions: unknown namespace 'lmrn': no part of this stack reads it; did you mean lmrun:regions?",),
    ),
    "namespace-nobody-reads": FileCase(
        VALID + "  azure:location: westeurope\n",
        ("azure:location: unknown namespace 'azure': no part of this stack reads it; namespaces this stack reads:",),
    ),
    # Before: only "lmrun:mainRegion: is required".
    "missing-config-section": FileCase(
        "lmrun:mainRegion: us-east-1\n",
        (
            "lmrun:mainRegion: is at the top level of the stack file (the file has no `config:`); config keys "
            "belong under `config:`",
        ),
    ),
    "config-section-misspelt": FileCase(
        "confg:\n  lmrun:mainRegion: us-east-1\n",
        (
            "confg: unknown top-level key of a stack file; did you mean config?",
            "lmrun:mainRegion: is required",
        ),
    ),
    # Before: AttributeError: 'str' object has no attribute 'items', exit 1.
    "config-not-a-mapping": FileCase(
        "config: x\n",
        ("config: should be a mapping of `namespace:key: value` (got 'x')", "lmrun:mainRegion: is required"),
    ),
    # Before: AttributeError: 'int' object has no attribute 'startswith', exit 1.
    "number-as-config-key": FileCase(
        VALID + "  1: x\n", ("1: has no namespace, and Pulumi refuses such a stack config key;",)
    ),
    # Before: AttributeError: 'bool' object has no attribute 'startswith' (PyYAML reads `on` as true; Pulumi's
    # YAML 1.2 reader keeps the string).
    "yaml-1.1-boolean-key": FileCase(
        VALID + "  on: x\n", ("on: has no namespace, and Pulumi refuses such a stack config key;",)
    ),
    "yaml-1.1-boolean-key-nested": FileCase(
        VALID + "  lmrun:phoenix: {on: true}\n", ("lmrun:phoenix.on: unknown key; known keys:",)
    ),
    "number-as-nested-key": FileCase(
        VALID + "  lmrun:tags: {1: ml}\n", ("lmrun:tags.1: the key 1 is a number, not a string; quote it",)
    ),
    "nested-deeper-than-any-setting": FileCase(
        VALID + "  lmrun:tags: " + "[" * 40 + "]" * 40 + "\n",
        ("lmrun:tags[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested more than 16 levels deep",),
    ),
    "yaml-set": FileCase(
        VALID + "  lmrun:regions: !!set {eu-west-1: null}\n",
        ("lmrun:regions: a YAML set is not a config value; write it as a string, number, list or mapping",),
    ),
    # Accepted as Pulumi accepts them: provider and engine namespaces, `ns:config:key`, dates as strings.
    "provider-namespaces": FileCase(
        VALID + "".join(f"  {namespace}:someSetting: x\n" for namespace in NAMESPACES if namespace != "lmrun"), ()
    ),
    "old-config-spelling": FileCase(
        "config:\n  lmrun:config:mainRegion: us-east-1\n" + PINNED + "  lmrun:tags: {since: 2024-01-01}\n", ()
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_stack_file_is_checked_like_pulumi_reads_it(
    case: FileCase, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / "Pulumi.case.yaml"
    stack_file.write_text(case.text)
    code = main(["plan", "--config-file", str(stack_file), "--project-dir", str(project_dir), "--json"])
    captured = capsys.readouterr()
    if not case.lines:
        assert (code, captured.err) == (0, "")
        return
    assert (code, captured.out) == (2, ""), captured.err
    lines = captured.err.splitlines()
    assert len(lines) == len(case.lines), lines
    for line, start in zip(lines, case.lines, strict=True):
        assert line.startswith(start), (line, start)


def test_deep_nesting_is_one_line(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 levels: the YAML reader itself cannot go that deep (RecursionError, exit 1, before)."""
    stack_file = tmp_path / "Pulumi.deep.yaml"
    stack_file.write_text(VALID + "  lmrun:tags: " + "[" * 1000 + "]" * 1000 + "\n")
    code = main(["plan", "--config-file", str(stack_file), "--project-dir", str(project_dir)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: {stack_file}: nested too deeply to read (no lmrun setting nests more than a few levels)\n"
    )


def test_stack_file_reader_keeps_what_pulumi_keeps(tmp_path: Path) -> None:
    """YAML 1.2 as Pulumi's reader: `yes`/`on`/dates are strings, `017` is 17, `true` is a boolean."""
    stack_file = tmp_path / "Pulumi.read.yaml"
    stack_file.write_text(
        "config:\n  lmrun:mainRegion: us-east-1\n  lmrun:tags: {a: yes, b: on, c: 2024-01-01, d: 017}\n"
        "  lmrun:phoenix: {enabled: true}\n  aws:config:region: eu-west-1\n"
    )
    stack = load_stack_config(ROOT, config_file=stack_file)
    assert stack.config["lmrun:tags"] == '{"a": "yes", "b": "on", "c": "2024-01-01", "d": 17}'
    assert stack.config["lmrun:phoenix"] == '{"enabled": true}'
    assert stack.config["aws:region"] == "eu-west-1"
    assert stack.issues == ()


def test_the_namespaces_are_those_of_the_providers_a_plan_registers() -> None:
    """One source: every provider package the global stack registers has its namespace allowed, and every
    allowed namespace but the project's and the engine's is a provider the mesh uses."""
    providers = {
        resource.type.removeprefix("pulumi:providers:")
        for resource in plan("global").snapshot.resources
        if resource.type.startswith("pulumi:providers:")
    }
    assert set(NAMESPACES) - {"lmrun", "pulumi"} == providers


def test_subprocess_prints_one_line_per_problem(project_dir: Path, tmp_path: Path) -> None:
    """End to end in a fresh interpreter: exit 2, no traceback, a stack file mistake beside a spec mistake."""
    stack_file = tmp_path / "Pulumi.mixed.yaml"
    stack_file.write_text(VALID + "  regions: [eu-west-1]\n  lmrun:maxPeerings: lots\n")
    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "plan", "--config-file", str(stack_file), "--project-dir", str(project_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == ["lmrun:maxPeerings", "regions"]
