"""The rendered join script, run for real in a network namespace: a SkyPilot VM joins with the agent credential
only and becomes a replica of a declared service by its label; a label claiming an undeclared service publishes
nothing.

Inside a namespace with nothing but loopback: a moto server (SSM: the join token and the Phoenix ingest key),
the AWS CLI of the venv, the rendered bundle (its paths pointed into a scratch folder), and a fake ``curl`` that
answers the pinned K3s installer's URL with an installer recording its arguments (K3s itself cannot be
downloaded or run here). What the node registers is then matched against the stack's readiness DaemonSets, the
objects validated by ``kubernetes-validate --strict``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.domain.versions import K3S_VERSION, KUBERNETES_VERSION
from lmrun.render.kubernetes import matching_services
from lmrun.render.skypilot import BundlePaths, SkyPilotMesh, bundle
from lmrun.verify import tokens
from tests.conftest import plan
from tests.helpers_k3s_installer import fake_k3s_curl
from tests.helpers_netns import NetnsLab, missing_prerequisites, require
from tests.helpers_phoenix import VENV_BIN, aws_env, free_port
from tests.validators import assert_kubernetes_valid

pytestmark = pytest.mark.slow

TOKEN = "K10agent::node:secret-join-token"
INGEST_KEY = "phoenix-ingest-key-0123456789"
CLUSTER_INFO = json.dumps({"cluster_name": "Qwen_Extra", "cloud": "AWS", "region": "us-east-2", "zone": None})


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsLab, str, str]]:
    require(missing_prerequisites(("ip",)), "SkyPilot join in a network namespace")
    lab = NetnsLab("sky")
    try:
        ns = lab.ns("vm")
        port = free_port()
        subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while lab.exec(ns, [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('{endpoint}')"],
                       check=False).returncode != 0:  # fmt: skip
            assert time.monotonic() < deadline, "moto did not start in the namespace"
            time.sleep(0.3)
        yield lab, ns, endpoint
    finally:
        lab.close()


def _mesh() -> SkyPilotMesh:
    return SkyPilotMesh.from_json(plan("global").outputs["skypilot"])


def _join(vm: tuple[NetnsLab, str, str], tmp: Path, *services: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    lab, ns, endpoint = vm
    mesh = _mesh()
    env = aws_env(endpoint, tmp)
    for name, value in ((mesh.token_parameter, TOKEN), (mesh.ingest_key_parameter, INGEST_KEY)):
        put = ["aws", "ssm", "put-parameter", "--overwrite", "--type", "SecureString", "--name", str(name)]
        lab.exec(ns, ["env", *(f"{k}={v}" for k, v in env.items()), *put, "--value", value])
    paths = BundlePaths(str(tmp / "lib"), str(tmp / "rancher" / "token"), str(tmp / "etc" / "phoenix-client.env"))
    folder = tmp / "lmrun"
    folder.mkdir()
    for name, text in bundle(mesh, paths).items():
        (folder / name).write_text(text)
    fake = tmp / "fakebin"
    fake.mkdir()
    (fake / "curl").write_text(fake_k3s_curl(str(tmp / "k3s-install.args"), real_curl_otherwise=False))
    (fake / "curl").chmod(0o755)
    env.update(PATH=f"{fake}{os.pathsep}{VENV_BIN}{os.pathsep}/usr/bin:/bin", SKYPILOT_CLUSTER_INFO=CLUSTER_INFO)
    argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", str(folder / "join.sh"), *services]
    result = lab.exec(ns, argv, check=False, timeout=120)
    return result, tmp


def _installer_labels(tmp: Path) -> dict[str, str]:
    args = (tmp / "k3s-install.args").read_text().splitlines()
    return dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--node-label")


def test_joins_with_the_agent_credential_only_and_serves_the_declared_service(
    vm: tuple[NetnsLab, str, str], tmp_path: Path
) -> None:
    result, tmp = _join(vm, tmp_path, "qwen")
    assert result.returncode == 0, result.stdout + result.stderr
    args = (tmp / "k3s-install.args").read_text().splitlines()
    assert args[:2] == [f"INSTALL_K3S_VERSION={K3S_VERSION}", "agent"]
    assert args[2:7] == [
        "--server",
        "https://10.64.16.10:6443",
        "--token-file",
        str(tmp / "rancher/token"),
        "--with-node-id",
    ]
    labels = _installer_labels(tmp)
    assert labels == {
        "lmrun.io/node": "sky-qwen-extra",
        "lmrun.io/region": "us-east-2",
        "lmrun.io/launcher": "skypilot",
        "serves.lmrun.io/qwen": "true",
    }
    token = tmp / "rancher" / "token"
    assert token.read_text().strip() == TOKEN and token.stat().st_mode & 0o777 == 0o600
    env_file = (tmp / "etc" / "phoenix-client.env").read_text()
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://localhost:30201" in env_file
    assert f"authorization=Bearer%20{INGEST_KEY}" in env_file
    # No Kubernetes API credential anywhere: only the token file, the env file and the installed scripts.
    written = {p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file() and "kube" in p.name}
    assert not written

    # The cluster side: the stack's DaemonSets (strictly valid) run a readiness proxy for qwen on this node only.
    manifests = [dict(r.inputs) for r in plan("global").recording.by_type(tokens.K8S_DAEMONSET)]
    services = [dict(r.inputs) for r in plan("global").recording.by_type(tokens.K8S_SERVICE)]
    documents = tmp / "objects.yaml"
    documents.write_text(
        yaml.safe_dump_all([{k: v for k, v in m.items() if k != "__meta"} for m in manifests + services])
    )
    assert_kubernetes_valid(documents, KUBERNETES_VERSION)
    assert matching_services(manifests, labels) == ["lmrun-svc-qwen"]
    [service] = [s for s in services if s["metadata"]["name"] == "lmrun-svc-qwen"]
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    assert service["spec"]["selector"] == _pod_labels(manifests, "lmrun-svc-qwen")


def _pod_labels(manifests: list[dict[str, Any]], name: str) -> dict[str, str]:
    [daemonset] = [m for m in manifests if m["metadata"]["name"] == name]
    return {k: v for k, v in daemonset["spec"]["template"]["metadata"]["labels"].items() if k == "app"}


def test_an_undeclared_service_is_refused_and_would_publish_nothing(
    vm: tuple[NetnsLab, str, str], tmp_path: Path
) -> None:
    result, tmp = _join(vm, tmp_path, "qwen", "not-declared")
    assert result.returncode == 2 and "'not-declared' is not a service" in result.stderr
    assert not (tmp / "k3s-install.args").exists() and not (tmp / "rancher" / "token").exists()
    manifests = [dict(r.inputs) for r in plan("global").recording.by_type(tokens.K8S_DAEMONSET)]
    claimed = {"lmrun.io/node": "sky-rogue", "lmrun.io/region": "us-east-2", "serves.lmrun.io/not-declared": "true"}
    assert matching_services(manifests, claimed) == []


def test_a_client_joins_serving_nothing(vm: tuple[NetnsLab, str, str], tmp_path: Path) -> None:
    result, tmp = _join(vm, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    labels = _installer_labels(tmp)
    assert not [key for key in labels if key.startswith("serves.lmrun.io/")]
    manifests = [dict(r.inputs) for r in plan("global").recording.by_type(tokens.K8S_DAEMONSET)]
    assert matching_services(manifests, labels) == []
