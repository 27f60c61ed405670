"""`lmrun plan` runs the policy pack: violations in --json and the table view, exit 3 on a mandatory one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmrun.cli import EXIT_INVALID_CONFIG, EXIT_OK, EXIT_POLICY_VIOLATION, main
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["plan", "--project-dir", str(ROOT), *args, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


@pytest.fixture
def t4_stack(tmp_path: Path) -> Path:
    """The dev stack with its node on a T4 (a g4dn instance): valid for the spec, but not for a pack that
    allows only G6 families."""
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["lmrun:nodes"][0]["gpu"] = "T4"
    path = tmp_path / "Pulumi.t4.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def g6_only(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"gpu-instance-allow-list": {"allowedFamilies": ["g6", "g6e"]}}))
    return path


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_example_stacks_pass_the_pack(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = _plan_json(capsys, "--stack", stack)
    assert code == EXIT_OK
    assert document["violations"] == []


def test_mandatory_violation_exits_3_and_is_listed(
    t4_stack: Path, g6_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = _plan_json(capsys, "--config-file", str(t4_stack), "--policy-config", str(g6_only))
    assert code == EXIT_POLICY_VIOLATION
    violations = document["violations"]
    assert isinstance(violations, list) and violations
    assert all(set(v) == {"policy", "level", "resource", "message"} for v in violations)
    hit = [v for v in violations if v["policy"] == "gpu-instance-allow-list"]
    assert hit and all(v["level"] == "mandatory" for v in hit)
    assert any("mesh-cluster-node-qwen-dev-lt" in v["resource"] and "g4dn" in v["message"] for v in hit)


def test_same_config_passes_without_the_policy_config(t4_stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """g4dn is in the pack's default allow-list (the catalog's families): no violation, exit 0."""
    code, document = _plan_json(capsys, "--config-file", str(t4_stack))
    assert code == EXIT_OK and document["violations"] == []


def test_advisory_violation_is_listed_but_exits_0(
    t4_stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "advisory.json"
    config.write_text(
        json.dumps({"gpu-instance-allow-list": {"enforcementLevel": "advisory", "allowedFamilies": ["g6"]}})
    )
    code, document = _plan_json(capsys, "--config-file", str(t4_stack), "--policy-config", str(config))
    assert code == EXIT_OK
    # One per T4 type the node may launch: its launch template's, and both of its group's overrides.
    assert [(v["policy"], v["level"]) for v in document["violations"]] == [("gpu-instance-allow-list", "advisory")] * 3


def test_table_view_lists_violations(t4_stack: Path, g6_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--project-dir", str(ROOT), "--config-file", str(t4_stack), "--policy-config", str(g6_only)])
    out = capsys.readouterr().out
    assert code == EXIT_POLICY_VIOLATION
    assert "Policy pack: 3 violation(s), 3 mandatory" in out  # the template's type and the group's two overrides
    assert "gpu-instance-allow-list" in out and "exit 3" in out


def test_table_view_says_when_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "dev"]) == EXIT_OK
    assert "Policy pack: no violations." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"no-such-rule": "advisory"}', "error: policy config: no-such-rule: no such rule"),
        ('{"no-ssh": {"allowSh": true}}', "error: policy config: no-ssh.allowSh: unknown config property"),
        ('{"no-ssh": "loud"}', "'loud' is not one of"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "policy.json: Expecting property name"),
    ],
)
def test_bad_policy_config_exits_2(
    content: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(content)
    code = main(["plan", "--project-dir", str(ROOT), "--stack", "dev", "--policy-config", str(path)])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID_CONFIG
    assert needle in err and "Traceback" not in err


def test_missing_policy_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--project-dir", str(ROOT), "--stack", "dev", "--policy-config", str(tmp_path / "x.json")])
    assert code == EXIT_INVALID_CONFIG
    assert "x.json" in capsys.readouterr().err


def test_exit_3_end_to_end(t4_stack: Path, g6_only: Path) -> None:
    """The process's exit status, as CI would see it."""
    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "plan", "--config-file", str(t4_stack), "--policy-config", str(g6_only)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "gpu-instance-allow-list" in result.stdout
