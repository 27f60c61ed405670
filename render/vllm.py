"""GPU node bootstrap: join K3s as an agent and run vLLM as a systemd service on the VM itself.

vLLM is installed pinned into its own virtualenv, on the CPython the mesh provisions (:mod:`lmrun.render.runtime`:
the image's ``python3`` is too old for it), and run by a dedicated ``vllm`` user. The model is served
at a pinned revision under the name clients send as ``model``. A Hugging Face token, when configured, is
read by *name* from the node's secret store (the K3s agent's, :mod:`lmrun.render.secret_store`) into a
root-only EnvironmentFile at every start of vLLM (``ExecStartPre``); it never appears in user data. The secret
may hold :data:`~lmrun.domain.secrets.HF_TOKEN_UNSET` (no token configured yet): vLLM then runs without one,
and a token stored later reaches it at its next start, without a new VM.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from lmrun.domain.names import VLLM_MANAGED_FLAGS
from lmrun.domain.secrets import HF_TOKEN_UNSET
from lmrun.domain.versions import VLLM_VERSION
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, command_script, systemd_unit, vm_script
from lmrun.render.k3s import K3sAgentConfig, agent_files, agent_runcmd
from lmrun.render.phoenix import PhoenixClientConfig, client_files, client_runcmd
from lmrun.render.routes import RouteMtu, route_mtu_files, route_mtu_runcmd
from lmrun.render.runtime import UV_VENV, UV_VENV_SCRIPT
from lmrun.render.script_files import HeaderValue
from lmrun.render.secret_store import SecretStore, check_same_store

VENV = "/opt/lmrun/vllm"
HF_HOME = "/var/lib/lmrun/hf"
ENV_FILE = "/etc/lmrun/vllm.env"
UNIT_NAME = "lmrun-vllm.service"

_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,254}$")
_SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}$")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([.\-]?(post|rc|a|b)\d+)?$")
_OTLP = re.compile(r"^(grpc|https?)://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~/\-]*)?$")

MANAGED_FLAGS = VLLM_MANAGED_FLAGS


@dataclass(frozen=True)
class VllmConfig:
    """The vLLM service of one GPU node."""

    model: str
    """Hugging Face model id, e.g. ``Qwen/Qwen2.5-7B-Instruct``."""
    revision: str
    """Pinned model revision (commit sha or tag)."""
    served_model_name: str
    """The name clients send as ``model``."""
    app_port: int = 8000
    extra_args: tuple[str, ...] = ()
    """More ``vllm serve`` arguments, passed verbatim (each element one argv entry)."""
    tensor_parallel_size: int = 1
    """GPUs to shard over; >1 adds ``--tensor-parallel-size`` unless ``extra_args`` already sets it."""
    hf_token_parameter: str | None = None
    """Name of the secret with a Hugging Face token in ``store``, read at every vLLM start (it may hold
    :data:`~lmrun.domain.secrets.HF_TOKEN_UNSET`: no token); None: no secret is read at all."""
    store: SecretStore | None = None
    """Where ``hf_token_parameter`` lives (the K3s agent's store); required with it."""
    otlp_traces_endpoint: str | None = None
    """OTLP/gRPC endpoint for request spans (e.g. ``http://localhost:30201``); None omits tracing."""
    otlp_env_file: str | None = None
    """EnvironmentFile with the exporter's auth header (written by the Phoenix client refresher); optional
    at start ('-'), so vLLM serves before Phoenix has published a key."""
    vllm_version: str = VLLM_VERSION

    def __post_init__(self) -> None:
        if not _MODEL.match(self.model):
            raise ValueError(f"model: {self.model!r} is not a Hugging Face model id like 'org/name'")
        if not _REVISION.match(self.revision) or ".." in self.revision:
            raise ValueError(f"revision: {self.revision!r} is not a model revision (commit sha, tag or branch)")
        if not _SERVED_NAME.match(self.served_model_name):
            raise ValueError(f"served_model_name: {self.served_model_name!r} is not a valid served model name")
        if not 1 <= self.app_port <= 65535:
            raise ValueError(f"app_port: {self.app_port} is outside 1-65535")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size: {self.tensor_parallel_size} must be at least 1")
        for arg in self.extra_args:
            if arg.split("=", 1)[0] in MANAGED_FLAGS:
                raise ValueError(f"extra_args: {arg!r} is set by lmrun itself (use the dedicated field)")
            if "\n" in arg or "\x00" in arg:
                raise ValueError(f"extra_args: {arg!r} contains a newline or NUL")
        if self.hf_token_parameter is not None:
            if self.store is None:
                raise ValueError("store: required when hf_token_parameter is set")
            self.store.check_name("hf_token_parameter", self.hf_token_parameter)
        if self.otlp_traces_endpoint is not None and not _OTLP.match(self.otlp_traces_endpoint):
            raise ValueError(f"otlp_traces_endpoint: {self.otlp_traces_endpoint!r} is not an OTLP URL")
        if not _VERSION.match(self.vllm_version):
            raise ValueError(f"vllm_version: {self.vllm_version!r} is not a pinned release like '0.33.0'")


def serve_args(cfg: VllmConfig) -> list[str]:
    """The full ``vllm serve`` argv (without the executable)."""
    args = [
        "serve",
        cfg.model,
        "--revision",
        cfg.revision,
        "--served-model-name",
        cfg.served_model_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(cfg.app_port),
    ]
    sets_tp = any(a.split("=", 1)[0] in ("--tensor-parallel-size", "-tp") for a in cfg.extra_args)
    if cfg.tensor_parallel_size > 1 and not sets_tp:
        args += ["--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    if cfg.otlp_traces_endpoint is not None:
        args += ["--otlp-traces-endpoint", cfg.otlp_traces_endpoint]
    return args + list(cfg.extra_args)


def serve_script(cfg: VllmConfig) -> WriteFile:
    """The ExecStart of the unit: a script, so the quoting is the shell's (shellcheck-able), not systemd's."""
    return command_script("vllm-serve.sh", [["exec", f"{VENV}/bin/vllm", *serve_args(cfg)]])


HF_TOKEN_FILE = "/run/lmrun/hf-token"
"""Where ``vllm-hf-token.sh`` fetches the Hugging Face token to (tmpfs) before it writes ``ENV_FILE``."""
HF_TOKEN_SCRIPT = f"{SCRIPT_DIR}/vllm-hf-token.sh"
"""vLLM's ``ExecStartPre``: the Hugging Face token into ``ENV_FILE`` at every start."""


def _hf_fetch_argv(cfg: VllmConfig) -> list[str] | None:
    """argv fetching the Hugging Face token into ``HF_TOKEN_FILE``; None when the node reads no token."""
    if cfg.hf_token_parameter is None or cfg.store is None:  # both or neither (__post_init__)
        return None
    return cfg.store.fetch_argv(cfg.hf_token_parameter, HF_TOKEN_FILE)


def hf_token_script(cfg: VllmConfig) -> WriteFile | None:
    """``vllm-hf-token.sh`` (the token, or none while the secret holds ``HF_TOKEN_UNSET``); None without a secret."""
    fetch = _hf_fetch_argv(cfg)
    if fetch is None:
        return None
    values: dict[str, HeaderValue] = {
        "ENV_FILE": ENV_FILE,
        "HF_TOKEN_FILE": HF_TOKEN_FILE,
        "UNSET": HF_TOKEN_UNSET,
        "HF_FETCH": fetch,
    }
    return vm_script("vllm-hf-token.sh", values)


def install_script(cfg: VllmConfig) -> WriteFile:
    """``vllm-install.sh``: user, pinned venv on the pinned CPython, then the unit."""
    values: dict[str, HeaderValue] = {
        "UV_VENV": UV_VENV,
        "VENV": VENV,
        "VLLM_VERSION": cfg.vllm_version,
        "HF_HOME": HF_HOME,
    }
    values["VLLM_UNIT"] = UNIT_NAME
    return vm_script("vllm-install.sh", values)


def unit_file(cfg: VllmConfig) -> WriteFile:
    env = [("Environment", f"HF_HOME={HF_HOME}"), ("Environment", "HF_HUB_DISABLE_TELEMETRY=1")]
    if cfg.otlp_traces_endpoint is not None:
        env += [
            ("Environment", f"OTEL_SERVICE_NAME={cfg.served_model_name}"),
            # Phoenix's OTLP/gRPC node port is plain TCP inside the mesh.
            ("Environment", "OTEL_EXPORTER_OTLP_TRACES_INSECURE=true"),
        ]
    unit = systemd_unit(
        {
            "Unit": [
                ("Description", f"vLLM serving {cfg.served_model_name} ({cfg.model}@{cfg.revision})"),
                ("After", "network-online.target"),
                ("Wants", "network-online.target"),
                # Keep retrying forever: a model download can fail transiently and the node has no other job.
                ("StartLimitIntervalSec", "0"),
            ],
            "Service": [
                ("Type", "simple"),
                ("User", "vllm"),
                ("Group", "vllm"),
                *env,
                # The leading '-' keeps the unit valid when no Hugging Face token is read at all.
                ("EnvironmentFile", f"-{ENV_FILE}"),
                # '+': as root (the file is root-only); systemd reads EnvironmentFile= after ExecStartPre ran.
                *([("ExecStartPre", f"+{HF_TOKEN_SCRIPT}")] if cfg.hf_token_parameter is not None else []),
                # The token fetch retries while IAM or the secret lag the boot (~10 minutes).
                *([("TimeoutStartSec", "15min")] if cfg.hf_token_parameter is not None else []),
                *([("EnvironmentFile", f"-{cfg.otlp_env_file}")] if cfg.otlp_env_file else []),
                ("ExecStart", f"{SCRIPT_DIR}/vllm-serve.sh"),
                ("Restart", "on-failure"),
                ("RestartSec", "15"),
                ("TimeoutStopSec", "60"),
                ("LimitNOFILE", "65536"),
                ("NoNewPrivileges", "true"),
                ("PrivateTmp", "true"),
            ],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )
    return WriteFile(f"/etc/systemd/system/{UNIT_NAME}", unit)


def gpu_node_files(agent: K3sAgentConfig | None, vllm: VllmConfig) -> list[WriteFile]:
    """The node's files: the K3s agent's (with its store's fetch helper), or without an agent the fetch
    helper of the store the Hugging Face token comes from, then vLLM's."""
    token = hf_token_script(vllm)
    if agent is not None:
        base = agent_files(agent)
    else:
        base = [vllm.store.fetch_script] if token is not None and vllm.store is not None else []
    return [
        *base,
        serve_script(vllm),
        unit_file(vllm),
        *([token] if token else []),
        UV_VENV_SCRIPT,
        install_script(vllm),
    ]


def render_gpu_node_user_data(
    agent: K3sAgentConfig | None,
    vllm: VllmConfig,
    tracing: PhoenixClientConfig | None = None,
    routes: Sequence[RouteMtu] = (),
) -> str:
    """``#cloud-config`` for a GPU node: K3s agent with the node labels, then vLLM as a systemd service.

    Without ``agent`` the node joins no cluster: a VM serving vLLM on ``vllm.app_port`` alone (it then
    installs the fetch helper of ``vllm.store`` itself, and cannot trace: Phoenix is reached through K3s).
    With ``tracing``, the Phoenix client refresher keeps vLLM's exporter credentials current (and restarts
    vLLM when they change); vLLM itself must then export to ``tracing.endpoint`` with ``tracing.env_file``.
    ``routes`` (paths narrower than the interface, :mod:`lmrun.render.routes`) are set before anything else.
    """
    if agent is not None and agent.gpu is None:
        raise ValueError("gpu: a GPU node's agent config must name its GPU (the lmrun.io/gpu label)")
    if agent is None and tracing is not None:
        raise ValueError("tracing: a node that joins no cluster cannot reach Phoenix's node port")
    # Only the agent's fetch helper is written: every secret of the node must come from the agent's store.
    if agent is not None and vllm.hf_token_parameter is not None and vllm.store is not None:
        check_same_store("store", "the Hugging Face token", vllm.store, agent.store)
    if agent is not None and tracing is not None:
        check_same_store("tracing", "the Phoenix ingest key", tracing.store, agent.store)
    if tracing is not None and (
        vllm.otlp_traces_endpoint != tracing.endpoint or vllm.otlp_env_file != tracing.env_file
    ):
        raise ValueError("tracing: vLLM must export to the tracing endpoint with its env file")
    files = [*route_mtu_files(routes), *gpu_node_files(agent, vllm), *(client_files(tracing) if tracing else [])]
    runcmd = [
        *route_mtu_runcmd(routes),
        *(agent_runcmd() if agent is not None else []),
        *(client_runcmd() if tracing is not None else []),
        [f"{SCRIPT_DIR}/vllm-install.sh"],
    ]
    return cloud_config(write_files=files, runcmd=runcmd)


def describe(cfg: VllmConfig) -> str:
    """One line for logs and the plan view."""
    return f"vllm=={cfg.vllm_version} {shlex.join(serve_args(cfg))}"
