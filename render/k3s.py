"""K3s bootstrap as cloud-init: the server in the main region and the agents on every other VM.

No secret ever appears in the rendered text. The server (in the main region, AWS by design) reads its two tokens
from SSM Parameter Store (SecureStrings) by parameter *name* with its instance role at boot — the server token
(``--token-file``: cluster admin, read by the server alone) and the agent token (``--agent-token-file``: joins agents,
never servers; K3s docs, "k3s server": ``--agent-token-file``, "File containing the agent secret") — and writes a
kubeconfig back to a parameter so Pulumi can read it without SSH: the ``lmrun-deployer`` ServiceAccount's (a
token that does not expire, allowed only the Services and DaemonSets of the mesh's namespace,
:func:`lmrun.render.kubernetes.deployer_manifests`); the admin kubeconfig never leaves the server. An agent
reads the agent token (never the server token) by name from the secret store its config is given
(:class:`lmrun.render.secret_store.SecretStore`: SSM for AWS VMs, Secret Manager for VMs in GCP sites), whose
fetch helper it installs.

Both tokens are generated passwords in K3s's *short* format: the first server of a cluster can only start with
one ("k3s token": the cluster CA hash of the secure format "cannot be known until after the server has generated
the self-signed cluster CA certificates"), and an agent given a short token trusts the CA the server presents on
its first connection (the mesh reaches the server over its private network or the WireGuard tunnel only).

Server state (datastore, certificates, and the node password) lives on a separate EBS volume mounted at
``STATE_MOUNT``; replacing the instance keeps the cluster because the fixed private IP, the tokens and the
state all come back. The volume is formatted only when it carries no filesystem signature at all.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmrun.domain.names import (
    LABEL_GPU,
    LABEL_NODE,
    LABEL_REGION,
    SERVER_NODE,
    SERVES_LABEL_PREFIX,
    serves_label,
)
from lmrun.domain.ports import K3S_API_PORT
from lmrun.domain.versions import K3S_VERSION
from lmrun.render.cloudinit import (
    SCRIPT_DIR,
    WriteFile,
    cloud_config,
    command_script,
    systemd_unit,
    vm_helper,
    vm_script,
)
from lmrun.render.kubernetes import DEPLOYER, DEPLOYER_TOKEN_SECRET, NAMESPACE, deployer_manifests, to_json_list
from lmrun.render.secret_store import SecretStore

API_PORT = K3S_API_PORT
STATE_MOUNT = "/var/lib/lmrun-state"
"""Mount point of the server's state volume."""
K3S_DATA_DIR = f"{STATE_MOUNT}/k3s"
SERVER_TOKEN_FILE = "/etc/rancher/k3s/lmrun-server-token"
"""Where the server keeps the fetched server token (0600, root) for its ``--token-file``."""
AGENT_TOKEN_FILE = "/etc/rancher/k3s/lmrun-agent-token"
"""Where the fetched agent token is kept (0600, root): the server's ``--agent-token-file``, an agent's
``--token-file``."""
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
"""The admin kubeconfig K3s writes (0600, root); it stays on the server."""
PUBLISH_KUBECONFIG_UNIT = "lmrun-publish-kubeconfig.service"
DEPLOYER_MANIFEST = f"{SCRIPT_DIR}/lmrun-deployer.json"
"""The deployer's namespace, ServiceAccount, token Secret, Role and RoleBinding, applied at every boot."""
SERVER_KUBECTL = ("k3s", "kubectl")
"""kubectl on the server, as root (it reads the admin kubeconfig)."""
NODE_REAPER_UNIT = "lmrun-node-reaper.service"
NODE_REAPER_TIMER = "lmrun-node-reaper.timer"
NODE_REAPER_EVERY = "2min"
"""How often the server removes the Nodes of VMs that are gone."""
NODE_NOT_READY_LIMIT_SECONDS = 6 * 3600
"""A node NotReady this long is removed even when no replacement rejoined (a VM removed from the stack, a
replacement that never found capacity). Long on purpose: a kubelet re-registers only when it restarts, so a
VM cut off by a longer outage rejoins only after a reboot or a ``systemctl restart k3s-agent``."""

_SSM_NAME = re.compile(r"^/?[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_LOCATION = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
_DEVICE = re.compile(r"^/dev/(sd|xvd)[b-z]$")
_VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?)?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([a-z0-9.\-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?$")
_DNS_PART = r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_PART}(\.{_DNS_PART})*$")
_DNS_1123 = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")


def _check(ok: bool, field_name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{field_name}: {value!r} is not {expected}")


def _check_ipv4(field_name: str, value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{field_name}: {value!r} is not an IPv4 address") from None


def check_ssm_parameter_name(field_name: str, value: str) -> None:
    """SSM parameter names: letters, digits, ``_.-/``, at most 1011 characters."""
    _check(len(value) <= 1011 and bool(_SSM_NAME.match(value)), field_name, value, "an SSM parameter name")


def check_region(field_name: str, value: str) -> None:
    _check(bool(_REGION.match(value)), field_name, value, "an AWS region name")


def check_location_region(field_name: str, value: str) -> None:
    """Where a VM runs, in any cloud (``us-east-1``, ``us-central1``): lowercase words of letters and digits
    joined by hyphens, a valid label value. Each cloud's spec rules check its own region names."""
    _check(
        isinstance(value, str) and len(value) <= 63 and bool(_LOCATION.match(value)),
        field_name,
        value,
        "a region name like 'us-east-1'",
    )


def check_label_value(field_name: str, value: str) -> None:
    _check(bool(_LABEL_VALUE.match(value)) and value != "", field_name, value, "a Kubernetes label value")


def _check_version(value: str) -> None:
    _check(bool(_K3S_VERSION.match(value)), "k3s_version", value, "a K3s release like 'v1.33.6+k3s1'")


@dataclass(frozen=True)
class K3sServerConfig:
    """What the server's user data needs: plain values and parameter names only."""

    node_ip: str
    """Fixed private IP of the server (from the main VPC's plan); also the API endpoint agents use."""
    ssm_region: str
    """Region of the SSM parameters (the main region)."""
    server_token_parameter: str
    """SecureString parameter holding the server token (only the server reads it)."""
    agent_token_parameter: str
    """SecureString parameter holding the agent token (agents join with it)."""
    kubeconfig_parameter: str
    """SecureString parameter the server writes Pulumi's kubeconfig to: the API's address and CA, and an exec
    plugin that reads ``credential_parameter`` (it holds no token itself)."""
    credential_parameter: str
    """SecureString parameter the server writes the lmrun-deployer token to, as an ``ExecCredential``."""
    credential_exec: tuple[str, ...]
    """The kubeconfig's exec plugin: a command printing ``credential_parameter``'s value, run by whoever uses
    the kubeconfig with their own credentials (:meth:`lmrun.aws.secret_store.SsmParameterStore.client_read_argv`)."""
    state_device_name: str = "/dev/sdf"
    """Device name the state volume is attached at."""
    state_volume_id: str | None = None
    """EBS volume id of the state volume; on Nitro instances the NVMe serial, the surest way to find it."""
    tls_sans: tuple[str, ...] = ()
    """Extra names/IPs for the API certificate (the node IP is always included by K3s)."""
    kubeconfig_kms_key_id: str | None = None
    """KMS key for the kubeconfig parameter; None uses the account's ``alias/aws/ssm``."""
    k3s_version: str = K3S_VERSION

    def __post_init__(self) -> None:
        _check_ipv4("node_ip", self.node_ip)
        check_region("ssm_region", self.ssm_region)
        check_ssm_parameter_name("server_token_parameter", self.server_token_parameter)
        check_ssm_parameter_name("agent_token_parameter", self.agent_token_parameter)
        if self.server_token_parameter == self.agent_token_parameter:
            raise ValueError("agent_token_parameter: must not be the server token's parameter (agents would hold it)")
        check_ssm_parameter_name("kubeconfig_parameter", self.kubeconfig_parameter)
        check_ssm_parameter_name("credential_parameter", self.credential_parameter)
        _check(
            bool(self.credential_exec) and all(arg and "\n" not in arg for arg in self.credential_exec),
            "credential_exec",
            self.credential_exec,
            "a command and its arguments",
        )
        _check(
            bool(_DEVICE.match(self.state_device_name)),
            "state_device_name",
            self.state_device_name,
            "an EBS device name like '/dev/sdf'",
        )
        if self.state_volume_id is not None:
            _check(
                bool(_VOLUME_ID.match(self.state_volume_id)),
                "state_volume_id",
                self.state_volume_id,
                "an EBS volume id",
            )
        for san in self.tls_sans:
            try:
                ipaddress.ip_address(san)
            except ValueError:
                _check(bool(_HOSTNAME.match(san)), "tls_sans", san, "a DNS name or IP address")
        if self.kubeconfig_kms_key_id is not None:
            _check(
                bool(re.fullmatch(r"[A-Za-z0-9:/_\-]+", self.kubeconfig_kms_key_id)),
                "kubeconfig_kms_key_id",
                self.kubeconfig_kms_key_id,
                "a KMS key id, ARN or alias",
            )
        _check_version(self.k3s_version)

    @property
    def api_endpoint(self) -> str:
        return f"https://{self.node_ip}:{API_PORT}"


@dataclass(frozen=True)
class K3sAgentConfig:
    """What an agent's user data needs: plain values and parameter names only."""

    server_ip: str
    """Private IP of the K3s server."""
    store: SecretStore
    """Where the VM reads its secrets (the agent token here); its fetch helper is installed on the VM."""
    token_parameter: str
    """Name of the agent token in ``store`` (never the server token: that one is cluster admin)."""
    node_name: str
    """The mesh's name for this node: the ``lmrun.io/node`` label that services pin to."""
    region: str
    """Where the VM runs (an AWS or a GCP region): the ``lmrun.io/region`` label."""
    gpu: str | None = None
    """GPU model for the ``lmrun.io/gpu`` label; None on CPU-only VMs (label omitted)."""
    node_ip: str | None = None
    """Pin the node IP K3s advertises; None lets K3s pick the primary interface's address."""
    extra_labels: tuple[tuple[str, str], ...] = field(default=())
    serves: tuple[str, ...] = ()
    """Services this VM is a replica of: it registers ``serves.lmrun.io/<service>=true`` for each, which is what
    the services' readiness proxies select (:mod:`lmrun.render.kubernetes`)."""
    node_taints: tuple[str, ...] = ()
    """``key=value:Effect`` taints the node registers with (``--node-taint``): only pods tolerating them land."""
    default_runtime: str | None = None
    """containerd's default runtime (``--default-runtime``, e.g. ``nvidia`` on a GPU pool node); None: K3s's."""
    k3s_version: str = K3S_VERSION

    def __post_init__(self) -> None:
        _check_ipv4("server_ip", self.server_ip)
        for taint in self.node_taints:
            key, _, rest = taint.partition("=")
            value, _, effect = rest.partition(":")
            _check(
                bool(_LABEL_KEY.match(key))
                and bool(_LABEL_VALUE.match(value))
                and effect in ("NoSchedule", "PreferNoSchedule", "NoExecute"),
                "node_taints",
                taint,
                "a taint like 'key=value:NoSchedule'",
            )
        if self.default_runtime is not None:
            _check(
                bool(_DNS_1123.match(self.default_runtime)), "default_runtime", self.default_runtime, "a runtime name"
            )
        self.store.check_name("token_parameter", self.token_parameter)
        check_label_value("node_name", self.node_name)
        check_location_region("region", self.region)
        if self.gpu is not None:
            check_label_value("gpu", self.gpu)
        if self.node_ip is not None:
            _check_ipv4("node_ip", self.node_ip)
        for key, value in self.extra_labels:
            _check(bool(_LABEL_KEY.match(key)), "extra_labels", key, "a Kubernetes label key")
            check_label_value("extra_labels", value)
            if key in (LABEL_NODE, LABEL_GPU, LABEL_REGION) or key.startswith(SERVES_LABEL_PREFIX):
                raise ValueError(f"extra_labels: {key!r} is set by lmrun itself")
        for service in self.serves:
            _check(bool(_LABEL_KEY.match(serves_label(service))), "serves", service, "a service name")
        _check_version(self.k3s_version)

    @property
    def labels(self) -> dict[str, str]:
        labels = {LABEL_NODE: self.node_name, LABEL_REGION: self.region}
        if self.gpu is not None:
            labels[LABEL_GPU] = self.gpu
        labels.update(dict(self.extra_labels))
        labels.update({serves_label(service): "true" for service in sorted(self.serves)})
        return labels


# --- shell pieces shared by server and agents ---------------------------------------------------------------

SSM_GET_SCRIPT = vm_script("ssm-get.sh")
"""``ssm-get.sh REGION PARAMETER_NAME DEST``: a (SecureString) parameter into a 0600 file, with retries."""

K3S_INSTALL_SCRIPT = vm_script("k3s-install.sh")
"""``k3s-install.sh VERSION server|agent [K3S FLAGS...]``: the pinned release's own install script."""

MOUNT_VOLUME_SCRIPT = vm_script("mount-volume.sh")
"""``mount-volume.sh DEVICE_NAME VOLUME_ID|"" MOUNT_POINT LABEL``: find, format if blank, mount by UUID."""


def _publish_kubeconfig_script(cfg: K3sServerConfig) -> WriteFile:
    put = ["--type", "SecureString", "--overwrite", "--tier", "Intelligent-Tiering"]
    if cfg.kubeconfig_kms_key_id is not None:
        put += ["--key-id", cfg.kubeconfig_kms_key_id]
    return vm_script(
        "publish-kubeconfig.sh",
        {
            "KUBECTL": SERVER_KUBECTL,
            "MANIFEST": DEPLOYER_MANIFEST,
            "NAMESPACE": NAMESPACE,
            "ACCOUNT": DEPLOYER,
            "TOKEN_SECRET": DEPLOYER_TOKEN_SECRET,
            "API_ENDPOINT": cfg.api_endpoint,
            "REGION": cfg.ssm_region,
            "KUBECONFIG_PARAMETER": cfg.kubeconfig_parameter,
            "CREDENTIAL_PARAMETER": cfg.credential_parameter,
            "EXEC_COMMAND": cfg.credential_exec[0],
            "EXEC_ARGS": json.dumps(list(cfg.credential_exec[1:])),  # one line of YAML
            "PUT_OPTIONS": put,
        },
    )


def publish_kubeconfig_unit() -> WriteFile:
    unit = systemd_unit(
        {
            "Unit": [
                ("Description", "Publish the lmrun-deployer kubeconfig to SSM Parameter Store"),
                ("After", "k3s.service network-online.target"),
                ("Wants", "network-online.target"),
                ("Requires", "k3s.service"),
            ],
            "Service": [
                ("Type", "oneshot"),
                ("ExecStart", f"{SCRIPT_DIR}/publish-kubeconfig.sh"),
                ("Restart", "on-failure"),
                ("RestartSec", "30"),
            ],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )
    return WriteFile(f"/etc/systemd/system/{PUBLISH_KUBECONFIG_UNIT}", unit)


def node_reaper_files(not_ready_limit_seconds: int = NODE_NOT_READY_LIMIT_SECONDS) -> list[WriteFile]:
    """``node-reaper.sh``, its helper, and the service and timer that run it on the server."""
    if not_ready_limit_seconds <= 0:
        raise ValueError(f"not_ready_limit_seconds: {not_ready_limit_seconds} must be positive")
    script = vm_script(
        "node-reaper.sh",
        {"KUBECTL": SERVER_KUBECTL, "LABEL": LABEL_NODE, "MAX_NOT_READY": not_ready_limit_seconds},
    )
    service = systemd_unit(
        {
            "Unit": [("Description", "Remove the K3s Nodes of mesh VMs that are gone"), ("Requires", "k3s.service")],
            "Service": [("Type", "oneshot"), ("ExecStart", f"{SCRIPT_DIR}/node-reaper.sh")],
        }
    )
    timer = systemd_unit(
        {
            "Unit": [("Description", f"Remove gone mesh Nodes every {NODE_REAPER_EVERY}")],
            "Timer": [("OnBootSec", "5min"), ("OnUnitActiveSec", NODE_REAPER_EVERY), ("Unit", NODE_REAPER_UNIT)],
            "Install": [("WantedBy", "timers.target")],
        }
    )
    return [
        script,
        vm_helper("node_reaper.py"),
        WriteFile(f"/etc/systemd/system/{NODE_REAPER_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{NODE_REAPER_TIMER}", timer),
    ]


def server_flags(cfg: K3sServerConfig) -> list[str]:
    """``k3s server`` flags, in order."""
    flags = [
        "--node-ip",
        cfg.node_ip,
        "--advertise-address",
        cfg.node_ip,
        "--disable",
        "traefik",
        "--write-kubeconfig-mode",
        "0600",
        "--data-dir",
        K3S_DATA_DIR,
        "--token-file",
        SERVER_TOKEN_FILE,
        "--agent-token-file",
        AGENT_TOKEN_FILE,
        "--node-label",
        f"{LABEL_NODE}={SERVER_NODE}",
    ]
    for san in (cfg.node_ip, *cfg.tls_sans):
        flags += ["--tls-san", san]
    return flags


def agent_flags(cfg: K3sAgentConfig) -> list[str]:
    """``k3s agent`` flags, in order."""
    # --with-node-id: a new VM (a fresh disk) registers under a new node name even where the cloud reuses the
    # hostname (a GCP group recreating its instance, a fixed private IP), so K3s never rejects it as a duplicate
    # and the node reaper removes the Node it replaced; a reboot keeps the id (/etc/rancher/node/id).
    flags = ["--server", f"https://{cfg.server_ip}:{API_PORT}", "--token-file", AGENT_TOKEN_FILE, "--with-node-id"]
    if cfg.node_ip is not None:
        flags += ["--node-ip", cfg.node_ip]
    for key, value in cfg.labels.items():
        flags += ["--node-label", f"{key}={value}"]
    for taint in cfg.node_taints:
        flags += ["--node-taint", taint]
    if cfg.default_runtime is not None:
        flags += ["--default-runtime", cfg.default_runtime]
    return flags


def server_files(cfg: K3sServerConfig) -> list[WriteFile]:
    mount = [cfg.state_device_name, cfg.state_volume_id or "", STATE_MOUNT, "lmrun-state"]
    bootstrap = vm_script(
        "k3s-server-bootstrap.sh",
        {
            "STATE_MOUNT": STATE_MOUNT,
            "MOUNT_STATE": [f"{SCRIPT_DIR}/mount-volume.sh", *mount],
            "FETCH_SERVER_TOKEN": [
                f"{SCRIPT_DIR}/ssm-get.sh",
                cfg.ssm_region,
                cfg.server_token_parameter,
                SERVER_TOKEN_FILE,
            ],
            "FETCH_AGENT_TOKEN": [
                f"{SCRIPT_DIR}/ssm-get.sh",
                cfg.ssm_region,
                cfg.agent_token_parameter,
                AGENT_TOKEN_FILE,
            ],
            "INSTALL_K3S": [f"{SCRIPT_DIR}/k3s-install.sh", cfg.k3s_version, "server", *server_flags(cfg)],
            "UNITS": [PUBLISH_KUBECONFIG_UNIT, NODE_REAPER_TIMER],
        },
    )
    return [
        SSM_GET_SCRIPT,
        MOUNT_VOLUME_SCRIPT,
        K3S_INSTALL_SCRIPT,
        WriteFile(DEPLOYER_MANIFEST, to_json_list(deployer_manifests())),
        _publish_kubeconfig_script(cfg),
        publish_kubeconfig_unit(),
        *node_reaper_files(),
        bootstrap,
    ]


def agent_files(cfg: K3sAgentConfig) -> list[WriteFile]:
    """The store's fetch helper, the K3s installer and the bootstrap that fetches the agent token and joins."""
    fetch_token = cfg.store.fetch_argv(cfg.token_parameter, AGENT_TOKEN_FILE)
    bootstrap = command_script(
        "k3s-agent-bootstrap.sh",
        [fetch_token, [f"{SCRIPT_DIR}/k3s-install.sh", cfg.k3s_version, "agent", *agent_flags(cfg)]],
    )
    return [cfg.store.fetch_script, K3S_INSTALL_SCRIPT, bootstrap]


def agent_runcmd() -> list[list[str]]:
    return [[f"{SCRIPT_DIR}/k3s-agent-bootstrap.sh"]]


def render_server_user_data(
    cfg: K3sServerConfig,
    extra_files: Sequence[WriteFile] = (),
    extra_runcmd: Sequence[Sequence[str]] = (),
) -> str:
    """``#cloud-config`` for the K3s server; ``extra_*`` run after K3s is up and the state volume mounted
    (e.g. Phoenix placed on the server)."""
    return cloud_config(
        write_files=[*server_files(cfg), *extra_files],
        runcmd=[[f"{SCRIPT_DIR}/k3s-server-bootstrap.sh"], *extra_runcmd],
    )


def render_agent_user_data(cfg: K3sAgentConfig) -> str:
    """``#cloud-config`` for a VM that only joins as an agent (clients, Phoenix)."""
    return cloud_config(write_files=agent_files(cfg), runcmd=agent_runcmd())
