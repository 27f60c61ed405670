"""CLI input errors: one line naming the option, exit 2, before any long work (issue 12: `IsADirectoryError`,
`JSONDecodeError`, `KeyError: 'config_filename'`, `FileExistsError` after a full plan, "the Pulumi CLI is not
installed" for every join-bundle mistake, a missing stack that did not list the existing ones).

Each case runs the real CLI with the plan, the Pulumi CLI and the bundle writer replaced by tripwires: a
refusal must come before any of them runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmrun.cli import main
from tests.conftest import ROOT, plan


@dataclass(frozen=True)
class InputCase:
    argv: Callable[[Path], list[str]]
    """The arguments, given a scratch directory holding `file` (a file), `folder` and `folder.svg` (directories)
    and `bundles.json` (the global stack's join bundles); upper-case words are replaced by :func:`_placeholders`."""
    line: Callable[[Path], str]
    """The one stderr line expected."""


def _tripwire(what: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{what} ran before the input was checked")

    return fail


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.svg").mkdir()
    (tmp_path / "bundles.json").write_text(json.dumps(plan("global").recording.outputs["joinBundles"].value))
    monkeypatch.setattr("lmrun.verify.offline.plan_stack", _tripwire("the plan"))
    monkeypatch.setattr("lmrun.cli.join_bundle.subprocess.run", _tripwire("the Pulumi CLI"))
    return tmp_path


def join(site: str, *more: str) -> Callable[[Path], list[str]]:
    return lambda d: ["join-bundle", "--project-dir", str(ROOT), "--stack", "global", "--site", site, *more]


CASES: dict[str, InputCase] = {
    # Before: error: IsADirectoryError: [Errno 21] Is a directory (exit 1).
    "config-file-is-a-directory": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--config-file", str(d / "folder")],
        lambda d: f"error: --config-file {d / 'folder'}: is a directory, not a file",
    ),
    "config-file-missing": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--config-file", str(d / "nope.yaml")],
        lambda d: f"error: --config-file {d / 'nope.yaml'}: no such file",
    ),
    # Before: the stack file's path only.
    "unknown-stack-lists-the-stacks": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--stack", "prod"],
        lambda d: (
            f"error: --stack prod: no stack file {ROOT / 'stacks' / 'Pulumi.prod.yaml'}; the stacks of this "
            "project: dev, fleet, global"
        ),
    ),
    "project-without-pulumi-yaml": InputCase(
        lambda d: ["plan", "--project-dir", str(d / "folder"), "--stack", "dev"],
        lambda d: f"error: --project-dir {d / 'folder'}: holds no Pulumi.yaml (run from the project or point at it)",
    ),
    # Before: FileExistsError after a full plan, no table printed (exit 1).
    "graph-under-a-file": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--stack", "dev", "--graph", str(d / "file" / "mesh.svg")],
        lambda d: f"error: --graph {d / 'file' / 'mesh.svg'}: cannot be written: {d / 'file'} is not a directory",
    ),
    "graph-is-a-directory": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--stack", "dev", "--graph", str(d / "folder.svg")],
        lambda d: f"error: --graph {d / 'folder.svg'}: is a directory; give a file name",
    ),
    "graph-suffix": InputCase(
        lambda d: ["plan", "--stack", "dev", "--graph", "mesh.txt"],
        lambda d: (
            "error: argument --graph: mesh.txt: the graph file must end in .svg or .png (see `lmrun plan --help`)"
        ),
    ),
    "policy-config-is-a-directory": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--stack", "dev", "--policy-config", str(d / "folder")],
        lambda d: f"error: --policy-config {d / 'folder'}: is a directory, not a file",
    ),
    "policy-config-not-json": InputCase(
        lambda d: ["plan", "--project-dir", str(ROOT), "--stack", "dev", "--policy-config", str(d / "file")],
        lambda d: f"error: --policy-config {d / 'file'}: Expecting value: line 1 column 1 (char 0)",
    ),
    "argparse-missing-value": InputCase(
        lambda d: ["plan", "--stack"],
        lambda d: "error: argument --stack: expected one argument (see `lmrun plan --help`)",
    ),
    "max-workers-zero": InputCase(
        lambda d: ["regions", "sync", "--stack", "dev", "--max-workers", "0"],
        lambda d: (
            "error: argument --max-workers: '0' is not a whole number of at least 1 (see `lmrun regions sync --help`)"
        ),
    ),
    # Before: "the Pulumi CLI is not installed" for each of these.
    "join-bundle-unknown-stack": InputCase(
        lambda d: ["join-bundle", "--project-dir", str(ROOT), "--stack", "prod", "--site", "lab-onprem"],
        lambda d: (
            f"error: --stack prod: no stack file {ROOT / 'stacks' / 'Pulumi.prod.yaml'}; the stacks of this "
            "project: dev, fleet, global"
        ),
    ),
    "join-bundle-unknown-site": InputCase(
        join("lab"), lambda d: "error: --site lab: stack global has no such site; its external sites: lab-onprem"
    ),
    "join-bundle-gcp-site": InputCase(
        join("gcp-usc1"),
        lambda d: (
            "error: --site gcp-usc1: is a GCP site: the stack deploys it and its gateway joins by itself; "
            "only external sites get a bundle (stack global's: lab-onprem)"
        ),
    ),
    "join-bundle-out-under-a-file": InputCase(
        join("lab-onprem", "--from-json", "BUNDLES", "--out", "FILE/out"),
        lambda d: f"error: --out {d / 'file' / 'out'}: cannot be a directory: {d / 'file'} is a file",
    ),
    # Before: JSONDecodeError (exit 1).
    "join-bundle-json-not-json": InputCase(
        join("lab-onprem", "--from-json", "FILE"),
        lambda d: f"error: --from-json {d / 'file'}: not JSON (Expecting value: line 1 column 1 (char 0))",
    ),
    # Before: KeyError: 'config_filename' (exit 1).
    "join-bundle-json-not-a-bundle": InputCase(
        join("lab-onprem", "--from-json", "EMPTY"),
        lambda d: (
            "error: the bundle of site 'lab-onprem' lacks config_filename, script_filename, config, bootstrap: "
            "not a joinBundles output"
        ),
    ),
    # A bundle never writes outside --out.
    "join-bundle-file-name-with-a-path": InputCase(
        join("lab-onprem", "--from-json", "ESCAPE", "--out", "FOLDER"),
        lambda d: "error: the bundle of site 'lab-onprem' names '../x.conf' as config_filename: not a file name",
    ),
}


def _placeholders(argv: list[str], d: Path) -> list[str]:
    bundles = json.loads((d / "bundles.json").read_text())
    (d / "empty.json").write_text(json.dumps({"lab-onprem": {}}))
    (d / "escape.json").write_text(
        json.dumps({"lab-onprem": {**bundles["lab-onprem"], "config_filename": "../x.conf"}})
    )
    names = {
        "BUNDLES": d / "bundles.json",
        "FILE": d / "file",
        "EMPTY": d / "empty.json",
        "ESCAPE": d / "escape.json",
        "FOLDER": d / "folder",
    }
    replaced = []
    for arg in argv:
        head, _, tail = arg.partition("/")
        replaced.append(str(names[head] / tail) if head in names and tail else str(names.get(arg, arg)))
    return replaced


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_input_error_is_one_line_naming_the_option(
    case: InputCase, scratch: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code = _run(_placeholders(case.argv(scratch), scratch))
    err = capsys.readouterr().err
    assert (code, err) == (2, case.line(scratch) + "\n")
    assert not (scratch / "x.conf").exists()


def _run(argv: list[str]) -> int:
    """The CLI's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_pulumi_is_asked_only_for_a_valid_external_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stack and the site valid, a missing Pulumi CLI is the one thing said."""

    def no_pulumi(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("pulumi")

    monkeypatch.setattr("lmrun.cli.join_bundle.subprocess.run", no_pulumi)
    code = main(
        ["join-bundle", "--project-dir", str(ROOT), "--stack", "global", "--site", "lab-onprem", "--out", str(tmp_path)]
    )
    assert (code, capsys.readouterr().err) == (
        2,
        "error: the Pulumi CLI is not installed; pass --from-json with the stack output\n",
    )
