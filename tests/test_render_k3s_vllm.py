"""K3s/vLLM cloud-init and mesh-service manifests: real validators, no secrets, labels, flags, blast radius.

The validators (``cloud-init schema``, shellcheck, ``kubernetes-validate --strict``) run for real; each is
also fed one broken input, so a validator that silently accepts everything fails the test. Without a
validator the test skips on a laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.domain import versions
from lmrun.domain.secrets import HF_TOKEN_UNSET
from lmrun.render import cloudinit, k3s, kubernetes, vllm
from lmrun.render.routes import ROUTE_MTU_UNIT, RouteMtu, route_mtu_command, route_mtu_files, route_mtu_runcmd
from lmrun.render.script_files import render_script
from tests.validators import assert_shellcheck_clean, require_tool, run

SERVER_TOKEN_PARAM = "/lmrun/test/k3s/server-token"
TOKEN_PARAM = "/lmrun/test/k3s/agent-token"
KUBECONFIG_PARAM = "/lmrun/test/k3s/kubeconfig"
CREDENTIAL_PARAM = "/lmrun/test/k3s/deployer-credential"
HF_PARAM = "/lmrun/test/hf-token"
SSM = SsmParameterStore("us-east-1")

SERVER = k3s.K3sServerConfig(
    node_ip="10.0.0.10",
    ssm_region="us-east-1",
    server_token_parameter=SERVER_TOKEN_PARAM,
    agent_token_parameter=TOKEN_PARAM,
    kubeconfig_parameter=KUBECONFIG_PARAM,
    credential_parameter=CREDENTIAL_PARAM,
    credential_exec=tuple(SSM.client_read_argv(CREDENTIAL_PARAM)),
    state_volume_id="vol-0123456789abcdef0",
    tls_sans=("k3s.mesh.internal", "10.0.0.11"),
    kubeconfig_kms_key_id="alias/lmrun",
)
SERVER_MINIMAL = k3s.K3sServerConfig(
    node_ip="10.0.0.10",
    ssm_region="us-east-1",
    server_token_parameter=SERVER_TOKEN_PARAM,
    agent_token_parameter=TOKEN_PARAM,
    kubeconfig_parameter=KUBECONFIG_PARAM,
    credential_parameter=CREDENTIAL_PARAM,
    credential_exec=("read-credential",),
)
GPU_AGENT = k3s.K3sAgentConfig(
    server_ip="10.0.0.10", store=SSM, token_parameter=TOKEN_PARAM,
    node_name="l4-west", region="us-west-2", gpu="L4", serves=("qwen",),
)  # fmt: skip
CPU_AGENT = k3s.K3sAgentConfig(
    server_ip="10.0.0.10", store=SSM, token_parameter=TOKEN_PARAM,
    node_name="phoenix", region="us-east-1", node_ip="10.0.1.5", extra_labels=(("lmrun.io/role", "phoenix"),),
)  # fmt: skip
VLLM_FULL = vllm.VllmConfig(
    model="Qwen/Qwen2.5-7B-Instruct",
    revision="a09a35458c702b33eeacc393d103063234e8bc28",
    served_model_name="qwen-7b",
    app_port=8000,
    extra_args=("--max-model-len", "8192", "--gpu-memory-utilization=0.92", "--chat-template", "it's {x}"),
    tensor_parallel_size=4,
    hf_token_parameter=HF_PARAM,
    store=SSM,
    otlp_traces_endpoint="grpc://127.0.0.1:30201",
)
VLLM_MINIMAL = vllm.VllmConfig(model="facebook/opt-125m", revision="main", served_model_name="opt")

USER_DATA = {
    "server": k3s.render_server_user_data(SERVER),
    "server-minimal": k3s.render_server_user_data(SERVER_MINIMAL),
    "cpu-agent": k3s.render_agent_user_data(CPU_AGENT),
    "gpu-full": vllm.render_gpu_node_user_data(GPU_AGENT, VLLM_FULL),
    "gpu-minimal": vllm.render_gpu_node_user_data(GPU_AGENT, VLLM_MINIMAL),
}
QWEN = kubernetes.MeshService(name="qwen", app_port=8000, node_port=30080)
PHOENIX_GRPC = kubernetes.MeshService(
    name="phoenix-grpc", app_port=4317, node_port=30201, pinned_nodes=("phoenix",), probe="tcp"
)
MANIFESTS = kubernetes.mesh_manifests([QWEN, PHOENIX_GRPC])
DEPLOYER = kubernetes.deployer_manifests()


# --- real validators ------------------------------------------------------------------------------------------


def test_every_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    tool = require_tool("cloud-init")
    for name, text in USER_DATA.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = run([tool, "schema", "--config-file", str(path)])
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout, result.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("#cloud-config\nwrite_files:\n- path: /x\n  content: x\n  permissions: 755\nruncmd: nope\n")
    assert run([tool, "schema", "--config-file", str(broken)]).returncode != 0, "cloud-init schema accepts anything"


def test_every_rendered_script_passes_shellcheck(tmp_path: Path) -> None:
    tool = require_tool("shellcheck")
    scripts: dict[str, str] = {}
    for text in USER_DATA.values():
        scripts.update({f"{Path(p).name}-{abs(hash(c))}": c for p, c in cloudinit.shell_scripts(text).items()})
    assert len({k.rsplit("-", 1)[0] for k in scripts}) >= 8, sorted(scripts)
    paths = []
    for name, content in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(content)
        paths.append(str(path))
    result = run([tool, "--severity=style", "--shell=bash", *paths])
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert run([tool, str(bad)]).returncode != 0, "shellcheck accepts anything"


def test_every_manifest_passes_kubernetes_validate_strict(tmp_path: Path) -> None:
    tool = require_tool("kubernetes-validate")
    good = tmp_path / "mesh.yaml"
    good.write_text(kubernetes.to_yaml([*MANIFESTS, *DEPLOYER]))
    bad_manifest = kubernetes.service_manifest(QWEN)
    bad_manifest["spec"]["externalTrafficPolicies"] = "Cluster"  # misspelt: only --strict rejects it
    bad = tmp_path / "bad.yaml"
    bad.write_text(kubernetes.to_yaml([bad_manifest]))
    version = versions.KUBERNETES_VERSION
    result = run([tool, "--strict", "--kubernetes-version", version, str(good)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(MANIFESTS) + len(DEPLOYER), result.stdout
    assert f"against version {version.rsplit('.', 1)[0]}" in result.stdout, result.stdout
    rejected = run([tool, "--strict", "--kubernetes-version", version, str(bad)])
    assert rejected.returncode != 0, "kubernetes-validate --strict accepts unknown fields"


def test_kubernetes_minor_matches_pinned_k3s() -> None:
    minor = re.match(r"v(\d+\.\d+)\.", k3s.K3S_VERSION)
    assert minor
    assert f"{minor.group(1)}.0" == versions.KUBERNETES_VERSION


# --- secrets stay out of user data ----------------------------------------------------------------------------

SECRET_LOOKING = [
    re.compile(r"K10[0-9a-f]{20,}"),  # K3s secure token
    re.compile(r"hf_[A-Za-z0-9]{20,}"),  # Hugging Face token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # kubeconfig data with a value (the deployer kubeconfig's template fills it from a variable on the VM)
    re.compile(r"(client-key-data|client-certificate-data|certificate-authority-data): *[A-Za-z0-9+/]"),
    re.compile(r"^ +token: +[A-Za-z0-9._-]{20,}", re.MULTILINE),  # a kubeconfig's bearer token
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"--token[ =](?!-)", re.IGNORECASE),  # a literal --token VALUE (only --token-file is allowed)
    re.compile(r"K3S_TOKEN="),
    re.compile(r"HF_TOKEN=[^'\"]"),  # an HF token value (the install script only writes the variable name)
]


@pytest.mark.parametrize("name", sorted(USER_DATA))
def test_user_data_holds_parameter_names_never_secret_values(name: str) -> None:
    text = USER_DATA[name]
    for pattern in SECRET_LOOKING:
        assert not pattern.search(text), (name, pattern.pattern)
    assert TOKEN_PARAM in text
    assert "--with-decryption" in text
    assert len(text.encode()) < 16384, "EC2 user data is limited to 16 KiB"


def test_configs_take_no_secret_values() -> None:
    """The renderers' inputs have no field that could carry a secret value: only parameter names."""
    for cls in (k3s.K3sServerConfig, k3s.K3sAgentConfig, vllm.VllmConfig):
        for f in dataclasses.fields(cls):
            if re.search(r"token|kubeconfig|secret|password|key", f.name):
                assert f.name.endswith(("_parameter", "_key_id")), (cls.__name__, f.name)


def test_hf_token_only_when_configured() -> None:
    assert HF_PARAM in USER_DATA["gpu-full"]
    assert "hf-token" not in USER_DATA["gpu-minimal"]
    unit = cloudinit.written_files(USER_DATA["gpu-minimal"])[f"/etc/systemd/system/{vllm.UNIT_NAME}"]
    assert f"EnvironmentFile=-{vllm.ENV_FILE}" in unit
    assert "ExecStartPre" not in unit and vllm.HF_TOKEN_SCRIPT not in USER_DATA["gpu-minimal"]


def _token_script(tmp_path: Path) -> tuple[Path, Path, Path]:
    """vllm-hf-token.sh with paths under tmp_path and a fake store fetch that copies ``store`` (fails without it)."""
    store, env_file, token_file = tmp_path / "store", tmp_path / "etc" / "vllm.env", tmp_path / "run" / "hf-token"
    fetch = tmp_path / "fetch.sh"
    fetch.write_text(f'#!/bin/bash\nset -eu\n[ -f {store} ] || exit 3\ncp {store} "$1"\n')
    fetch.chmod(0o755)
    values = {"ENV_FILE": str(env_file), "HF_TOKEN_FILE": str(token_file), "UNSET": HF_TOKEN_UNSET}
    script = tmp_path / "vllm-hf-token.sh"
    script.write_text(render_script("vllm-hf-token.sh", {**values, "HF_FETCH": [str(fetch), str(token_file)]}))
    return script, store, env_file


def test_the_token_is_read_at_every_start_and_the_unset_marker_means_no_token(tmp_path: Path) -> None:
    """What vLLM's ExecStartPre does, run for real: no token while the secret holds the unset marker, the token
    once it is set (no new VM: the next start reads it), and a failed read keeps what vLLM had."""
    script, store, env_file = _token_script(tmp_path)
    assert_shellcheck_clean([script])
    store.write_text(HF_TOKEN_UNSET + "\n")
    assert run(["bash", str(script)]).returncode == 0
    assert env_file.read_text() == "" and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    store.write_text("hf_SetLaterByTheOperator0123456789\n")
    assert run(["bash", str(script)]).returncode == 0
    assert env_file.read_text() == "HF_TOKEN=hf_SetLaterByTheOperator0123456789\n"
    assert not (tmp_path / "run" / "hf-token").exists(), "the fetched token file is removed"
    store.unlink()
    assert run(["bash", str(script)]).returncode != 0
    assert env_file.read_text().startswith("HF_TOKEN=hf_Set")


# --- K3s server and agents --------------------------------------------------------------------------------------


def _bootstrap(user_data: str, name: str) -> str:
    return cloudinit.written_files(user_data)[f"{cloudinit.SCRIPT_DIR}/{name}"]


def test_server_flags_and_pins() -> None:
    flags = k3s.server_flags(SERVER)
    pairs = dict(zip(flags[::2], flags[1::2], strict=True))
    assert pairs["--node-ip"] == "10.0.0.10"
    assert pairs["--disable"] == "traefik"
    assert pairs["--write-kubeconfig-mode"] == "0600"
    assert pairs["--data-dir"].startswith(k3s.STATE_MOUNT + "/")
    # K3s docs ("k3s server"): --token-file holds the server token, --agent-token-file the agents' own token.
    assert pairs["--token-file"] == k3s.SERVER_TOKEN_FILE
    assert pairs["--agent-token-file"] == k3s.AGENT_TOKEN_FILE != k3s.SERVER_TOKEN_FILE
    sans = [flags[i + 1] for i, f in enumerate(flags) if f == "--tls-san"]
    assert sans == ["10.0.0.10", "k3s.mesh.internal", "10.0.0.11"]
    boot = _bootstrap(USER_DATA["server"], "k3s-server-bootstrap.sh")
    assert f"k3s-install.sh {k3s.K3S_VERSION} server --node-ip 10.0.0.10" in boot
    assert "mount-volume.sh /dev/sdf vol-0123456789abcdef0 /var/lib/lmrun-state lmrun-state" in boot
    assert f"ssm-get.sh us-east-1 {SERVER_TOKEN_PARAM} {k3s.SERVER_TOKEN_FILE}" in boot
    assert f"ssm-get.sh us-east-1 {TOKEN_PARAM} {k3s.AGENT_TOKEN_FILE}" in boot
    with pytest.raises(ValueError, match=r"^agent_token_parameter: must not be the server token's parameter"):
        dataclasses.replace(SERVER, agent_token_parameter=SERVER_TOKEN_PARAM)
    minimal = _bootstrap(USER_DATA["server-minimal"], "k3s-server-bootstrap.sh")
    assert "mount-volume.sh /dev/sdf '' /var/lib/lmrun-state" in minimal
    installer = _bootstrap(USER_DATA["server"], "k3s-install.sh")
    assert "raw.githubusercontent.com/k3s-io/k3s/${version}/install.sh" in installer
    assert "get.k3s.io" not in USER_DATA["server"].replace("not the moving get.k3s.io", "")


def test_server_publishes_kubeconfig_to_ssm_without_secret_on_command_line() -> None:
    files = cloudinit.written_files(USER_DATA["server"])
    publish = files[f"{cloudinit.SCRIPT_DIR}/publish-kubeconfig.sh"]
    assert (
        f"KUBECONFIG_PARAMETER={KUBECONFIG_PARAM}" in publish and f"CREDENTIAL_PARAMETER={CREDENTIAL_PARAM}" in publish
    )
    assert "PUT_OPTIONS=(--type SecureString --overwrite --tier Intelligent-Tiering --key-id alias/lmrun)" in publish
    assert '--value "file://$1"' in publish
    assert "API_ENDPOINT=https://10.0.0.10:6443" in publish
    # The kubeconfig's exec plugin reads the credential parameter wherever the kubeconfig is used.
    assert "EXEC_COMMAND=aws" in publish
    exec_args = json.loads(re.search(r"^EXEC_ARGS='(.*)'$", publish, re.MULTILINE).group(1))  # type: ignore[union-attr]
    value = ["--with-decryption", "--query", "Parameter.Value", "--output", "text"]
    assert exec_args == ["ssm", "get-parameter", "--region", "us-east-1", "--name", CREDENTIAL_PARAM, *value]
    with pytest.raises(ValueError, match=r"^credential_exec: "):
        dataclasses.replace(SERVER, credential_exec=())
    # The deployer's kubeconfig, never the admin one (which K3s writes to KUBECONFIG_PATH).
    assert k3s.KUBECONFIG_PATH not in publish and "ACCOUNT=lmrun-deployer" in publish
    manifest = files[k3s.DEPLOYER_MANIFEST]
    assert json.loads(manifest)["items"] == kubernetes.deployer_manifests()
    unit = files[f"/etc/systemd/system/{k3s.PUBLISH_KUBECONFIG_UNIT}"]
    assert "Requires=k3s.service" in unit and "WantedBy=multi-user.target" in unit
    assert "--key-id" not in _bootstrap(USER_DATA["server-minimal"], "publish-kubeconfig.sh")


def test_agent_labels() -> None:
    gpu = _bootstrap(USER_DATA["gpu-full"], "k3s-agent-bootstrap.sh")
    for label in ("lmrun.io/node=l4-west", "lmrun.io/gpu=L4", "lmrun.io/region=us-west-2", "serves.lmrun.io/qwen=true"):
        assert f"--node-label {label}" in gpu
    # An agent joins with the agent token (its --token-file); it never fetches the server token.
    assert "--server https://10.0.0.10:6443" in gpu and f"--token-file {k3s.AGENT_TOKEN_FILE}" in gpu
    assert f"ssm-get.sh us-east-1 {TOKEN_PARAM} {k3s.AGENT_TOKEN_FILE}" in gpu
    assert SERVER_TOKEN_PARAM not in USER_DATA["gpu-full"] and k3s.SERVER_TOKEN_FILE not in gpu
    # A replacement VM is a new Node (the reaper removes the old one), whatever its hostname.
    assert "--with-node-id" in gpu and "--with-node-id" not in k3s.server_flags(SERVER)
    cpu = _bootstrap(USER_DATA["cpu-agent"], "k3s-agent-bootstrap.sh")
    assert "lmrun.io/gpu" not in cpu
    assert "--node-label lmrun.io/role=phoenix" in cpu and "--node-ip 10.0.1.5" in cpu
    assert CPU_AGENT.labels == {"lmrun.io/node": "phoenix", "lmrun.io/region": "us-east-1", "lmrun.io/role": "phoenix"}
    with pytest.raises(ValueError, match=r"^extra_labels: 'serves\.lmrun\.io/qwen' is set by lmrun itself"):
        dataclasses.replace(GPU_AGENT, extra_labels=(("serves.lmrun.io/qwen", "true"),))


def test_ssm_get_script_really_writes_a_private_file(tmp_path: Path) -> None:
    """Run the rendered ssm-get.sh against a stand-in ``aws`` that checks its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_aws = bin_dir / "aws"
    fake_aws.write_text(
        '#!/bin/bash\n[ "$*" = "ssm get-parameter --region eu-west-1 --name /p/x --with-decryption '
        '--query Parameter.Value --output text" ] || { echo "bad args: $*" >&2; exit 3; }\necho value-42\n'
    )
    fake_aws.chmod(0o755)
    script = tmp_path / "ssm-get.sh"
    script.write_text(k3s.SSM_GET_SCRIPT.content)
    dest = tmp_path / "out" / "token"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(script), "eu-west-1", "/p/x", str(dest)], env=env, capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert dest.read_text() == "value-42\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert [p.name for p in dest.parent.iterdir()] == ["token"], "temp file left behind"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"node_ip": "10.0.0.300"}, "node_ip"),
        ({"server_token_parameter": "has space"}, "server_token_parameter"),
        ({"agent_token_parameter": "has space"}, "agent_token_parameter"),
        ({"kubeconfig_parameter": "a//b"}, "kubeconfig_parameter"),
        ({"ssm_region": "useast1"}, "ssm_region"),
        ({"state_device_name": "/dev/nvme1n1"}, "state_device_name"),
        ({"state_volume_id": "vol-xyz"}, "state_volume_id"),
        ({"tls_sans": ("bad_name!",)}, "tls_sans"),
        ({"k3s_version": "latest"}, "k3s_version"),
    ],
)
def test_server_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(SERVER, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"node_name": "has space"}, "node_name"),
        ({"node_name": "x" * 64}, "node_name"),
        ({"gpu": "L4 "}, "gpu"),
        ({"region": "Mars 1"}, "region"),
        ({"region": "us_east_1"}, "region"),
        ({"token_parameter": "has space"}, "token_parameter"),
        ({"extra_labels": (("lmrun.io/node", "x"),)}, "extra_labels"),
        ({"server_ip": "k3s.local"}, "server_ip"),
    ],
)
def test_agent_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(GPU_AGENT, **kwargs)


# --- vLLM -----------------------------------------------------------------------------------------------------


def test_vllm_serve_command() -> None:
    serve = _bootstrap(USER_DATA["gpu-full"], "vllm-serve.sh")
    assert serve.splitlines()[-1] == (
        f"exec {vllm.VENV}/bin/vllm serve Qwen/Qwen2.5-7B-Instruct --revision a09a35458c702b33eeacc393d103063234e8bc28"
        " --served-model-name qwen-7b --host 0.0.0.0 --port 8000 --tensor-parallel-size 4"
        " --otlp-traces-endpoint grpc://127.0.0.1:30201 --max-model-len 8192 --gpu-memory-utilization=0.92"
        " --chat-template 'it'\"'\"'s {x}'"
    )
    minimal = vllm.serve_args(VLLM_MINIMAL)
    assert "--otlp-traces-endpoint" not in minimal and "--tensor-parallel-size" not in minimal
    assert minimal[-2:] == ["--port", "8000"]
    explicit_tp = dataclasses.replace(VLLM_FULL, extra_args=("--tensor-parallel-size", "2"))
    assert vllm.serve_args(explicit_tp).count("--tensor-parallel-size") == 1


def test_vllm_unit_and_install() -> None:
    files = cloudinit.written_files(USER_DATA["gpu-full"])
    unit = files[f"/etc/systemd/system/{vllm.UNIT_NAME}"]
    assert "Restart=on-failure" in unit and "User=vllm" in unit
    assert f"ExecStart={cloudinit.SCRIPT_DIR}/vllm-serve.sh" in unit
    assert "OTEL_EXPORTER_OTLP_TRACES_INSECURE=true" in unit
    assert "OTEL_" not in cloudinit.written_files(USER_DATA["gpu-minimal"])[f"/etc/systemd/system/{vllm.UNIT_NAME}"]
    install = files[f"{cloudinit.SCRIPT_DIR}/vllm-install.sh"]
    assert f"VLLM_VERSION={vllm.VLLM_VERSION}" in install and '"vllm==${VLLM_VERSION:?}"' in install
    # The token is read at every vLLM start (ExecStartPre, as root), not once at install.
    assert "hf-token" not in install
    assert f"ExecStartPre=+{vllm.HF_TOKEN_SCRIPT}" in unit
    token = files[vllm.HF_TOKEN_SCRIPT]
    assert f"ssm-get.sh us-east-1 {HF_PARAM} /run/lmrun/hf-token" in token and f"UNSET={HF_TOKEN_UNSET}" in token
    assert f"VLLM_UNIT={vllm.UNIT_NAME}" in install and 'systemctl enable --now "${VLLM_UNIT:?}"' in install
    runcmd = yaml.safe_load(USER_DATA["gpu-full"])["runcmd"]
    assert runcmd == [
        cloudinit.STOP_AT_FIRST_FAILURE,
        [f"{cloudinit.SCRIPT_DIR}/k3s-agent-bootstrap.sh"],
        [f"{cloudinit.SCRIPT_DIR}/vllm-install.sh"],
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": "not a model"}, "model"),
        ({"revision": ""}, "revision"),
        ({"revision": "main branch"}, "revision"),
        ({"revision": "../etc"}, "revision"),
        ({"served_model_name": "bad name"}, "served_model_name"),
        ({"app_port": 70000}, "app_port"),
        ({"extra_args": ("--port", "9000")}, "extra_args"),
        ({"extra_args": ("--served-model-name=x",)}, "extra_args"),
        ({"hf_token_parameter": HF_PARAM, "store": None}, "store"),
        ({"hf_token_parameter": "a//b"}, "hf_token_parameter"),
        ({"otlp_traces_endpoint": "phoenix:4317"}, "otlp_traces_endpoint"),
        ({"vllm_version": ">=0.9"}, "vllm_version"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ],
)
def test_vllm_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(VLLM_FULL, **kwargs)


def test_gpu_node_needs_a_gpu_label() -> None:
    with pytest.raises(ValueError, match=r"^gpu:"):
        vllm.render_gpu_node_user_data(CPU_AGENT, VLLM_MINIMAL)


# --- mesh services on node ports ------------------------------------------------------------------------------


def test_service_is_a_cluster_nodeport_selecting_the_proxies() -> None:
    svc = kubernetes.service_manifest(QWEN)
    spec = svc["spec"]
    assert svc["metadata"]["name"] == "lmrun-svc-qwen"
    assert (spec["type"], spec["externalTrafficPolicy"]) == ("NodePort", "Cluster")
    assert spec["selector"] == {"app": "lmrun-svc-qwen"}
    assert spec["ports"] == [{"name": "app", "protocol": "TCP", "port": 8000, "targetPort": 8000, "nodePort": 30080}]


def test_readiness_proxies_are_one_daemonset_per_service_on_its_labelled_or_pinned_nodes() -> None:
    qwen = kubernetes.readiness_proxy_manifest(QWEN)
    assert (qwen["kind"], qwen["metadata"]["name"]) == ("DaemonSet", "lmrun-svc-qwen")
    pod = qwen["spec"]["template"]
    assert pod["metadata"]["labels"]["app"] == "lmrun-svc-qwen" == qwen["spec"]["selector"]["matchLabels"]["app"]
    assert pod["spec"]["hostNetwork"] is True
    container = pod["spec"]["containers"][0]
    assert container["image"] == kubernetes.PAUSE_IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": 8000, "scheme": "HTTP"}
    assert "ports" not in container
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "serves.lmrun.io/qwen", "operator": "In", "values": ["true"]}]}
    ]
    grpc = kubernetes.readiness_proxy_manifest(PHOENIX_GRPC)
    probe = grpc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 4317} and "httpGet" not in probe
    assert kubernetes.node_selector_terms(PHOENIX_GRPC)[1] == {
        "matchExpressions": [{"key": "lmrun.io/node", "operator": "In", "values": ["phoenix"]}]
    }


def test_a_node_runs_the_proxies_of_exactly_the_declared_services_it_claims() -> None:
    """A VM becomes a replica by its labels alone; a label naming an undeclared service publishes nothing."""

    def on(**labels: str) -> list[str]:
        return kubernetes.matching_services(
            MANIFESTS, {k.replace("__", "/").replace("_", "."): v for k, v in labels.items()}
        )

    assert on(serves_lmrun_io__qwen="true") == ["lmrun-svc-qwen"]
    assert on(lmrun_io__node="phoenix") == ["lmrun-svc-phoenix-grpc"]
    assert on(lmrun_io__node="l4-west", serves_lmrun_io__qwen="true") == ["lmrun-svc-qwen"]
    assert on(serves_lmrun_io__ghost="true") == []
    assert on(serves_lmrun_io__qwen="false") == []
    assert on(lmrun_io__node="qwen") == []


def test_no_object_tolerates_every_taint_or_waits_for_a_model() -> None:
    """No toleration without a key (the DaemonSet controller adds the node-lifecycle ones itself); every object
    Pulumi creates returns at once (``pulumi.com/skipAwait``): a proxy is ready only once the model loaded.
    (The namespace and its policy are the server's: ``kubectl apply`` at boot, no Pulumi await.)"""
    created_by_pulumi = [m for svc in (QWEN, PHOENIX_GRPC) for m in kubernetes.mesh_service_manifests(svc)]
    assert [m["kind"] for m in created_by_pulumi] == ["Service", "DaemonSet"] * 2
    for manifest in created_by_pulumi:
        assert manifest["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}, manifest["metadata"]
        pod = manifest["spec"].get("template", {}).get("spec", {})
        assert all("key" in toleration for toleration in pod.get("tolerations", [])), pod


def test_the_deployer_may_manage_only_services_and_daemonsets_in_the_mesh_namespace() -> None:
    by_kind = {m["kind"]: m for m in DEPLOYER}
    assert list(by_kind) == ["Namespace", "NetworkPolicy", "ServiceAccount", "Secret", "Role", "RoleBinding"]
    assert "ClusterRole" not in by_kind and "ClusterRoleBinding" not in by_kind
    rules = by_kind["Role"]["rules"]
    assert [(r["apiGroups"], r["resources"]) for r in rules] == [([""], ["services"]), (["apps"], ["daemonsets"])]
    assert all("*" not in r["verbs"] and "escalate" not in r["verbs"] for r in rules)
    assert {m["metadata"].get("namespace") for m in DEPLOYER[1:]} == {kubernetes.NAMESPACE}
    secret = by_kind["Secret"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "lmrun-deployer"}
    assert "secrets" not in by_kind["ServiceAccount"]  # hand-made token: the legacy-token cleaner leaves it
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lmrun-deployer"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lmrun-deployer", "namespace": "lmrun"}]


def test_adding_a_replica_or_service_only_adds_objects() -> None:
    def keyed(manifests: list[dict[str, object]]) -> dict[tuple[object, object], dict[str, object]]:
        return {(m["kind"], m["metadata"]["name"]): m for m in manifests}  # type: ignore[index]

    before = keyed(kubernetes.mesh_manifests([QWEN, PHOENIX_GRPC]))
    # A new vLLM replica registers serves.lmrun.io/qwen: no object changes at all.
    extra = kubernetes.MeshService(name="embed", app_port=8001, node_port=30081, pinned_nodes=("l4-west",))
    after = keyed(kubernetes.mesh_manifests([extra, PHOENIX_GRPC, QWEN]))
    assert set(before) <= set(after)
    assert all(after[k] == v for k, v in before.items())
    assert set(after) - set(before) == {("Service", "lmrun-svc-embed"), ("DaemonSet", "lmrun-svc-embed")}
    grown = dataclasses.replace(PHOENIX_GRPC, pinned_nodes=("phoenix", "k3s-server"))
    reordered = dataclasses.replace(grown, pinned_nodes=tuple(reversed(grown.pinned_nodes)))
    assert kubernetes.mesh_manifests([reordered]) == kubernetes.mesh_manifests([grown])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"node_port": 8080}, "node_port"),
        ({"node_port": 32768}, "node_port"),
        ({"name": "Qwen"}, "name"),
        ({"name": "a" * 54}, "name"),
        ({"pinned_nodes": ("a", "a")}, "pinned_nodes"),
        ({"pinned_nodes": ("Node_1",)}, "pinned_nodes"),
        ({"app_port": 0}, "app_port"),
    ],
)
def test_mesh_service_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(QWEN, **kwargs)


def test_duplicate_node_ports_are_refused() -> None:
    clash = kubernetes.MeshService(name="other", app_port=9000, node_port=30080, pinned_nodes=("x",))
    with pytest.raises(ValueError, match=r"^services\.other\.node_port: 30080 is already used by 'qwen'"):
        kubernetes.mesh_manifests([QWEN, clash])
    with pytest.raises(ValueError, match="duplicate service name"):
        kubernetes.mesh_manifests([QWEN, dataclasses.replace(QWEN, node_port=30099)])


def test_yaml_round_trips() -> None:
    assert list(yaml.safe_load_all(kubernetes.to_yaml(MANIFESTS))) == MANIFESTS


def test_route_mtus_are_checked_and_set_first() -> None:
    route = RouteMtu("10.64.0.0/10", 8500)
    assert route_mtu_command([route]) == ["/usr/local/lib/lmrun/route-mtu.sh", "10.64.0.0/10", "8500"]
    for bad in (("10.64.0.0/33", 8500), ("not a cidr", 8500), ("10.64.0.0/10", 576), ("10.64.0.0/10", 9216)):
        with pytest.raises(ValueError):
            RouteMtu(*bad)
    assert route_mtu_files([]) == [] and route_mtu_runcmd([]) == []
    text = vllm.render_gpu_node_user_data(GPU_AGENT, VLLM_FULL, routes=[route])
    runcmd = cloudinit.runcmd_argvs(text)
    assert runcmd[0] == ["systemctl", "daemon-reload"] and runcmd[1] == ["systemctl", "start", ROUTE_MTU_UNIT]
