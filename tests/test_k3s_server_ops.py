"""What the K3s server runs for the cluster's upkeep, run for real with bash and a stand-in ``k3s``:

- the node reaper (``node-reaper.sh`` + ``node_reaper.py``, from ``lmrun-node-reaper.timer``) against a
  recorded ``kubectl get nodes -o json`` document (tests/fixtures/k3s-nodes.json: a reclaimed spot VM and its
  replacement, a VM gone for hours, a node briefly NotReady, a replacement still joining, a node that is not
  the mesh's, the server itself), its timestamps moved so that the recording happened just now;
- the publisher of Pulumi's kubeconfig (``publish-kubeconfig.sh``) with the AWS CLI against moto's SSM: it
  publishes the lmrun-deployer ServiceAccount's token (never the admin credential) to one parameter and a
  kubeconfig without any token, whose exec plugin (run here as client-go runs it) reads that parameter, to
  another, each only when it changed; the operator-side gate then prints the kubeconfig.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.render import k3s, readiness
from lmrun.render.cloudinit import WriteFile
from tests.conftest import ROOT
from tests.helpers_phoenix import REGION, aws_env, install_scripts, moto_server, ok, run_script, stand_in_k3s
from tests.validators import require_tool

RECORDED_AT = datetime(2025, 11, 30, 12, 0, 0, tzinfo=UTC)
"""When tests/fixtures/k3s-nodes.json was taken (its timestamps are relative to this)."""
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PARAMETER = "/lmrun/test/k3s/kubeconfig"
CREDENTIAL = "/lmrun/test/k3s/deployer-credential"
SERVER = k3s.K3sServerConfig(
    node_ip="10.0.0.10",
    ssm_region=REGION,
    server_token_parameter="/lmrun/test/k3s/server-token",
    agent_token_parameter="/lmrun/test/k3s/agent-token",
    kubeconfig_parameter=PARAMETER,
    credential_parameter=CREDENTIAL,
    credential_exec=tuple(SsmParameterStore(REGION).client_read_argv(CREDENTIAL)),
)
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImxtcnVuIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bG1ydW4ifQ.c2ln"
CA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2VydmVy\n"
).decode()


def _shifted(value: Any, delta_seconds: float) -> Any:
    """``value`` with every timestamp moved by ``delta_seconds``."""
    if isinstance(value, dict):
        return {k: _shifted(v, delta_seconds) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, delta_seconds) for v in value]
    if isinstance(value, str) and _STAMP.match(value):
        moved = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() + delta_seconds
        return datetime.fromtimestamp(moved, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _recorded_nodes(*, without: Collection[str] = ()) -> dict[str, Any]:
    document = json.loads((ROOT / "tests" / "fixtures" / "k3s-nodes.json").read_text())
    document["items"] = [item for item in document["items"] if item["metadata"]["name"] not in without]
    return dict(_shifted(document, datetime.now(UTC).timestamp() - RECORDED_AT.timestamp()))


@pytest.fixture
def server_bin(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """tmp/fake with a stand-in ``k3s`` (tests/fake_k3s.py), and tmp/state it serves from."""
    _, state = stand_in_k3s(tmp_path)
    yield state, {"FAKE_K3S_STATE": str(state), "PYTHON": sys.executable}


def _run_reaper(tmp_path: Path, state: Path, extra: dict[str, str], files: list[WriteFile]) -> tuple[Any, list[str]]:
    scripts = install_scripts(tmp_path, files)
    env = aws_env("http://127.0.0.1:9", tmp_path, **extra)
    env["PATH"] = f"{tmp_path / 'fake'}:{env['PATH']}"
    (state / "deleted").unlink(missing_ok=True)
    result = run_script(scripts["node-reaper.sh"], [], env)
    deleted = (state / "deleted").read_text().split() if (state / "deleted").exists() else []
    return result, sorted(deleted)


def test_the_reaper_removes_replaced_and_long_gone_nodes_and_nothing_else(
    tmp_path: Path, server_bin: tuple[Path, dict[str, str]]
) -> None:
    state, extra = server_bin
    (state / "nodes.json").write_text(json.dumps(_recorded_nodes()))
    files = k3s.node_reaper_files()
    result, deleted = _run_reaper(tmp_path, state, extra, files)
    ok(result)
    # The reclaimed spot VM (its replacement is Ready) and the VM gone for 8.5 h (over the 6 h bound); kept:
    # the server, the Ready nodes, the node NotReady for 40 min, the replacement still joining, the foreign node.
    assert deleted == ["ip-10-65-17-201-cb0fc297", "ip-10-67-20-77-a5c85c6b"]
    assert (
        "lmrun: deleting node ip-10-65-17-201-cb0fc297: lmrun.io/node=qwen-use2 rejoined as ip-10-65-33-48-6eb7a27e"
        in result.stderr
    )
    assert re.search(r"deleting node ip-10-67-20-77-a5c85c6b: NotReady for 30\d\d\ds, over 21600s", result.stderr)
    # Once they are gone, the next run deletes nothing.
    (state / "nodes.json").write_text(
        json.dumps(_recorded_nodes(without={"ip-10-65-17-201-cb0fc297", "ip-10-67-20-77-a5c85c6b"}))
    )
    result, deleted = _run_reaper(tmp_path, state, extra, files)
    assert ok(result) and deleted == []
    # The bound is the rendered one: at 30 minutes the node NotReady for 40 minutes goes too.
    result, deleted = _run_reaper(tmp_path, state, extra, k3s.node_reaper_files(not_ready_limit_seconds=1800))
    assert ok(result) and deleted == ["l4-gcp-x7k2-3526ca07"]


def test_the_reaper_deletes_nothing_when_the_api_does_not_answer(
    tmp_path: Path, server_bin: tuple[Path, dict[str, str]]
) -> None:
    state, extra = server_bin
    (state / "api-down").write_text("1")
    result, deleted = _run_reaper(tmp_path, state, extra, k3s.node_reaper_files())
    assert result.returncode != 0 and deleted == []
    with pytest.raises(ValueError, match=r"^not_ready_limit_seconds"):
        k3s.node_reaper_files(not_ready_limit_seconds=0)


def test_the_server_runs_the_reaper_from_a_timer() -> None:
    files = {f.path: f.content for f in k3s.server_files(SERVER)}
    timer = files[f"/etc/systemd/system/{k3s.NODE_REAPER_TIMER}"]
    assert f"OnUnitActiveSec={k3s.NODE_REAPER_EVERY}" in timer and f"Unit={k3s.NODE_REAPER_UNIT}" in timer
    assert f"ExecStart={k3s.SCRIPT_DIR}/node-reaper.sh" in files[f"/etc/systemd/system/{k3s.NODE_REAPER_UNIT}"]
    bootstrap = files[f"{k3s.SCRIPT_DIR}/k3s-server-bootstrap.sh"]
    assert f"UNITS=({k3s.PUBLISH_KUBECONFIG_UNIT} {k3s.NODE_REAPER_TIMER})" in bootstrap
    assert "MAX_NOT_READY=21600" in files[f"{k3s.SCRIPT_DIR}/node-reaper.sh"]


def test_server_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    root, unit_dir = tmp_path / "root", tmp_path / "units"
    (root / k3s.SCRIPT_DIR.strip("/")).mkdir(parents=True)
    unit_dir.mkdir()
    (unit_dir / "k3s.service").write_text(f"[Service]\nExecStart={root}/k3s server\n")
    (root / "k3s").write_text("#!/bin/sh\n")
    (root / "k3s").chmod(0o755)
    names = []
    for f in k3s.server_files(SERVER):
        if f.path.startswith("/etc/systemd/system/"):
            text = f.content.replace(k3s.SCRIPT_DIR + "/", f"{root}{k3s.SCRIPT_DIR}/")
            for exe in re.findall(rf"{re.escape(str(root))}[^\s]+", text):
                Path(exe).write_text("#!/bin/sh\n")
                Path(exe).chmod(0o755)
            (unit_dir / Path(f.path).name).write_text(text)
            names.append(Path(f.path).name)
    assert sorted(names) == sorted([k3s.PUBLISH_KUBECONFIG_UNIT, k3s.NODE_REAPER_UNIT, k3s.NODE_REAPER_TIMER])
    result = subprocess.run(
        [tool, "verify", "--man=no", *(str(unit_dir / n) for n in sorted(names))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if str(unit_dir) in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


# --- Pulumi's credential -------------------------------------------------------------------------------------


def _parameter(client: Any, name: str) -> tuple[str, int]:
    found = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return str(found["Value"]), int(found["Version"])


def _exec_plugin(kubeconfig: dict[str, Any], env: dict[str, str]) -> str:
    """The token the kubeconfig's exec plugin yields, run the way client-go runs it (command, args, the
    caller's environment; stdout is an ExecCredential)."""
    plugin = kubeconfig["users"][0]["user"]["exec"]
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1" and plugin["interactiveMode"] == "Never"
    result = subprocess.run(
        [plugin["command"], *plugin["args"]], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    credential = json.loads(result.stdout)
    assert (credential["apiVersion"], credential["kind"]) == ("client.authentication.k8s.io/v1", "ExecCredential")
    return str(credential["status"]["token"])


def test_the_server_publishes_a_kubeconfig_without_a_token_and_the_token_once_per_credential(
    tmp_path: Path, server_bin: tuple[Path, dict[str, str]]
) -> None:
    state, extra = server_bin
    (state / "token.b64").write_text(base64.b64encode(TOKEN.encode()).decode())
    (state / "ca.b64").write_text(CA)
    (state / "apply-failures").write_text("1")  # the API is not up yet at the first try
    (state / "token-delay").write_text("1")  # the token controller has not filled the Secret yet
    files = k3s.server_files(SERVER)
    scripts = install_scripts(tmp_path, files)
    manifest = next(f for f in files if f.path == k3s.DEPLOYER_MANIFEST)
    (tmp_path / "bin" / Path(manifest.path).name).write_text(manifest.content)
    with moto_server() as endpoint:
        client = boto3.client(
            "ssm", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x"
        )
        for name in (PARAMETER, CREDENTIAL):  # as the stack creates them: a placeholder the server overwrites
            client.put_parameter(Name=name, Value=readiness.PARAMETER_PLACEHOLDER, Type="SecureString")
        env = aws_env(endpoint, tmp_path, **extra)
        env["PATH"] = f"{tmp_path / 'fake'}:{env['PATH']}"
        ok(run_script(scripts["publish-kubeconfig.sh"], [], env, timeout=120))
        value, version = _parameter(client, PARAMETER)
        kubeconfig = yaml.safe_load(value)
        assert version == 2 and _parameter(client, CREDENTIAL)[1] == 2
        cluster = kubeconfig["clusters"][0]["cluster"]
        assert cluster == {"server": "https://10.0.0.10:6443", "certificate-authority-data": CA}
        assert kubeconfig["contexts"][0]["context"] == {
            "cluster": "lmrun",
            "user": "lmrun-deployer",
            "namespace": "lmrun",
        }
        # No credential in the kubeconfig (what Pulumi's state keeps): no token, no client certificate.
        assert TOKEN not in value and "client-certificate-data" not in value and "client-key-data" not in value
        assert _exec_plugin(kubeconfig, env) == TOKEN
        calls = (state / "calls").read_text()
        assert "kubectl apply -f " in calls and k3s.KUBECONFIG_PATH not in calls
        # Applied until the token is there (twice: the token controller was late once).
        applied = ["Namespace NetworkPolicy ServiceAccount Secret Role RoleBinding"] * 2
        assert (state / "applied").read_text().splitlines() == applied
        # A reboot with the same credential writes nothing.
        ok(run_script(scripts["publish-kubeconfig.sh"], [], env, timeout=60))
        assert _parameter(client, PARAMETER) == (value, 2) and _parameter(client, CREDENTIAL)[1] == 2
        # The Secret was deleted (revoked) and recreated: a new credential version, the same kubeconfig, and
        # whoever holds the kubeconfig (Pulumi's state, an operator) gets the new token on its next use.
        (state / "token.b64").write_text(base64.b64encode(b"rotated-" + TOKEN.encode()).decode())
        ok(run_script(scripts["publish-kubeconfig.sh"], [], env, timeout=60))
        assert _parameter(client, CREDENTIAL)[1] == 3 and _parameter(client, PARAMETER) == (value, 2)
        assert _exec_plugin(kubeconfig, env) == "rotated-" + TOKEN
        # The operator's gate (pulumi-command) prints the kubeconfig, pointed at the address the operator reaches.
        gate = readiness.kubeconfig_gate_script(
            region=REGION, parameter=PARAMETER, server_url="https://203.0.113.7:6443", timeout_seconds=30, interval=1
        )
        result = subprocess.run(["/bin/sh", "-c", gate], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == value.replace("https://10.0.0.10:6443", "https://203.0.113.7:6443")
