"""An elastic service's node port, up to SkyServe's load balancer: the Service without selector Pulumi creates, and
the K3s server's timer that keeps its EndpointSlice pointed at the bound ``IP:PORT``.

The server's script (``serve-endpoints.sh`` + ``serve_endpoints.py``) runs for real with bash, the AWS CLI against
moto's SSM and a stand-in ``k3s`` (tests/fake_k3s.py), as the node reaper's tests do: a valid value is applied, a
change updates the slice, no parameter gives a slice without endpoints, and a bad address, a bad port, garbage or
an unreadable parameter leave the slice as it was.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lmrun.domain.ports import SKYSERVE_LB_PORTS
from lmrun.domain.versions import KUBERNETES_VERSION
from lmrun.render import kubernetes, serve_endpoints
from lmrun.render.cloudinit import SCRIPT_DIR
from lmrun.render.kubernetes import ElasticNodePort
from lmrun.render.serve_endpoints import ServeEndpointsConfig, check_endpoint, serve_endpoint_files
from tests.helpers_phoenix import REGION, aws_env, install_scripts, moto_server, run_script, stand_in_k3s
from tests.validators import assert_kubernetes_valid, assert_shellcheck_clean, require_tool

VPC = "10.64.0.0/16"
CHAT = ElasticNodePort("chat", 30400)
EMBED = ElasticNodePort("embed", 30401)
CONFIG = ServeEndpointsConfig(REGION, VPC, "/lmrun/test")


def test_the_service_has_no_selector_and_the_slice_names_its_own_manager(tmp_path: Path) -> None:
    service = kubernetes.elastic_service_manifest(CHAT)
    assert "selector" not in service["spec"] and service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert port["nodePort"] == 30400 and port["name"] == "app"
    slice_ = kubernetes.endpoint_slice_manifest(CHAT.service_name)
    labels = slice_["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "lmrun-svc-chat" == service["metadata"]["name"]
    # Not the EndpointSlice controller's value (it would manage, and empty, the slice).
    assert labels["endpointslice.kubernetes.io/managed-by"] == "lmrun.io/serve-endpoints"
    assert slice_["metadata"]["namespace"] == kubernetes.NAMESPACE and slice_["endpoints"] == []
    template = kubernetes.endpoint_slice_manifest("")
    helper = serve_endpoints._helper()
    bound = helper.endpoint_slice(template, CHAT.service_name, "10.64.1.20:30003", VPC, serve_endpoints.LB_PORTS)
    (filled,) = bound["items"]
    assert filled["metadata"] == slice_["metadata"]  # the template, named after the Service
    # kube-proxy pairs the slice's port with the Service's by name.
    assert filled["ports"] == [{"name": port["name"], "protocol": "TCP", "port": 30003}]
    assert filled["endpoints"] == [{"addresses": ["10.64.1.20"], "conditions": {"ready": True}}]
    path = tmp_path / "objects.yaml"
    path.write_text(kubernetes.to_yaml([service, slice_, filled]))
    assert assert_kubernetes_valid(path, KUBERNETES_VERSION).stdout.count("passed") == 3


def test_the_deployer_needs_no_more_than_services_for_an_elastic_node_port() -> None:
    assert kubernetes.DEPLOYER_RULES == (("", "services"), ("apps", "daemonsets"))
    assert kubernetes.elastic_service_manifest(CHAT)["kind"] == "Service"


def test_an_elastic_node_port_outside_the_range_or_on_a_load_balancer_port_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^node_port: 30005 is one of SkyServe's load-balancer ports 30001-30020"):
        ElasticNodePort("chat", 30005)
    with pytest.raises(ValueError, match=r"^node_port: 8080 is outside 30000-32767"):
        ElasticNodePort("chat", 8080)
    with pytest.raises(ValueError, match=r"^name: "):
        ElasticNodePort("Chat", 30400)
    with pytest.raises(ValueError, match=r"^services\.chat\.node_port: 30400 is already used by 'qwen'"):
        kubernetes.check_node_ports([kubernetes.MeshService("qwen", 8000, 30400), CHAT])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.65.0.9:30001", "10.65.0.9 is outside the main VPC 10.64.0.0/16"),
        ("10.64.0.9:30021", "port 30021 is not one of SkyServe's load-balancer ports 30001-30020"),
        ("10.64.0.9:8000", "port 8000 is not one of SkyServe's load-balancer ports"),
        ("10.64.0.256:30001", "'10.64.0.256' is not an IPv4 address"),
        ("lb.example.com:30001", "is not IP:PORT"),
        ("10.64.0.9", "is not IP:PORT"),
        ("http://10.64.0.9:30001", "is not IP:PORT"),
    ],
)
def test_the_check_names_what_is_wrong(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace(".", r"\.")):
        check_endpoint(value, VPC)


def test_the_check_accepts_every_load_balancer_port_in_the_vpc() -> None:
    assert [check_endpoint(f"10.64.3.7:{port}", VPC)[1] for port in SKYSERVE_LB_PORTS] == list(SKYSERVE_LB_PORTS)
    assert check_endpoint(" 10.64.3.7:30001\n", VPC) == ("10.64.3.7", 30001)


# --- the server's timer, run for real ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Path], Any, dict[str, str]]]:
    """The rendered script on disk, a stand-in ``k3s`` on PATH, moto's SSM: (k3s state, scripts, ssm client, env)."""
    fake_dir, state = stand_in_k3s(tmp_path)
    scripts = install_scripts(tmp_path, serve_endpoint_files(CONFIG))
    with moto_server() as endpoint:
        client = boto3.client(
            "ssm", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x"
        )
        env = aws_env(endpoint, tmp_path, FAKE_K3S_STATE=str(state))
        env["PATH"] = f"{fake_dir}:{env['PATH']}"
        # The elastic Services Pulumi created, as the server lists them in the cluster.
        (state / "elastic-services").write_text(f"{CHAT.service_name}\n{EMBED.service_name}\n")
        yield state, scripts, client, env


def _run(
    state: Path, scripts: dict[str, Path], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One run of the timer's script: its result, and the slices it applied by Service name (``calls``: how many
    ``kubectl apply`` it made)."""
    for name in ("applied.jsonl", "calls"):
        (state / name).unlink(missing_ok=True)
    result = run_script(scripts["serve-endpoints.sh"], [], env, timeout=120)
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    assert calls[0].startswith("kubectl get services --namespace lmrun --selector lmrun.io/elastic=true"), calls
    calls = calls[1:]
    assert all(call.startswith("kubectl apply -f ") for call in calls), calls
    documents = (state / "applied.jsonl").read_text().splitlines() if calls else []
    slices = [item for line in documents for item in json.loads(line)["items"]]
    assert all(s["kind"] == "EndpointSlice" for s in slices)
    return result, {"calls": len(calls), **{s["metadata"]["labels"]["kubernetes.io/service-name"]: s for s in slices}}


def _endpoints(slice_: dict[str, Any]) -> list[str]:
    return [f"{e['addresses'][0]}:{p['port']}" for e in slice_["endpoints"] for p in slice_["ports"]]


def test_a_valid_endpoint_is_applied_and_a_change_updates_the_slice(server: Any) -> None:
    state, scripts, client, env = server
    client.put_parameter(Name="/lmrun/test/serve/embed/endpoint", Value="10.64.1.20:30001", Type="String")
    client.put_parameter(Name="/lmrun/test/serve/chat/endpoint", Value="10.64.1.20:30002", Type="String")
    result, applied = _run(state, scripts, env)
    assert result.returncode == 0, result.stderr
    assert applied["calls"] == 2 and _endpoints(applied["lmrun-svc-embed"]) == ["10.64.1.20:30001"]
    assert _endpoints(applied["lmrun-svc-chat"]) == ["10.64.1.20:30002"]
    # A replaced controller, re-bound: the next run points the node port at the new load balancer.
    client.put_parameter(
        Name="/lmrun/test/serve/embed/endpoint", Value="10.64.2.7:30004", Type="String", Overwrite=True
    )
    result, applied = _run(state, scripts, env)
    assert result.returncode == 0 and _endpoints(applied["lmrun-svc-embed"]) == ["10.64.2.7:30004"]
    slice_ = applied["lmrun-svc-embed"]
    assert slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "lmrun.io/serve-endpoints"


def test_no_parameter_gives_a_slice_without_endpoints(server: Any) -> None:
    state, scripts, _, env = server
    result, applied = _run(state, scripts, env)
    assert result.returncode == 0, result.stderr
    assert applied["calls"] == 2
    for name in ("lmrun-svc-chat", "lmrun-svc-embed"):
        assert applied[name]["endpoints"] == [] and applied[name]["ports"] == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.99.1.20:30001", "10.99.1.20 is outside the main VPC 10.64.0.0/16"),
        ("10.64.1.20:8000", "port 8000 is not one of SkyServe's load-balancer ports 30001-30020"),
        ("10.64.1.999:30001", "'10.64.1.999' is not an IPv4 address"),
        ("somewhere", "'somewhere' is not IP:PORT"),
    ],
)
def test_a_bad_value_leaves_the_slice_as_it_is_and_says_why(server: Any, value: str, problem: str) -> None:
    state, scripts, client, env = server
    client.put_parameter(Name="/lmrun/test/serve/chat/endpoint", Value=value, Type="String")
    client.put_parameter(Name="/lmrun/test/serve/embed/endpoint", Value="10.64.1.20:30001", Type="String")
    result, applied = _run(state, scripts, env)
    # chat's slice is not touched; embed's (valid) still is; the run fails so `systemctl status` shows it.
    assert result.returncode != 0 and applied["calls"] == 1 and "lmrun-svc-chat" not in applied
    assert _endpoints(applied["lmrun-svc-embed"]) == ["10.64.1.20:30001"]
    assert f"lmrun: chat: /lmrun/test/serve/chat/endpoint: {problem}" in result.stderr
    assert "its EndpointSlice is left as it is" in result.stderr


def test_a_parameter_that_cannot_be_read_leaves_every_slice_as_it_is(server: Any) -> None:
    state, scripts, _, env = server
    env = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result, applied = _run(state, scripts, env)
    assert result.returncode != 0 and applied["calls"] == 0
    assert "lmrun: chat: cannot read /lmrun/test/serve/chat/endpoint" in result.stderr


def test_the_timer_and_its_script_are_clean(tmp_path: Path) -> None:
    files = {f.path: f for f in serve_endpoint_files(CONFIG)}
    script = files[f"{SCRIPT_DIR}/serve-endpoints.sh"]
    path = tmp_path / "serve-endpoints.sh"
    path.write_text(script.content)
    assert_shellcheck_clean([path])
    assert script.permissions == "0755" and f"{SCRIPT_DIR}/serve_endpoints.py" in files
    timer = files[f"/etc/systemd/system/{serve_endpoints.SERVE_ENDPOINTS_TIMER}"].content
    assert f"OnUnitActiveSec={serve_endpoints.SERVE_ENDPOINTS_EVERY}" in timer
    unit = files[f"/etc/systemd/system/{serve_endpoints.SERVE_ENDPOINTS_UNIT}"].content
    assert f"ExecStart={SCRIPT_DIR}/serve-endpoints.sh" in unit and "Requires=k3s.service" in unit
    # Nothing about which elastic services exist: adding one never changes the server's user data.
    assert "PARAMETER_PATTERN='/lmrun/test/serve/{service}/endpoint'" in script.content
    assert "chat" not in script.content and "SELECTOR=lmrun.io/elastic=true" in script.content
    assert "LB_PORTS=30001-30020" in script.content and "VPC_CIDR=10.64.0.0/16" in script.content
    tool = require_tool("systemd-analyze")
    root, units = tmp_path / "root", tmp_path / "units"
    (root / SCRIPT_DIR.strip("/")).mkdir(parents=True)
    units.mkdir()
    (root / SCRIPT_DIR.strip("/") / "serve-endpoints.sh").write_text("#!/bin/sh\n")
    (root / SCRIPT_DIR.strip("/") / "serve-endpoints.sh").chmod(0o755)
    (units / "k3s.service").write_text("[Service]\nExecStart=/bin/true\n")
    for name in (serve_endpoints.SERVE_ENDPOINTS_UNIT, serve_endpoints.SERVE_ENDPOINTS_TIMER):
        text = files[f"/etc/systemd/system/{name}"].content.replace(SCRIPT_DIR, f"{root}{SCRIPT_DIR}")
        (units / name).write_text(text)
    names = [str(units / n) for n in (serve_endpoints.SERVE_ENDPOINTS_UNIT, serve_endpoints.SERVE_ENDPOINTS_TIMER)]
    result = subprocess.run([tool, "verify", "--man=no", *names], capture_output=True, text=True, check=False)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if str(units) in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_the_config_refuses_a_vpc_that_is_not_one() -> None:
    with pytest.raises(ValueError, match=r"^vpc_cidr: '10\.64\.0\.0/33' is not an IPv4 network"):
        ServeEndpointsConfig(REGION, "10.64.0.0/33", "/lmrun/test")


def test_no_elastic_service_does_nothing_and_a_foreign_service_is_left_alone(server: Any) -> None:
    state, scripts, client, env = server
    (state / "elastic-services").write_text("")
    result, applied = _run(state, scripts, env)
    assert result.returncode == 0 and applied["calls"] == 0, result.stderr
    # A Service labelled elastic whose name is not lmrun-svc-<service>: never given a slice.
    client.put_parameter(Name="/lmrun/test/serve/chat/endpoint", Value="10.64.1.20:30002", Type="String")
    (state / "elastic-services").write_text("kube-dns\nlmrun-svc-chat\n")
    result, applied = _run(state, scripts, env)
    assert result.returncode != 0 and applied["calls"] == 1 and list(applied) == ["calls", "lmrun-svc-chat"]
    assert "lmrun: Service kube-dns is not an elastic service's (lmrun-svc-<service>); left alone" in result.stderr


# --- in the stack ---------------------------------------------------------------------------------------------


def test_the_server_runs_the_timer_and_reads_the_serve_parameters_only() -> None:
    """global (its elastic service qwen-elastic): the server's user data carries the timer and starts it, the same
    with or without elastic services; its role reads ``<prefix>/serve/*`` and nothing else it did not already read;
    it still hosts no Phoenix (the timer rides on the server's addon)."""
    from lmrun.render.cloudinit import runcmd_argvs, written_files
    from lmrun.verify.user_data import user_data_text
    from tests.conftest import plan

    report = plan("global")
    recorded = report.recording
    server = next(r for r in recorded.resources if r.name == "mesh-cluster-k3s-instance")
    text = user_data_text(server) or ""
    files = written_files(text)
    script = files[f"{SCRIPT_DIR}/serve-endpoints.sh"]
    assert "PARAMETER_PATTERN='/lmrun/global/serve/{service}/endpoint'" in script
    assert "VPC_CIDR=10.64.0.0/16" in script
    # The same user data and role policy without elastic services: adding one never replaces the server.
    bare = plan("global", elasticServices=[]).recording
    assert not bare.outputs["elasticPaths"]
    assert user_data_text(bare.named("mesh-cluster-k3s-instance")) == text
    policy_name = "mesh-cluster-k3s-identity-parameters"
    assert bare.named(policy_name).inputs["policy"] == recorded.named(policy_name).inputs["policy"]
    assert ["systemctl", "enable", "--now", serve_endpoints.SERVE_ENDPOINTS_TIMER] in runcmd_argvs(text)
    assert "lmrun:hosts" not in server.inputs["tags"]
    policy = json.loads(recorded.named("mesh-cluster-k3s-identity-parameters").inputs["policy"])
    reads = next(s for s in policy["Statement"] if s["Sid"] == "ReadParameters")["Resource"]
    serve = [arn for arn in reads if "/serve/" in arn]
    assert serve == [serve[0]] and serve[0].endswith(":parameter/lmrun/global/serve/*")
    deny = next(s for s in policy["Statement"] if s["Sid"] == "DenyOtherParameters")
    assert serve[0] in deny["NotResource"]
    # Only the server may read it; no machine may write it (the operator does, with `lmrun sky bind`).
    row = report.access.to_json()["serve/qwen-elastic/endpoint"]
    assert row == {
        "store": "SSM Parameter Store (us-east-1, String)",
        "path": "/lmrun/global/serve/qwen-elastic/endpoint",
        "readers": ["k3s-server"],
        "writers": ["operator"],
    }


def test_with_phoenix_on_the_server_both_ride_on_its_boot() -> None:
    """The timer joins the server's Phoenix addon (files, runcmd) without taking any of Phoenix's access."""
    from lmrun.render.cloudinit import runcmd_argvs, written_files
    from lmrun.verify.user_data import user_data_text
    from tests.conftest import plan

    report = plan("global", phoenix={"placement": "server"})
    server = next(r for r in report.recording.resources if r.name == "mesh-cluster-k3s-instance")
    text = user_data_text(server) or ""
    files = written_files(text)
    assert f"{SCRIPT_DIR}/serve-endpoints.sh" in files and any("phoenix" in path for path in files)
    runcmd = runcmd_argvs(text)
    assert ["systemctl", "enable", "--now", serve_endpoints.SERVE_ENDPOINTS_TIMER] in runcmd
    assert server.inputs["tags"]["lmrun:hosts"] == "phoenix"
    assert report.access.to_json()["serve/qwen-elastic/endpoint"]["readers"] == ["k3s-server"]
