"""`lmrun check --from-preview/--from-state`: the plan's checks on documents built from Pulumi's published JSON
shapes (tests/pulumi_documents.py) give the plan's verdicts; what a real preview cannot tell is reported as
such, never as a mismatch; a broken route in the document is caught; a bad file exits 2 in one line."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from lmrun.cli import main
from lmrun.mock_engine import Recording
from lmrun.spec.stackfile import load_stack_config
from lmrun.verify.checks import PlanReport
from lmrun.verify.offline import plan_stack
from tests.conftest import ROOT
from tests.pulumi_documents import preview_document, state_document

POLICY = {
    "all": "advisory",
    "gpu-instance-allow-list": {"allowedFamilies": ["p5"]},
    "required-tags": {"requiredTags": ["owner"]},
}
"""A pack config under which rules fire on many resources, so "same violations" compares something."""


@functools.cache
def planned(stack: str) -> PlanReport:
    """``lmrun plan`` of a stack (preview mode, as the CLI runs it) under :data:`POLICY`."""
    return plan_stack(ROOT, load_stack_config(ROOT, stack=stack), policy_config=POLICY)


def _write(tmp_path: Path, name: str, document: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def _check(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``lmrun check ARGS --json`` under :data:`POLICY`: exit code, the JSON document, stderr."""
    policy = _write(tmp_path, "policy.json", POLICY)
    code = main(["check", *args, "--json", "--policy-config", str(policy)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def _verdicts(document: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, Any, str]]:
    return {
        (p["from"], p["to"]): (p["ok"], p.get("resources_ok"), p.get("resources_reason", ""))
        for p in document["reachability"]
    }


def _as_plan_json(report: PlanReport) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(report.to_json(), default=str))
    return loaded


def _violations(document: dict[str, Any]) -> list[tuple[str, ...]]:
    return sorted(tuple(v.values()) for v in document["violations"])


def _config(stack: str) -> dict[str, str]:
    return load_stack_config(ROOT, stack=stack).config


@pytest.mark.slow
def test_check_from_preview_gives_the_plans_violations_verdicts_and_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = planned("global")
    plan = _as_plan_json(report)
    document = preview_document(report.recording, _config("global"), show_secrets=True, stack_outputs=True)
    assert not any("id" in s["newState"] for s in document["steps"])  # a first preview: no ids at all
    code, checked, _ = _check(capsys, tmp_path, "--from-preview", str(_write(tmp_path, "preview.json", document)))
    assert code == 0
    assert checked["stack"] == "global"
    assert len(_violations(plan)) > 100 and _violations(checked) == _violations(plan)
    assert _verdicts(checked) == _verdicts(plan)
    assert all(ok is True for _, ok, _ in _verdicts(checked).values())
    assert checked["cost"] == plan["cost"]
    assert [r["name"] for r in checked["resources"]] == [r["name"] for r in plan["resources"]]


@pytest.mark.slow
def test_a_first_preview_cannot_tell_paths_through_tunnels_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Secrets shown as [secret] (WireGuard configs) and no stack outputs (joinBundles): paths through a tunnel
    are undecidable, every other verdict is the plan's, and nothing is a mismatch."""
    report = planned("global")
    plan = _as_plan_json(report)
    document = preview_document(report.recording, _config("global"))
    code, checked, _ = _check(capsys, tmp_path, "--from-preview", str(_write(tmp_path, "preview.json", document)))
    assert code == 0
    assert _violations(checked) == _violations(plan)
    assert checked["cost"] == plan["cost"]
    planned_verdicts, checked_verdicts = _verdicts(plan), _verdicts(checked)
    assert set(checked_verdicts) == set(planned_verdicts)
    tunnels = {key for key, (_, _, reason) in planned_verdicts.items() if "WireGuard" in reason}
    assert tunnels == {("us-east-1", "qwen-gcp"), ("gcp-usc1", "k3s-api"), ("lab-onprem", "k3s-api")}
    for key, verdict in checked_verdicts.items():
        if key in tunnels:
            ok, reason = verdict[1], verdict[2]
            assert ok is None and "cannot tell" in reason, (key, verdict)
            assert "(a secret)" in reason or "joinBundles stack output" in reason, (key, verdict)
        else:
            assert verdict == planned_verdicts[key]


@pytest.mark.slow
def test_a_preview_without_a_route_is_a_reachability_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = planned("global")
    document = preview_document(report.recording, _config("global"), show_secrets=True, stack_outputs=True)
    document["steps"] = [s for s in document["steps"] if not s["urn"].endswith("::mesh-peering-us-east-2-route-main")]
    code, _, err = _check(capsys, tmp_path, "--from-preview", str(_write(tmp_path, "broken.json", document)))
    assert code == 1
    assert err.startswith("error: reachability mismatch: stack global: 2 path(s)")
    assert "us-east-1 -> qwen tcp/8000: the program declares it reachable, but its resources say it does not" in err
    assert "route table mesh-us-east-1-rt has no route for 10.65." in err


@pytest.mark.slow
def test_check_from_state_gives_the_plans_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = planned("global")
    plan = _as_plan_json(report)
    exported = _write(tmp_path, "state.json", state_document(report.recording))
    code, checked, _ = _check(capsys, tmp_path, "--from-state", str(exported))
    assert code == 0
    assert _violations(checked) == _violations(plan)
    assert _verdicts(checked) == _verdicts(plan)
    assert checked["cost"] == plan["cost"]

    # Without --show-secrets, `pulumi stack export` keeps secrets encrypted: tunnels are undecidable.
    encrypted = _write(tmp_path, "encrypted.json", state_document(report.recording, show_secrets=False))
    code, checked, _ = _check(capsys, tmp_path, "--from-state", str(encrypted))
    assert code == 0
    undecidable = {key for key, (_, ok, _) in _verdicts(checked).items() if ok is None}
    assert undecidable == {("us-east-1", "qwen-gcp"), ("gcp-usc1", "k3s-api"), ("lab-onprem", "k3s-api")}


def test_check_prints_the_plans_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = plan_stack(ROOT, load_stack_config(ROOT, stack="dev"))
    path = _write(tmp_path, "dev.json", preview_document(report.recording, _config("dev")))
    assert main(["check", "--from-preview", str(path)]) == 0
    out = capsys.readouterr().out
    for needle in ("Resources by component", "CIDR plan", "Reachability", "Estimated cost", "qwen-dev"):
        assert needle in out


@pytest.mark.parametrize(
    ("option", "content", "problem"),
    [
        ("--from-preview", "{not json", "Expecting property name"),
        ("--from-preview", json.dumps({"deployment": {"resources": []}}), 'no "steps" list'),
        ("--from-preview", json.dumps({"steps": [{"op": "create"}]}), "steps[0] is not a preview step"),
        ("--from-state", json.dumps({"steps": []}), 'no "deployment.resources" list'),
        ("--from-state", json.dumps({"version": 3, "deployment": {"resources": []}}), "holds no resources"),
        (
            "--from-preview",
            json.dumps({"steps": [], "changeSummary": {"same": 12}}),
            "leaves out its 12 unchanged resource(s)",
        ),
    ],
)
def test_a_file_that_is_not_the_document_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, content: str, problem: str
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(content)
    assert main(["check", option, str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {option} {path}: ") and problem in err
    assert main(["check", option, str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {option} {tmp_path / 'missing.json'}: ")


def test_recording_round_trips_through_both_documents() -> None:
    """The adapters read back what the documents hold: URNs, ids (state only), property dependencies."""
    from lmrun.verify.sources import from_preview, from_state

    recording: Recording = planned("dev").recording
    snapshot, config = from_preview(preview_document(recording, _config("dev")))
    assert config["lmrun:mainRegion"] == "us-east-1"
    assert [r.urn for r in snapshot] == [r.urn for r in recording.resources]
    assert all(r.id is None for r in snapshot)
    route = next(r for r in snapshot if r.name == "mesh-us-east-1-internet")
    assert route.inputs["routeTableId"] == "[unknown]"
    assert route.property_dependencies["routeTableId"][0].endswith("::mesh-us-east-1-rt")
    assert snapshot.ref(route, "routeTableId", ("aws:ec2/routeTable:RouteTable",)).name == "mesh-us-east-1-rt"
    state = from_state(state_document(recording))
    assert [r.id for r in state] == [r.id for r in recording.resources]
    assert state.outputs["mainRegion"] == "us-east-1"


def test_a_file_without_outputs_or_config_says_what_it_cannot_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state export of a stack whose root resource lost its outputs: policy and fixed costs still run; the
    paths come from --stack when given."""
    document = state_document(planned("dev").recording)
    document["deployment"]["resources"][0]["outputs"] = {}
    path = _write(tmp_path, "state.json", document)
    code, checked, err = _check(capsys, tmp_path, "--from-state", str(path))
    assert code == 0 and checked["reachability"] == [] and checked["cost"]["gpu_hourly_usd"] == 0
    assert err.startswith("note: the file holds neither the stack's outputs nor its config")
    code, checked, err = _check(
        capsys, tmp_path, "--from-state", str(path), "--project-dir", str(ROOT), "--stack", "dev"
    )
    assert code == 0 and err == ""
    assert [(p["from"], p["to"], p["resources_ok"]) for p in checked["reachability"]] == [
        ("us-east-1", "qwen-dev", True)
    ]
    assert checked["cost"]["gpu_hourly_usd"] > 0
