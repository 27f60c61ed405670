"""Helpers for the table-driven bad-config tests: write a stack file, run the real CLI on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.cli import main


def write_stack(path: Path, config: dict[str, Any]) -> Path:
    """A stack file whose ``config:`` holds ``config`` with every key put under ``lmrun:``."""
    path.write_text(yaml.safe_dump({"config": {f"lmrun:{key}": value for key, value in config.items()}}))
    return path


def run_plan(project_dir: Path, stack_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["plan", "--config-file", str(stack_file), "--project-dir", str(project_dir), "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@dataclass(frozen=True)
class Case:
    """One invalid config and the problems it must be reported with: (config path, key phrase) each."""

    config: dict[str, Any]
    expected: tuple[tuple[str, str], ...]


def assert_refused(case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real CLI refuses ``case.config`` with exit 2, no output, no traceback, and exactly the expected
    problems: one sorted line each, starting with its config path and containing its key phrase."""
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.bad.yaml", case.config), capsys)
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines == sorted(lines), "issues are reported sorted by config path"
    for path, phrase in case.expected:
        assert any(line.startswith(f"{path}: ") and phrase in line for line in lines), (path, phrase, lines)
    assert len(lines) == len(case.expected), lines
