"""A VM's secret store is a value the caller passes in: a new one plugs into every renderer with no edit there.

``VaultStore`` below is a store the library does not know (HashiCorp Vault's KV engine), implemented in this
test module only. It goes through the K3s agent, vLLM (Hugging Face token), the Phoenix client refresher and
the gateway renderer; the user data passes the real validators, carries the store's helper and argv and
nothing of SSM or Secret Manager, and the one refresher body runs the store's helper for real.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import subprocess
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmrun.aws.secret_store import SSM_GET_SCRIPT, SsmParameterStore
from lmrun.gcp.secret_store import GCP_SECRET_GET_SCRIPT, SecretManagerStore
from lmrun.render import gateways, k3s, phoenix, vllm
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, shell_scripts, written_files
from lmrun.render.secret_store import SecretStore
from tests.validators import assert_cloud_init_valid, assert_shellcheck_clean

REPO = Path(__file__).resolve().parents[1]

VAULT_GET = WriteFile(
    f"{SCRIPT_DIR}/vault-get.sh",
    """#!/bin/bash
set -euo pipefail
# Usage: vault-get.sh ADDRESS SECRET_PATH DEST
# Field "value" of a KV v2 secret, read with the VM's Vault token (its header kept in a root-only file).
address="$1"
path="$2"
dest="$3"
umask 077
mkdir -p "$(dirname "$dest")"
curl -sf -H @/etc/vault/token-header "$address/v1/secret/data/$path" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["data"]["value"])' >"$dest"
""",
    "0755",
)

_VAULT_PATH = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_-]+)*$")


@dataclass(frozen=True)
class VaultStore:
    """KV v2 secrets of the Vault server at ``address``, read with ``vault-get.sh``."""

    address: str

    @property
    def label(self) -> str:
        return "Vault"

    @property
    def fetch_script(self) -> WriteFile:
        return VAULT_GET

    def fetch_argv(self, name: str, dest: str) -> list[str]:
        self.check_name("name", name)
        return [VAULT_GET.path, self.address, name, dest]

    def check_name(self, field_name: str, name: str) -> None:
        if not _VAULT_PATH.match(name):
            raise ValueError(f"{field_name}: {name!r} is not a Vault secret path like 'mesh/k3s-token'")


VAULT: SecretStore = VaultStore("https://vault.internal:8200")
AGENT = k3s.K3sAgentConfig(
    server_ip="10.0.0.10", store=VAULT, token_parameter="mesh/k3s-token", node_name="h100-onprem",
    region="eu-central", gpu="H100",
)  # fmt: skip
TRACING = phoenix.PhoenixClientConfig(VAULT, "mesh/phoenix-ingest-key", restart_units=(vllm.UNIT_NAME,))
VLLM = vllm.VllmConfig(
    model="Qwen/Qwen2.5-7B-Instruct",
    revision="main",
    served_model_name="qwen",
    hf_token_parameter="mesh/hf-token",
    store=VAULT,
    otlp_traces_endpoint=TRACING.endpoint,
    otlp_env_file=TRACING.env_file,
)


def _user_data() -> dict[str, str]:
    return {
        "agent": k3s.render_agent_user_data(AGENT),
        "gpu-node": vllm.render_gpu_node_user_data(AGENT, VLLM, TRACING),
        "gateway": gateways.render_gateway_user_data(
            store=VAULT, config_secret="mesh/wireguard", description="WireGuard on-prem gateway"
        ),
    }


def test_a_store_the_library_does_not_know_plugs_into_every_renderer(tmp_path: Path) -> None:
    scripts = []
    for name, text in _user_data().items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        assert_cloud_init_valid(path)
        files = written_files(text)
        assert files[VAULT_GET.path] == VAULT_GET.content, name
        # Nothing of the clouds the library knows: no helper, no CLI, no store named in a unit.
        for content in files.values():
            assert "ssm" not in content.lower() and "aws " not in content, name
            assert "Secret Manager" not in content and "gcp-secret-get" not in content, name
        assert SSM_GET_SCRIPT.path not in files and GCP_SECRET_GET_SCRIPT.path not in files, name
        for script_path, content in shell_scripts(text).items():
            script = tmp_path / f"{name}-{Path(script_path).name}"
            script.write_text(content)
            scripts.append(script)
    assert_shellcheck_clean(scripts)

    node = written_files(_user_data()["gpu-node"])
    address = "https://vault.internal:8200"
    key_file = f"{phoenix.CLIENT_ENV_FILE}.key"
    assert (
        f"vault-get.sh {address} mesh/k3s-token {k3s.AGENT_TOKEN_FILE}" in node[f"{SCRIPT_DIR}/k3s-agent-bootstrap.sh"]
    )
    assert f"vault-get.sh {address} mesh/hf-token {vllm.HF_TOKEN_FILE}" in node[vllm.HF_TOKEN_SCRIPT]
    refresher = node[f"{SCRIPT_DIR}/phoenix-client-env.sh"]
    assert f"FETCH_KEY=({SCRIPT_DIR}/vault-get.sh {address} mesh/phoenix-ingest-key {key_file})" in refresher
    assert "from Vault" in node[f"/etc/systemd/system/{phoenix.CLIENT_ENV_UNIT}"]
    gateway = written_files(_user_data()["gateway"])
    refresh = gateway[f"{SCRIPT_DIR}/wireguard-refresh.sh"]
    assert (
        f"FETCH_CONFIG=({SCRIPT_DIR}/vault-get.sh {address} mesh/wireguard {gateways.GATEWAY_CONFIG_PATH})" in refresh
    )
    assert "Description=Apply the WireGuard on-prem gateway config from Vault" in _user_data()["gateway"]


def test_the_store_checks_its_own_names_for_every_renderer() -> None:
    with pytest.raises(ValueError, match=r"^token_parameter: '/lmrun/k3s/token' is not a Vault secret path"):
        k3s.K3sAgentConfig(
            server_ip="10.0.0.10", store=VAULT, token_parameter="/lmrun/k3s/token", node_name="n", region="x1"
        )
    with pytest.raises(ValueError, match=r"^hf_token_parameter:"):
        vllm.VllmConfig(model="a/b", revision="main", served_model_name="b", hf_token_parameter="HF", store=VAULT)
    with pytest.raises(ValueError, match=r"^ingest_key_parameter:"):
        phoenix.PhoenixClientConfig(VAULT, "Phoenix Key")
    with pytest.raises(ValueError, match=r"^config_secret:"):
        gateways.render_gateway_user_data(store=VAULT, config_secret="/lmrun/wg", description="gateway")


def test_every_secret_of_a_node_comes_from_its_agents_store() -> None:
    ssm_tracing = phoenix.PhoenixClientConfig(SsmParameterStore("us-east-1"), "/lmrun/x/phoenix/ingest-key")
    with pytest.raises(ValueError, match=r"^tracing: .* must come from the same secret store"):
        vllm.render_gpu_node_user_data(AGENT, VLLM, ssm_tracing)
    other_vault = VaultStore("https://other-vault.internal:8200")
    with pytest.raises(ValueError, match=r"^store: .* must come from the same secret store"):
        vllm.render_gpu_node_user_data(AGENT, dataclasses.replace(VLLM, store=other_vault), TRACING)


FAKE_CURL = """#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_LOG"
printf '{"data": {"data": {"value": "%s"}, "metadata": {"version": 3}}}\\n' "$FAKE_KEY"
"""


def test_the_one_refresher_runs_whatever_fetch_the_store_gives(tmp_path: Path) -> None:
    """The Phoenix client refresher with the Vault helper, for real: a stand-in curl answers as Vault does."""
    lib, bin_dir, env_file = tmp_path / "lib", tmp_path / "bin", tmp_path / "etc" / "phoenix-client.env"
    lib.mkdir()
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "systemctl").write_text('#!/bin/sh\necho "systemctl $*" >>"$FAKE_LOG"\n')
    client = phoenix.PhoenixClientConfig(
        VAULT, "mesh/phoenix-ingest-key", env_file=str(env_file), restart_units=(vllm.UNIT_NAME,)
    )
    for f in (VAULT_GET, phoenix.client_env_script(client)):
        path = lib / Path(f.path).name
        path.write_text(f.content.replace(f"{SCRIPT_DIR}/", f"{lib}/"))
    for path in [*lib.iterdir(), *bin_dir.iterdir()]:
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    key = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2YXVsdCJ9.c2ln"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_KEY": key}
    argv = ["bash", str(lib / "phoenix-client-env.sh"), *phoenix.client_env_command(client)[1:]]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert phoenix.parse_env_file(env_file.read_text()) == phoenix.client_environment(client.endpoint, key)
    calls = log.read_text()
    assert "https://vault.internal:8200/v1/secret/data/mesh/phoenix-ingest-key" in calls
    assert f"systemctl try-restart {vllm.UNIT_NAME}" in calls
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["phoenix-client.env"], "no key file left behind"


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(t.start[0], t.string) for t in tokens if t.type == tokenize.STRING]


@pytest.mark.parametrize("folder", ["render", "components"])
def test_renderers_and_components_never_name_a_cloud(folder: str) -> None:
    """Which cloud a VM is in reaches them as objects (stores, site clouds), never as a name to compare."""
    named = [
        f"{path.relative_to(REPO)}:{line}: {text}"
        for path in sorted((REPO / folder).glob("*.py"))
        for line, text in _string_literals(path)
        if re.fullmatch(r"""[rb]?(["'])(gcp|aws|ssm)\1""", text, re.IGNORECASE)
    ]
    assert named == []


def test_the_stores_are_values() -> None:
    assert SsmParameterStore("us-east-1") == SsmParameterStore("us-east-1") != SsmParameterStore("eu-west-1")
    assert SecretManagerStore("my-project-1") != SecretManagerStore("my-project-2")
    with pytest.raises(ValueError, match=r"^region:"):
        SsmParameterStore("useast1")
    with pytest.raises(ValueError, match=r"^project:"):
        SecretManagerStore("Bad_Project")
    assert SsmParameterStore("us-east-1").fetch_argv("/p/x", "/run/x") == [
        f"{SCRIPT_DIR}/ssm-get.sh",
        "us-east-1",
        "/p/x",
        "/run/x",
    ]
    assert SecretManagerStore("my-project-1").fetch_argv("s", "/run/x") == [
        f"{SCRIPT_DIR}/gcp-secret-get.sh",
        "my-project-1",
        "s",
        "/run/x",
    ]
