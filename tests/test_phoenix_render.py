"""Phoenix renderer units: no secrets in the text, ports, environment, validation errors that name the field."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lmrun.aws.secret_store import SSM_GET_SCRIPT, SsmParameterStore
from lmrun.gcp.secret_store import SecretManagerStore
from lmrun.render import phoenix, readiness
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, written_files
from lmrun.render.vllm import VllmConfig
from tests.validators import assert_shellcheck_clean

REGION = "eu-west-1"
BACKUP = phoenix.PhoenixBackup(bucket="lmrun-prod-backups", prefix="phoenix/prod", region=REGION)
CFG = phoenix.PhoenixConfig(
    ssm_region=REGION,
    secret_parameter="/lmrun/prod/phoenix/secret",
    admin_secret_parameter="/lmrun/prod/phoenix/admin-secret",
    ingest_key_parameter="/lmrun/prod/phoenix/ingest-key",
    admin_password_parameter="/lmrun/prod/phoenix/admin-password",
    backup=BACKUP,
)
CLIENT = phoenix.PhoenixClientConfig(
    SsmParameterStore(REGION), "/lmrun/prod/phoenix/ingest-key", restart_units=("lmrun-vllm.service",)
)
GCP_CLIENT = phoenix.PhoenixClientConfig(
    SecretManagerStore("lmrun-test-project"),
    "mesh-sites-gcp-a-phoenix-ingest-key",
    restart_units=("lmrun-vllm.service",),
)
KEY = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsbXJ1biJ9.c2lnbmF0dXJl"


def _all_text(cfg: phoenix.PhoenixConfig = CFG) -> str:
    return "\n".join(f.content for f in [*phoenix.phoenix_files(cfg), *phoenix.client_files(CLIENT)])


def test_defaults_and_ports() -> None:
    env = phoenix.server_environment(CFG)
    assert (phoenix.HTTP_PORT, phoenix.GRPC_PORT) == (6006, 4317)
    assert (phoenix.UI_NODE_PORT, phoenix.GRPC_NODE_PORT) == (30200, 30201)
    assert env["PHOENIX_PORT"] == "6006" and env["PHOENIX_GRPC_PORT"] == "4317"
    assert env["PHOENIX_HOST"] == "0.0.0.0"
    assert env["PHOENIX_ENABLE_AUTH"] == "true"
    assert env["PHOENIX_WORKING_DIR"] == phoenix.DATA_MOUNT
    assert env["PHOENIX_DEFAULT_RETENTION_POLICY_DAYS"] == "30"
    assert env["PHOENIX_TELEMETRY_ENABLED"] == "false"
    assert CFG.storage == "sqlite" and CFG.db_file == f"{phoenix.DATA_MOUNT}/phoenix.db"
    assert CFG.local_url == "http://127.0.0.1:6006"
    assert phoenix.otlp_endpoint() == "http://localhost:30201"
    # The endpoint is accepted by the vLLM renderer as its --otlp-traces-endpoint.
    vllm = VllmConfig(
        model="Qwen/Qwen2.5-7B-Instruct",
        revision="abc123",
        served_model_name="qwen",
        otlp_traces_endpoint=phoenix.otlp_endpoint(),
    )
    assert vllm.otlp_traces_endpoint == "http://localhost:30201"


def test_no_secret_values_anywhere_only_parameter_names() -> None:
    text = _all_text()
    for needle in ("PHOENIX_SECRET=", "PHOENIX_ADMIN_SECRET=", "OTEL_EXPORTER_OTLP_TRACES_HEADERS=", "Bearer ey"):
        # Names of variables appear only inside scripts that read them at boot, never as assignments in units.
        for f in [*phoenix.phoenix_files(CFG), *phoenix.client_files(CLIENT)]:
            if f.path.startswith("/etc/systemd/"):
                assert needle not in f.content, (f.path, needle)
    assert "/lmrun/prod/phoenix/secret" in text and "/lmrun/prod/phoenix/admin-secret" in text
    unit = phoenix.unit_file(CFG).content
    assert f"EnvironmentFile={phoenix.ENV_FILE}\n" in unit  # required, not '-': no secrets, no start
    assert set(phoenix.unit_environment(unit)) & {"PHOENIX_SECRET", "PHOENIX_ADMIN_SECRET"} == set()
    assert phoenix.secret_parameters(CFG) == {
        "PHOENIX_SECRET": "/lmrun/prod/phoenix/secret",
        "PHOENIX_ADMIN_SECRET": "/lmrun/prod/phoenix/admin-secret",
        "PHOENIX_DEFAULT_ADMIN_INITIAL_PASSWORD": "/lmrun/prod/phoenix/admin-password",
    }
    # Secrets go through files, not argv: the ingest key and admin secret never sit on a command line.
    ingest = phoenix.INGEST_KEY_SCRIPT.content
    assert '-H @"$work/admin-header"' in ingest and "--cli-input-json" in ingest
    assert "--value" not in ingest


def test_client_environment() -> None:
    public = phoenix.client_environment("http://localhost:30201")
    assert public == {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:30201",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
    }
    full = phoenix.client_environment("http://localhost:30201", "eyJ0.eyJq.sig-_x")
    assert full[phoenix.HEADERS_ENV] == "authorization=Bearer%20eyJ0.eyJq.sig-_x"
    with pytest.raises(ValueError, match="api_key"):
        phoenix.client_environment("http://localhost:30201", "key with\nnewline")
    with pytest.raises(ValueError, match="endpoint"):
        phoenix.client_environment("localhost:30201")
    assert phoenix.client_env_command(CLIENT) == [
        f"{SCRIPT_DIR}/phoenix-client-env.sh",
        phoenix.CLIENT_ENV_FILE,
        "http://localhost:30201",
        "lmrun-vllm.service",
    ]
    assert phoenix.client_env_snippet(CLIENT).startswith(f"{SCRIPT_DIR}/phoenix-client-env.sh /etc/lmrun/")
    # The key is read by name with the store's helper: the argv sits in the refresher's header.
    script = phoenix.client_env_script(CLIENT).content
    key_file = f"{phoenix.CLIENT_ENV_FILE}.key"
    assert f"FETCH_KEY=({SCRIPT_DIR}/ssm-get.sh eu-west-1 /lmrun/prod/phoenix/ingest-key {key_file})\n" in script
    assert f"KEY_FILE={key_file}\n" in script
    assert "lmrun-phoenix-client-env.timer" in phoenix.client_runcmd()[-1]


def test_backup_timer_interval_and_units() -> None:
    files = {
        f.path: f.content
        for f in phoenix.phoenix_files(
            dataclasses.replace(CFG, backup=dataclasses.replace(BACKUP, interval_minutes=15))
        )
    }
    timer = files[f"/etc/systemd/system/{phoenix.BACKUP_TIMER}"]
    assert "OnUnitActiveSec=15min" in timer and "OnBootSec=15min" in timer
    default_timer = {f.path: f.content for f in phoenix.phoenix_files(CFG)}[
        f"/etc/systemd/system/{phoenix.BACKUP_TIMER}"
    ]
    assert "OnUnitActiveSec=60min" in default_timer
    service = files[f"/etc/systemd/system/{phoenix.BACKUP_UNIT}"]
    assert "User=phoenix" in service
    assert "phoenix-backup.sh /var/lib/lmrun-phoenix/phoenix.db s3://lmrun-prod-backups/phoenix/prod" in service
    unit = phoenix.unit_file(CFG).content
    assert "ExecStartPre=+/usr/local/lib/lmrun/phoenix-restore.sh /var/lib/lmrun-phoenix/phoenix.db " in unit
    assert "RequiresMountsFor=/var/lib/lmrun-phoenix" in unit


def test_without_backup_there_is_no_timer_nor_restore() -> None:
    cfg = dataclasses.replace(CFG, backup=None)
    paths = {f.path for f in phoenix.phoenix_files(cfg)}
    assert f"/etc/systemd/system/{phoenix.BACKUP_TIMER}" not in paths
    assert f"{SCRIPT_DIR}/phoenix-restore.sh" not in paths
    assert "ExecStartPre" not in phoenix.unit_file(cfg).content
    assert phoenix.backup_command(cfg) is None and phoenix.restore_command(cfg) is None


def test_postgresql_option() -> None:
    cfg = dataclasses.replace(CFG, backup=None, database_url_parameter="/lmrun/prod/phoenix/db-url")
    assert cfg.storage == "postgresql"
    assert phoenix.secret_parameters(cfg)["PHOENIX_SQL_DATABASE_URL"] == "/lmrun/prod/phoenix/db-url"
    assert "PHOENIX_SQL_DATABASE_URL=/lmrun/prod/phoenix/db-url" in phoenix.install_script(cfg).content


def test_retention_none_keeps_traces_forever() -> None:
    env = phoenix.server_environment(dataclasses.replace(CFG, retention_days=None))
    assert "PHOENIX_DEFAULT_RETENTION_POLICY_DAYS" not in env


def test_install_script_pins_phoenix_and_fetches_secrets_by_name() -> None:
    script = phoenix.install_script(CFG).content
    assert "PHOENIX_VERSION=20.26.1" in script and '"arize-phoenix==${PHOENIX_VERSION:?}"' in script
    assert (
        f"{SCRIPT_DIR}/phoenix-env.sh eu-west-1 /etc/lmrun/phoenix.env "
        "PHOENIX_SECRET=/lmrun/prod/phoenix/secret PHOENIX_ADMIN_SECRET=/lmrun/prod/phoenix/admin-secret"
    ) in script
    assert f"PHOENIX_UNIT={phoenix.UNIT_NAME}" in script and 'systemctl enable --now "${PHOENIX_UNIT:?}"' in script
    assert f"TIMERS=({phoenix.INGEST_KEY_TIMER} {phoenix.BACKUP_TIMER})" in script
    assert phoenix.INGEST_KEY_NAME in phoenix.INGEST_KEY_SCRIPT.content


def test_files_combine_with_the_agent_bootstrap_into_valid_cloud_config() -> None:
    user_data = cloud_config(write_files=[SSM_GET_SCRIPT, *phoenix.phoenix_files(CFG)], runcmd=phoenix.phoenix_runcmd())
    files = written_files(user_data)
    assert files[f"{SCRIPT_DIR}/phoenix-install.sh"].startswith("#!/bin/bash")
    assert phoenix.describe(CFG) == {
        "version": "20.26.1",
        "storage": "sqlite",
        "retention_days": 30,
        "backup_uri": "s3://lmrun-prod-backups/phoenix/prod",
        "backup_interval_minutes": 60,
    }


def test_parse_env_file() -> None:
    assert phoenix.parse_env_file("# c\nA=1\n\nB=x=y\n") == {"A": "1", "B": "x=y"}
    with pytest.raises(ValueError):
        phoenix.parse_env_file("not a line\n")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": -3}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"ssm_region": "mars-1"}, "ssm_region"),
        ({"secret_parameter": "bad name!"}, "secret_parameter"),
        ({"admin_secret_parameter": "/lmrun/prod/phoenix/secret"}, "used twice"),
        ({"ingest_key_parameter": ""}, "ingest_key_parameter"),
        ({"database_url_parameter": "/db-url"}, "backup"),
        ({"data_dir": "relative/dir"}, "data_dir"),
        ({"data_dir": "/"}, "data_dir"),
        ({"host": "a b"}, "host"),
        ({"http_port": 0}, "http_port"),
        ({"grpc_port": 70000}, "grpc_port"),
        ({"grpc_port": 6006}, "grpc_port"),
        ({"extra_env": (("PHOENIX_ENABLE_AUTH", "false"),)}, "extra_env"),
        ({"extra_env": (("PHOENIX_SECRET", "x"),)}, "extra_env"),
        ({"extra_env": (("lower", "x"),)}, "extra_env"),
        ({"extra_env": (("PHOENIX_X", "$(reboot)"),)}, "extra_env"),
        ({"phoenix_version": "latest"}, "phoenix_version"),
        ({"ingest_key_kms_key_id": "bad key"}, "ingest_key_kms_key_id"),
    ],
)
def test_config_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CFG, **changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"interval_minutes": 0}, "interval_minutes"),
        ({"interval_minutes": -5}, "interval_minutes"),
        ({"interval_minutes": 1441}, "interval_minutes"),
        ({"bucket": "Bad_Bucket"}, "backup.bucket"),
        ({"prefix": "/leading"}, "backup.prefix"),
        ({"prefix": "a/../b"}, "backup.prefix"),
        ({"region": "nowhere"}, "backup.region"),
    ],
)
def test_backup_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(BACKUP, **changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"grpc_node_port": 4317}, "grpc_node_port"),
        ({"grpc_node_port": 40000}, "grpc_node_port"),
        ({"refresh_minutes": 0}, "refresh_minutes"),
        ({"restart_units": ("vllm; reboot",)}, "restart_units"),
        ({"env_file": "relative"}, "env_file"),
        ({"ingest_key_parameter": "a b"}, "ingest_key_parameter"),
    ],
)
def test_client_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CLIENT, **changes)


def test_extra_env_plain_values_are_passed() -> None:
    cfg = dataclasses.replace(CFG, extra_env=(("PHOENIX_LOGGING_LEVEL", "info"),))
    assert phoenix.server_environment(cfg)["PHOENIX_LOGGING_LEVEL"] == "info"
    assert "Environment=PHOENIX_LOGGING_LEVEL=info" in phoenix.unit_file(cfg).content


# --- producers in GCP sites: the ingest key from Secret Manager, delivered by the stack's gate ----------------


def test_gcp_client_reads_the_key_from_secret_manager_never_ssm(tmp_path: Path) -> None:
    assert phoenix.client_env_command(GCP_CLIENT) == [
        f"{SCRIPT_DIR}/phoenix-client-env.sh",
        phoenix.CLIENT_ENV_FILE,
        "http://localhost:30201",
        "lmrun-vllm.service",
    ]
    files = {f.path: f.content for f in phoenix.client_files(GCP_CLIENT)}
    script = files[f"{SCRIPT_DIR}/phoenix-client-env.sh"]
    assert script == phoenix.client_env_script(GCP_CLIENT).content
    assert (
        f"FETCH_KEY=({SCRIPT_DIR}/gcp-secret-get.sh lmrun-test-project mesh-sites-gcp-a-phoenix-ingest-key "
        f"{phoenix.CLIENT_ENV_FILE}.key)\n"
    ) in script
    assert "aws " not in script and "ssm" not in script.lower()
    service = files[f"/etc/systemd/system/{phoenix.CLIENT_ENV_UNIT}"]
    assert "from Secret Manager" in service and "SSM" not in service
    assert f"ExecStart={phoenix.client_env_snippet(GCP_CLIENT)}" in service
    # One refresher for every store: only the header differs.
    ssm_script = phoenix.client_env_script(CLIENT).content
    assert "ssm-get.sh" in ssm_script and "gcp-secret-get.sh" not in ssm_script
    assert ssm_script[ssm_script.index("\nset -e") :] == script[script.index("\nset -e") :]
    paths = []
    for name, text in (("ssm", ssm_script), ("gcp", script)):
        path = tmp_path / f"{name}-phoenix-client-env.sh"
        path.write_text(text)
        paths.append(path)
    assert_shellcheck_clean(paths)


def _fake_bin(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _install(script: WriteFile, path: Path, lib: Path) -> Path:
    """``script`` at ``path``, its calls to the helpers of ``SCRIPT_DIR`` pointed at ``lib``."""
    path.write_text(script.content.replace(f"{SCRIPT_DIR}/", f"{lib}/"))
    path.chmod(0o755)
    return path


def test_gcp_client_writes_the_env_file_and_restarts_vllm_only_on_change(tmp_path: Path) -> None:
    scripts, bin_dir = tmp_path / "lib", tmp_path / "bin"
    log = tmp_path / "calls.log"
    # Stand-ins: gcp-secret-get.sh (PROJECT SECRET DEST) writes the key with a trailing newline, as Secret
    # Manager returns what the gate printed; systemctl records what it was asked to do.
    _fake_bin(scripts, "gcp-secret-get.sh", f'echo "get $1 $2" >>"{log}"\nprintf \'%s\\n\' "$FAKE_KEY" >"$3"')
    _fake_bin(bin_dir, "systemctl", f'echo "systemctl $*" >>"{log}"')
    _fake_bin(bin_dir, "aws", f'echo "aws $*" >>"{log}"\nexit 1')
    env_file = tmp_path / "etc" / "phoenix-client.env"
    client = dataclasses.replace(GCP_CLIENT, env_file=str(env_file))
    script = _install(phoenix.client_env_script(client), tmp_path / "phoenix-client-env.sh", scripts)
    argv = [str(script), *phoenix.client_env_command(client)[1:]]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_KEY": KEY}
    for _ in range(2):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    assert phoenix.parse_env_file(env_file.read_text()) == phoenix.client_environment("http://localhost:30201", KEY)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    calls = log.read_text().splitlines()
    assert calls.count("get lmrun-test-project mesh-sites-gcp-a-phoenix-ingest-key") == 2
    assert calls.count("systemctl try-restart lmrun-vllm.service") == 1, "an unchanged key restarts nothing"
    assert not [c for c in calls if c.startswith("aws")]
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["phoenix-client.env"], "no key file left behind"
    # A failed read keeps the old file and fails loudly.
    result = subprocess.run(argv, env={**env, "FAKE_KEY": ""}, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "is empty" in result.stderr
    assert phoenix.parse_env_file(env_file.read_text())[phoenix.HEADERS_ENV] == f"authorization=Bearer%20{KEY}"


def test_gcp_client_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^project:"):
        SecretManagerStore("Bad_Project")
    # A name is checked by the store it is read from: an SSM parameter path is no Secret Manager secret id.
    with pytest.raises(ValueError, match=r"^ingest_key_parameter:"):
        dataclasses.replace(GCP_CLIENT, ingest_key_parameter="/lmrun/x/phoenix/ingest-key")
    with pytest.raises(ValueError, match=r"^ingest_key_parameter:"):
        dataclasses.replace(CLIENT, store=SecretManagerStore("lmrun-test-project"))


def test_ingest_key_gate_waits_past_the_placeholder_and_prints_only_the_key(tmp_path: Path) -> None:
    parameter = "/lmrun/global/phoenix/ingest-key"
    script = readiness.ingest_key_gate_script(region=REGION, parameter=parameter, timeout_seconds=30, interval=1)
    kubeconfig = readiness.kubeconfig_gate_script(region=REGION, parameter="/lmrun/global/k3s/kubeconfig")
    paths = []
    for name, text in (("ingest", script), ("kubeconfig", kubeconfig)):
        path = tmp_path / f"{name}-gate.sh"
        path.write_text(text)
        paths.append(path)
    assert_shellcheck_clean(paths, shell="sh")
    assert f"PLACEHOLDER={readiness.PARAMETER_PLACEHOLDER}" in script
    # A stand-in AWS CLI: nothing, then the placeholder, then the key the Phoenix node minted.
    bin_dir, count = tmp_path / "bin", tmp_path / "count"
    _fake_bin(
        bin_dir,
        "aws",
        f"""n=$(cat "{count}" 2>/dev/null || echo 0); echo $((n + 1)) >"{count}"
[ "$*" = "ssm get-parameter --region {REGION} --name {parameter} --with-decryption --query Parameter.Value \
--output text" ] || exit 9
case $n in 0) exit 254 ;; 1) echo {readiness.PARAMETER_PLACEHOLDER} ;; *) echo {KEY} ;; esac""",
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{KEY}\n" and count.read_text().strip() == "3"
    # Bounded: a node that never publishes fails the gate with a message, not a hang.
    _fake_bin(bin_dir, "aws", f"echo {readiness.PARAMETER_PLACEHOLDER}")
    stuck = readiness.ingest_key_gate_script(region=REGION, parameter=parameter, timeout_seconds=1, interval=1)
    result = subprocess.run(["/bin/sh", "-c", stuck], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert "did not publish an ingest key" in result.stderr
    with pytest.raises(ValueError, match="positive"):
        readiness.ingest_key_gate_script(region=REGION, parameter=parameter, interval=0)


def test_kubeconfig_gate_waits_for_a_kubeconfig_and_points_it_at_the_server_url(tmp_path: Path) -> None:
    parameter = "/lmrun/global/k3s/kubeconfig"
    kubeconfig = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.10:6443\n  name: default\n"
    bin_dir, count = tmp_path / "bin", tmp_path / "count"
    # Nothing, then the placeholder the stack creates the parameter with, then the server's kubeconfig.
    _fake_bin(
        bin_dir,
        "aws",
        f"""n=$(cat "{count}" 2>/dev/null || echo 0); echo $((n + 1)) >"{count}"
case $n in 0) exit 254 ;; 1) echo {readiness.PARAMETER_PLACEHOLDER} ;; *) printf '%s' '{kubeconfig}' ;; esac""",
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for server_url, server in (
        (None, "https://10.0.0.10:6443"),
        ("https://203.0.113.7:6443", "https://203.0.113.7:6443"),
    ):
        count.unlink(missing_ok=True)
        script = readiness.kubeconfig_gate_script(
            region=REGION, parameter=parameter, server_url=server_url, timeout_seconds=30, interval=1
        )
        result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == kubeconfig.replace("https://10.0.0.10:6443", server)
        assert count.read_text().strip() == "3"
    _fake_bin(bin_dir, "aws", f"echo {readiness.PARAMETER_PLACEHOLDER}")
    stuck = readiness.kubeconfig_gate_script(region=REGION, parameter=parameter, timeout_seconds=1, interval=1)
    result = subprocess.run(["/bin/sh", "-c", stuck], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert f"did not publish its kubeconfig to {parameter}" in result.stderr
