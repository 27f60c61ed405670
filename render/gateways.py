"""User data of the WireGuard gateways (the hub, site gateways): fetch the config from the gateway's secret
store, bring the tunnel up with the library's bootstrap script, keep it current."""

from __future__ import annotations

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, systemd_unit, vm_script
from lmrun.render.secret_store import SecretStore
from lmrun.render.wireguard import WireGuardConfigError, render_bootstrap_script

GATEWAY_CONFIG_PATH = "/run/lmrun/wg0.conf"
"""Where a gateway's fetched config lands (tmpfs) before the bootstrap script installs it."""
REFRESH_UNIT = "lmrun-wireguard-refresh.service"
REFRESH_TIMER = "lmrun-wireguard-refresh.timer"


def render_gateway_user_data(
    *, store: SecretStore, config_secret: str, description: str, refresh_minutes: int = 2
) -> str:
    """``#cloud-config`` for a gateway whose config (keys included) is the secret ``config_secret`` of
    ``store``: fetch it with the store's helper (into ``GATEWAY_CONFIG_PATH``), bring the tunnel up, and
    re-fetch every ``refresh_minutes`` so an added site or a rotated key is applied without replacing the VM
    (the tunnel restarts only when the config changed). ``description`` names the gateway in units and
    messages (``WireGuard hub gateway``). Contains no secret: safe as plain user data."""
    store.check_name("config_secret", config_secret)
    if isinstance(refresh_minutes, bool) or not isinstance(refresh_minutes, int) or not 1 <= refresh_minutes <= 60:
        raise WireGuardConfigError("refresh_minutes", f"{refresh_minutes!r} must be 1..60")
    bootstrap = WriteFile(
        f"{SCRIPT_DIR}/wireguard-bootstrap.sh",
        render_bootstrap_script(config_path=GATEWAY_CONFIG_PATH, description=description),
        "0755",
    )
    fetch_argv = store.fetch_argv(config_secret, GATEWAY_CONFIG_PATH)
    refresh = vm_script("wireguard-refresh.sh", {"FETCH_CONFIG": fetch_argv, "FETCHED": GATEWAY_CONFIG_PATH})
    service = systemd_unit(
        {
            "Unit": [
                ("Description", f"Apply the {description} config from {store.label}"),
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
            store.fetch_script,
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
        # A first fetch that fails (the secret not written yet) is retried by the timer: enable it regardless.
        stop_at_first_failure=False,
    )
