"""The CI deploy path reaches the K3s API: the workflow's port forward, the program's provider override and
the two-phase `pulumi up` fit the resources the program declares (the URN it excludes, the tags it finds the
server by, the port, the environment variable)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.cli import main
from lmrun.mock_engine import RecordedResource, Recording, RecordingMocks, Secret
from lmrun.mock_engine.aws_mocks import MESH_COMPUTED, MESH_IDS, MESH_LOOKUPS
from lmrun.render.k3s import API_PORT
from lmrun.render.kubeconfig import with_api_server
from lmrun.spec import ConfigError
from lmrun.spec.operator import K3S_API_SERVER_ENV, k3s_api_server
from lmrun.verify.offline import plan_stack
from tests.conftest import ROOT, plan, stack_config

DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
SERVER_IP = "10.64.16.10"  # dev's K3s server: the 10th address of us-east-1's first subnet
KUBECONFIG = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: bW9jayBDQQ==
    server: https://{SERVER_IP}:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
users:
- name: default
  user:
    token: mock-token
"""


def _job() -> dict[str, Any]:
    workflow = yaml.safe_load(DEPLOY.read_text())
    job: dict[str, Any] = workflow["jobs"]["up"]
    return job


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _job()["steps"]
    return steps


def _index(predicate: Any) -> int:
    return next(i for i, step in enumerate(_steps()) if predicate(step))


def _pulumi_ups() -> list[tuple[int, dict[str, Any]]]:
    return [(i, s) for i, s in enumerate(_steps()) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def _qualified_urn(recording: Recording, resource: RecordedResource) -> str:
    """The URN the Pulumi engine gives ``resource``: the types of all its ancestors below the stack, joined
    with '$' (the mock engine's URNs keep only the parent's type)."""
    by_urn = {r.urn: r for r in recording.resources}
    types = [resource.type]
    parent = by_urn.get(resource.parent)
    while parent is not None:
        types.insert(0, parent.type)
        parent = by_urn.get(parent.parent)
    project, stack = "lmrun", resource.urn.split("::")[0].removeprefix("urn:pulumi:")
    return f"urn:pulumi:{stack}::{project}::{'$'.join(types)}::{resource.name}"


def _descends_from(recording: Recording, resource: RecordedResource, ancestor: RecordedResource) -> bool:
    by_urn = {r.urn: r for r in recording.resources}
    parent = by_urn.get(resource.parent)
    while parent is not None:
        if parent.urn == ancestor.urn:
            return True
        parent = by_urn.get(parent.parent)
    return False


def test_first_up_excludes_exactly_the_kubernetes_objects_and_their_provider() -> None:
    """Defect: on a hosted runner the API (a private IP, no operatorCidrs) is unreachable. Phase one leaves out
    the NodePorts component and everything under it, which is every Kubernetes resource and nothing else."""
    (first_index, first), (second_index, second) = _pulumi_ups()
    assert first["with"]["command"] == second["with"]["command"] == "up"
    assert first["with"]["policyPacks"] == second["with"]["policyPacks"] == "policy"
    assert first["with"]["exclude-dependents"] is True and "exclude" not in second["with"]
    recording = plan("dev").recording
    [ports] = recording.by_type("lmrun:index:NodePorts")
    assert first["with"]["exclude"].replace("${{ env.STACK }}", "dev") == _qualified_urn(recording, ports)
    kubernetes = [r for r in recording.resources if r.type.startswith(("kubernetes:", "pulumi:providers:kubernetes"))]
    assert kubernetes and all(_descends_from(recording, r, ports) for r in kubernetes)
    excluded = [r for r in recording.resources if _descends_from(recording, r, ports)]
    assert all(r.type.startswith(("kubernetes:", "pulumi:providers:kubernetes")) for r in excluded)
    # The gate that waits for the API is not excluded: phase one ends once the server serves.
    gate = recording.named("mesh-cluster-k3s-kubeconfig-gate")
    assert not _descends_from(recording, gate, ports)
    assert first_index < second_index


def test_the_port_forward_opens_between_the_two_ups_to_the_server_the_program_tags() -> None:
    steps = _steps()
    (first_index, _), (second_index, _) = _pulumi_ups()
    plugin = _index(lambda s: "session-manager-plugin" in str(s.get("run", "")))
    tunnel = _index(lambda s: "AWS-StartPortForwardingSession" in str(s.get("run", "")))
    assert plugin < first_index < tunnel < second_index
    script = steps[tunnel]["run"]
    assert f'{{"portNumber":["{API_PORT}"],"localPortNumber":["6443"]}}' in script
    server = plan("dev").recording.named("mesh-cluster-k3s-instance").inputs["tags"]
    filters = dict(re.findall(r'"Name=tag:([\w:]+),Values=([^"]+)"', script))
    assert filters == {"Name": server["Name"], "lmrun:mesh": "${STACK}"} and server["lmrun:mesh"] == "dev"
    assert '"$LMRUN_K3S_API_SERVER/readyz"' in script


def test_the_job_points_the_program_at_the_port_forward() -> None:
    env = _job()["env"]
    assert env[K3S_API_SERVER_ENV] == "https://localhost:6443"
    assert k3s_api_server(env) == "https://localhost:6443"


def _gate_kubeconfig_mocks() -> RecordingMocks:
    """The mesh's mocks, with the kubeconfig gate printing a kubeconfig like the server publishes."""

    def command(args: Any) -> dict[str, Any]:
        stdout = KUBECONFIG if args.name.endswith("kubeconfig-gate") else f"mock stdout of {args.name}"
        return {"stdout": stdout, "stderr": ""}

    return RecordingMocks(
        calls=MESH_LOOKUPS, computed={**MESH_COMPUTED, "command:local:Command": command}, ids=MESH_IDS
    )


def test_with_the_override_the_provider_reaches_localhost_and_checks_tls_against_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(K3S_API_SERVER_ENV, "https://localhost:6443")
    report = plan_stack(ROOT, stack_config("dev"), preview=False, mocks=_gate_kubeconfig_mocks())
    provider = report.recording.named("mesh-cluster-ports-k8s").inputs
    assert isinstance(provider["kubeconfig"], Secret)
    cluster = yaml.safe_load(provider["kubeconfig"].value)["clusters"][0]["cluster"]
    assert cluster["server"] == "https://localhost:6443" and cluster["tls-server-name"] == SERVER_IP
    # A new address of the same cluster updates the provider, never replaces it (and every object behind it).
    # (the server's state volume: mock ids of volumes look like real ones, and the server's user data names it)
    volume = provider["clusterIdentifier"]
    assert re.fullmatch(r"vol-[0-9a-f]{17}", volume)
    assert volume in report.recording.named("mesh-cluster-k3s-instance").inputs["userData"]
    # The stack's kubeconfig output stays what the server published.
    assert f"server: https://{SERVER_IP}:6443" in report.recording.outputs["kubeconfig"].value
    monkeypatch.delenv(K3S_API_SERVER_ENV)
    unset = plan_stack(ROOT, stack_config("dev"), preview=False, mocks=_gate_kubeconfig_mocks())
    assert unset.recording.named("mesh-cluster-ports-k8s").inputs["kubeconfig"].value == KUBECONFIG


def test_with_api_server_keeps_everything_but_the_address() -> None:
    rewritten = yaml.safe_load(with_api_server(KUBECONFIG, "https://localhost:16443"))
    original = yaml.safe_load(KUBECONFIG)
    assert rewritten["clusters"][0]["cluster"] == {
        "certificate-authority-data": "bW9jayBDQQ==",
        "server": "https://localhost:16443",
        "tls-server-name": SERVER_IP,
    }
    assert {k: v for k, v in rewritten.items() if k != "clusters"} == {
        k: v for k, v in original.items() if k != "clusters"
    }
    assert with_api_server("mock stdout of a gate", "https://localhost:6443") == "mock stdout of a gate"


@pytest.mark.parametrize("value", ["http://localhost:6443", "https://localhost", "localhost:6443", "https://a:99999"])
def test_a_bad_override_is_a_config_error_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=K3S_API_SERVER_ENV):
        k3s_api_server({K3S_API_SERVER_ENV: value})
    monkeypatch.setenv(K3S_API_SERVER_ENV, value)
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "dev"]) == 2
    assert capsys.readouterr().err.startswith(f"{K3S_API_SERVER_ENV}: {value!r} is not an https://HOST:PORT")


def test_the_workflow_scripts_quote_what_they_pass(tmp_path: Path) -> None:
    """The tunnel step's session parameters are one shell word (JSON inside single quotes)."""
    script = _steps()[_index(lambda s: "AWS-StartPortForwardingSession" in str(s.get("run", "")))]["run"]
    line = next(line for line in script.splitlines() if "--parameters" in line)
    assert shlex.split(line.strip().rstrip("\\"))[1] == '{"portNumber":["6443"],"localPortNumber":["6443"]}'
