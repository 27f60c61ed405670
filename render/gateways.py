"""User data of the WireGuard gateways (the hub in AWS, GCP site gateways): fetch the config from a secret
store, bring the tunnel up with the library's bootstrap script, keep it current."""

from __future__ import annotations

from collections.abc import Sequence

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, systemd_unit, vm_script
from lmrun.render.gcp import GCP_SECRET_GET_SCRIPT, check_gcp_project, check_secret_id, secret_get_argv
from lmrun.render.k3s import SSM_GET_SCRIPT, check_region, check_ssm_parameter_name
from lmrun.render.wireguard import WireGuardConfigError, render_bootstrap_script

GATEWAY_CONFIG_PATH = "/run/lmrun/wg0.conf"
"""Where a gateway's fetched config lands (tmpfs) before the bootstrap script installs it."""
REFRESH_UNIT = "lmrun-wireguard-refresh.service"
REFRESH_TIMER = "lmrun-wireguard-refresh.timer"


def render_gateway_user_data(
    *, fetch_script: WriteFile, fetch_argv: Sequence[str], store: str, description: str, refresh_minutes: int = 2
) -> str:
    """``#cloud-config`` for a gateway whose config (keys included) lives in a secret store: fetch it with
    ``fetch_argv`` (which writes ``GATEWAY_CONFIG_PATH``), bring the tunnel up, and re-fetch every
    ``refresh_minutes`` so an added site or a rotated key is applied without replacing the VM (the tunnel
    restarts only when the config changed). Contains no secret: safe as plain user data."""
    if isinstance(refresh_minutes, bool) or not isinstance(refresh_minutes, int) or not 1 <= refresh_minutes <= 60:
        raise WireGuardConfigError("refresh_minutes", f"{refresh_minutes!r} must be 1..60")
    bootstrap = WriteFile(
        f"{SCRIPT_DIR}/wireguard-bootstrap.sh",
        render_bootstrap_script(config_path=GATEWAY_CONFIG_PATH, description=description),
        "0755",
    )
    refresh = vm_script("wireguard-refresh.sh", {"FETCH_CONFIG": fetch_argv, "FETCHED": GATEWAY_CONFIG_PATH})
    service = systemd_unit(
        {
            "Unit": [
                ("Description", f"Apply the {description} config from {store}"),
                ("After", "network-online.target"),
                ("Wants", "network-online.target"),
            ],
            "Service": [("Type", "oneshot"), ("ExecStart", f"{SCRIPT_DIR}/wireguard-refresh.sh")],
        }
    )
    timer = systemd_unit(
        {
            "Unit": [("Description", f"Re-apply the {description} config")],
            "Timer": [("OnBootSec", "30s"), ("OnUnitActiveSec", f"{refresh_minutes}min"), ("Unit", REFRESH_UNIT)],
            "Install": [("WantedBy", "timers.target")],
        }
    )
    return cloud_config(
        write_files=[
            fetch_script,
            bootstrap,
            refresh,
            WriteFile(f"/etc/systemd/system/{REFRESH_UNIT}", service),
            WriteFile(f"/etc/systemd/system/{REFRESH_TIMER}", timer),
        ],
        runcmd=[
            [f"{SCRIPT_DIR}/wireguard-refresh.sh"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", REFRESH_TIMER],
        ],
    )


def render_hub_user_data(*, ssm_region: str, config_parameter: str, refresh_minutes: int = 2) -> str:
    """The hub gateway's user data: its config comes from an SSM SecureString, by name."""
    check_region("ssm_region", ssm_region)
    check_ssm_parameter_name("config_parameter", config_parameter)
    return render_gateway_user_data(
        fetch_script=SSM_GET_SCRIPT,
        fetch_argv=[f"{SCRIPT_DIR}/ssm-get.sh", ssm_region, config_parameter, GATEWAY_CONFIG_PATH],
        store="SSM",
        description="WireGuard hub gateway",
        refresh_minutes=refresh_minutes,
    )


def render_gcp_gateway_user_data(*, project: str, config_secret: str, refresh_minutes: int = 2) -> str:
    """A GCP site gateway's user data: its wg-quick config (private key included) comes from Secret
    Manager, by id, read with the VM's service account (see :func:`render_gateway_user_data`)."""
    check_gcp_project("project", project)
    check_secret_id("config_secret", config_secret)
    return render_gateway_user_data(
        fetch_script=GCP_SECRET_GET_SCRIPT,
        fetch_argv=secret_get_argv(project, config_secret, GATEWAY_CONFIG_PATH),
        store="Secret Manager",
        description="WireGuard GCP site gateway",
        refresh_minutes=refresh_minutes,
    )
