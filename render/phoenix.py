"""Phoenix observability node: pinned arize-phoenix as a systemd service, S3 backups, and trace-producer auth.

Storage: SQLite under ``PHOENIX_WORKING_DIR`` on the node's own EBS data volume is the default. Phoenix is
the only writer (one process on one VM), so SQLite's single-writer lock costs nothing here, and an embedded
database needs no extra service, subnet, password or bill; the volume outlives instance, AMI and Phoenix
version changes, and a file is simple to snapshot to S3. PostgreSQL (what Phoenix recommends for large
production loads) is optional: ``database_url_parameter`` names a SecureString holding
``PHOENIX_SQL_DATABASE_URL``; its backups are then the database's own (``backup`` must be None).

Secrets never appear in the rendered text. ``PHOENIX_SECRET``, ``PHOENIX_ADMIN_SECRET`` (and optionally the
initial admin password and the database URL) are read at boot by SSM parameter *name* into a root-only
EnvironmentFile that systemd reads before dropping to the ``phoenix`` user.

Ingestion auth (enabling auth makes Phoenix refuse every span that carries no valid bearer token):

* Trace producers do **not** get the admin secret: it authenticates as an admin (manage users, mint
  keys). At first boot, and again every ``INGEST_KEY_CHECK_MINUTES``, the Phoenix node runs
  ``phoenix-ingest-key.sh``: if the key in the ingest-key SSM parameter is missing or no longer accepted
  (new empty database, key revoked in the UI), it mints a *system API key* through Phoenix's REST API
  (``POST /v1/system/api_keys`` with the admin secret as bearer token) and writes it to that SecureString
  parameter. A system key can ingest and read but cannot mint keys or manage users. A key that still works
  is left alone, so producers are not restarted for nothing.
* Every producer (vLLM nodes, any mesh VM) runs ``phoenix-client-env.sh`` from a timer: it reads the key by
  name with its secret store's fetch helper (the argv comes in the script's header) and writes
  ``OTEL_EXPORTER_OTLP_TRACES_*`` into a root-only EnvironmentFile (header ``authorization=Bearer <key>``);
  when the content changed it restarts the given units, so a rotated key reaches them within one refresh
  interval. Failures exit non-zero (visible in the journal), never silently.

The Phoenix node's scripts rely on ``ssm-get.sh`` (``lmrun.render.k3s.SSM_GET_SCRIPT``), which it has as a K3s
agent or server; ``LMRUN_SCRIPT_DIR`` overrides where they look for it (tests). A producer reads the key from
the store of its :class:`PhoenixClientConfig` (:mod:`lmrun.render.secret_store`): the Phoenix node's own
parameter on AWS VMs; VMs that cannot read it (GCP sites) get a copy in their own store, which the stack keeps
current (a readiness gate waits for the node to publish the key).

Backups: the SQLite snapshot uses Python's ``sqlite3`` backup API (the same online-backup API as the
``sqlite3`` CLI's ``.backup``). Stock Ubuntu and Amazon Linux images do not ship the ``sqlite3`` CLI, while
Phoenix's own Python (the CPython the mesh provisions, :mod:`lmrun.render.runtime`) is always on the node; so
the scripts never depend on the CLI (the Python steps are ``phoenix_sqlite.py`` and ``phoenix_key_request.py``,
written next to the scripts).

The scripts and helpers are files under ``render/scripts/`` (:mod:`lmrun.render.script_files`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lmrun.domain.names import PHOENIX_NODE
from lmrun.domain.ports import (
    NODE_PORT_MAX,
    NODE_PORT_MIN,
    PHOENIX_GRPC_NODE_PORT,
    PHOENIX_GRPC_PORT,
    PHOENIX_HTTP_PORT,
    PHOENIX_UI_NODE_PORT,
)
from lmrun.domain.versions import PHOENIX_VERSION
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, sh_join, systemd_unit, vm_helper, vm_script
from lmrun.render.k3s import (
    MOUNT_VOLUME_SCRIPT,
    K3sAgentConfig,
    agent_files,
    agent_runcmd,
    check_region,
    check_ssm_parameter_name,
)
from lmrun.render.runtime import UV_VENV, UV_VENV_SCRIPT
from lmrun.render.secret_store import SecretStore

HTTP_PORT = PHOENIX_HTTP_PORT
GRPC_PORT = PHOENIX_GRPC_PORT
UI_NODE_PORT = PHOENIX_UI_NODE_PORT
GRPC_NODE_PORT = PHOENIX_GRPC_NODE_PORT

VENV = "/opt/lmrun/phoenix"
DATA_MOUNT = "/var/lib/lmrun-phoenix"
"""Mount point of the Phoenix data volume; ``PHOENIX_WORKING_DIR`` by default."""
DB_FILENAME = "phoenix.db"
"""Phoenix's SQLite file name inside ``PHOENIX_WORKING_DIR`` (``sqlite:///<dir>/phoenix.db``)."""
ENV_FILE = "/etc/lmrun/phoenix.env"
"""Root-only EnvironmentFile with the server's secrets."""
CLIENT_ENV_FILE = "/etc/lmrun/phoenix-client.env"
"""Root-only EnvironmentFile with a producer's OTLP settings (endpoint and auth header)."""
USER = "phoenix"
NODE_NAME = PHOENIX_NODE

UNIT_NAME = "lmrun-phoenix.service"
BACKUP_UNIT = "lmrun-phoenix-backup.service"
BACKUP_TIMER = "lmrun-phoenix-backup.timer"
INGEST_KEY_UNIT = "lmrun-phoenix-ingest-key.service"
INGEST_KEY_TIMER = "lmrun-phoenix-ingest-key.timer"
CLIENT_ENV_UNIT = "lmrun-phoenix-client-env.service"
CLIENT_ENV_TIMER = "lmrun-phoenix-client-env.timer"

INGEST_KEY_CHECK_MINUTES = 15
"""How often the Phoenix node re-checks that the published ingest key is still accepted."""
INGEST_KEY_NAME = "lmrun-ingest"
"""Name of the system API key in Phoenix's UI."""

SECRET_ENV = "PHOENIX_SECRET"
ADMIN_SECRET_ENV = "PHOENIX_ADMIN_SECRET"
ADMIN_PASSWORD_ENV = "PHOENIX_DEFAULT_ADMIN_INITIAL_PASSWORD"
DATABASE_URL_ENV = "PHOENIX_SQL_DATABASE_URL"
HEADERS_ENV = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""Client variable carrying ``authorization=Bearer%20<key>``; only ever in the client EnvironmentFile."""

MANAGED_ENV = frozenset(
    {
        "PHOENIX_HOST",
        "PHOENIX_PORT",
        "PHOENIX_GRPC_PORT",
        "PHOENIX_WORKING_DIR",
        "PHOENIX_ENABLE_AUTH",
        "PHOENIX_DEFAULT_RETENTION_POLICY_DAYS",
        "PHOENIX_TELEMETRY_ENABLED",
        "PHOENIX_AGENTS_DISABLE_BASH",
        SECRET_ENV,
        ADMIN_SECRET_ENV,
        ADMIN_PASSWORD_ENV,
        DATABASE_URL_ENV,
        "PHOENIX_POSTGRES_PASSWORD",
    }
)
"""Variables lmrun sets itself (or that carry secrets); ``extra_env`` may not set them."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+([.\-]?(post|rc|a|b)\d+)?$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9_.\-/]*$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_UNIT = re.compile(r"^[A-Za-z0-9@_.:\-]+\.(service|target)$")
_HOST = re.compile(r"^[A-Za-z0-9.\-:]+$")


def _check_port(field_name: str, value: int, low: int = 1, high: int = 65535) -> None:
    if not low <= value <= high:
        raise ValueError(f"{field_name}: {value} is outside {low}-{high}")


def _check_path(field_name: str, value: str) -> None:
    if not _ABS_PATH.match(value) or "/../" in f"{value}/" or value.rstrip("/") == "":
        raise ValueError(f"{field_name}: {value!r} is not an absolute path (letters, digits, '_.-/')")


def check_node_port(field_name: str, value: int) -> None:
    """Kubernetes NodePort range."""
    _check_port(field_name, value, NODE_PORT_MIN, NODE_PORT_MAX)


@dataclass(frozen=True)
class PhoenixBackup:
    """Where and how often the node snapshots its SQLite database."""

    bucket: str
    """S3 bucket of the stack (public access blocked, versioned, encrypted; lifecycle set by the stack)."""
    prefix: str
    """Key prefix the node's role may write; snapshots land under ``<prefix>/snapshots/``."""
    region: str
    """Region of the bucket."""
    interval_minutes: int = 60
    """Minutes between snapshots (>= 1, <= 1440). Each is a full gzipped copy of the database."""

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ValueError(f"backup.bucket: {self.bucket!r} is not an S3 bucket name")
        if not _PREFIX.match(self.prefix) or ".." in self.prefix.split("/"):
            raise ValueError(f"backup.prefix: {self.prefix!r} is not a key prefix like 'phoenix/dev'")
        check_region("backup.region", self.region)
        if isinstance(self.interval_minutes, bool) or not 1 <= self.interval_minutes <= 1440:
            raise ValueError(f"backup.interval_minutes: {self.interval_minutes!r} must be between 1 and 1440")

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix`` (no trailing slash)."""
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class PhoenixConfig:
    """The Phoenix node: plain values and SSM parameter names only."""

    ssm_region: str
    """Region of the SSM parameters (the main region)."""
    secret_parameter: str
    """SecureString with ``PHOENIX_SECRET`` (JWT signing; >= 32 chars, a digit and a lowercase letter)."""
    admin_secret_parameter: str
    """SecureString with ``PHOENIX_ADMIN_SECRET`` (bootstrap bearer token; same rules, differs from the secret)."""
    ingest_key_parameter: str
    """SecureString the node writes the producers' system API key to (created by the node, not Pulumi)."""
    admin_password_parameter: str | None = None
    """SecureString with the initial password of Phoenix's default ``admin`` user; None keeps Phoenix's
    well-known default until someone logs in, so set it."""
    database_url_parameter: str | None = None
    """SecureString with a PostgreSQL ``PHOENIX_SQL_DATABASE_URL``; None uses SQLite on the data volume."""
    backup: PhoenixBackup | None = None
    """S3 snapshots of the SQLite database; None disables them (required None with PostgreSQL)."""
    retention_days: int | None = 30
    """Default trace retention (``PHOENIX_DEFAULT_RETENTION_POLICY_DAYS``); None keeps traces forever."""
    data_dir: str = DATA_MOUNT
    """``PHOENIX_WORKING_DIR``: on the mounted data volume."""
    host: str = "0.0.0.0"
    """Listen address; the security group and the mesh decide who reaches it."""
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    extra_env: tuple[tuple[str, str], ...] = ()
    """More plain ``PHOENIX_*`` settings (no secrets: they land in the unit file)."""
    ingest_key_kms_key_id: str | None = None
    """KMS key for the ingest-key parameter; None uses ``alias/aws/ssm``."""
    phoenix_version: str = PHOENIX_VERSION

    def __post_init__(self) -> None:
        check_region("ssm_region", self.ssm_region)
        names = {
            "secret_parameter": self.secret_parameter,
            "admin_secret_parameter": self.admin_secret_parameter,
            "ingest_key_parameter": self.ingest_key_parameter,
        }
        if self.admin_password_parameter is not None:
            names["admin_password_parameter"] = self.admin_password_parameter
        if self.database_url_parameter is not None:
            names["database_url_parameter"] = self.database_url_parameter
        for field_name, value in names.items():
            check_ssm_parameter_name(field_name, value)
        values = list(names.values())
        dupes = sorted({n for n in values if values.count(n) > 1})
        if dupes:
            raise ValueError(f"ssm parameters: each secret needs its own parameter, {dupes} used twice")
        if self.database_url_parameter is not None and self.backup is not None:
            raise ValueError(
                "backup: S3 snapshots cover the SQLite database only; with database_url_parameter use the "
                "PostgreSQL server's own backups and set backup to None"
            )
        if self.retention_days is not None and (
            isinstance(self.retention_days, bool) or not 1 <= self.retention_days <= 36500
        ):
            raise ValueError(
                f"retention_days: {self.retention_days!r} must be between 1 and 36500 (None keeps traces forever)"
            )
        _check_path("data_dir", self.data_dir)
        if not _HOST.match(self.host):
            raise ValueError(f"host: {self.host!r} is not a listen address")
        _check_port("http_port", self.http_port)
        _check_port("grpc_port", self.grpc_port)
        if self.http_port == self.grpc_port:
            raise ValueError(f"grpc_port: {self.grpc_port} is the same as http_port")
        for name, value in self.extra_env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"extra_env: {name!r} is not an environment variable name")
            if name in MANAGED_ENV:
                raise ValueError(f"extra_env: {name} is set by lmrun itself (use the dedicated field)")
            if not re.fullmatch(r"[A-Za-z0-9_.,:/@+=\-]*", value):
                raise ValueError(f"extra_env: value of {name} must be plain (letters, digits, '_.,:/@+=-')")
        if self.ingest_key_kms_key_id is not None and not re.fullmatch(
            r"[A-Za-z0-9:/_\-]+", self.ingest_key_kms_key_id
        ):
            raise ValueError(f"ingest_key_kms_key_id: {self.ingest_key_kms_key_id!r} is not a KMS key id/ARN/alias")
        if not _VERSION.match(self.phoenix_version):
            raise ValueError(f"phoenix_version: {self.phoenix_version!r} is not a pinned release like '20.26.1'")

    @property
    def storage(self) -> str:
        """``sqlite`` or ``postgresql`` (for the plan view)."""
        return "sqlite" if self.database_url_parameter is None else "postgresql"

    @property
    def db_file(self) -> str:
        """The SQLite file (meaningful with ``storage == 'sqlite'``)."""
        return f"{self.data_dir.rstrip('/')}/{DB_FILENAME}"

    @property
    def local_url(self) -> str:
        """Phoenix's HTTP endpoint as seen on the node itself."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.http_port}"


def server_environment(cfg: PhoenixConfig) -> dict[str, str]:
    """The plain (non-secret) environment of the Phoenix process; secrets come from ``ENV_FILE``."""
    env = {
        "PHOENIX_HOST": cfg.host,
        "PHOENIX_PORT": str(cfg.http_port),
        "PHOENIX_GRPC_PORT": str(cfg.grpc_port),
        "PHOENIX_WORKING_DIR": cfg.data_dir,
        "PHOENIX_ENABLE_AUTH": "true",
        # The node has no business calling home or running the assistant's server-side shell.
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_AGENTS_DISABLE_BASH": "true",
    }
    if cfg.retention_days is not None:
        env["PHOENIX_DEFAULT_RETENTION_POLICY_DAYS"] = str(cfg.retention_days)
    env.update(dict(cfg.extra_env))
    return env


def secret_parameters(cfg: PhoenixConfig) -> dict[str, str]:
    """``ENV_VAR -> SSM parameter name`` of what ``ENV_FILE`` holds."""
    params = {SECRET_ENV: cfg.secret_parameter, ADMIN_SECRET_ENV: cfg.admin_secret_parameter}
    if cfg.admin_password_parameter is not None:
        params[ADMIN_PASSWORD_ENV] = cfg.admin_password_parameter
    if cfg.database_url_parameter is not None:
        params[DATABASE_URL_ENV] = cfg.database_url_parameter
    return params


ENV_FILE_SCRIPT = vm_script("phoenix-env.sh")
"""``phoenix-env.sh REGION ENV_FILE VAR=SSM_PARAMETER_NAME...``: the server's secrets into its EnvironmentFile."""
INGEST_KEY_SCRIPT = vm_script("phoenix-ingest-key.sh")
"""``phoenix-ingest-key.sh REGION KEY_PARAMETER PHOENIX_URL ENV_FILE [KMS_KEY_ID]``: check or mint the key."""
INGEST_KEY_HELPER = vm_helper("phoenix_key_request.py")
"""The Python helper of ``phoenix-ingest-key.sh``: Phoenix's new key into a ``put-parameter`` request."""
BACKUP_SCRIPT = vm_script("phoenix-backup.sh")
"""``phoenix-backup.sh DB_FILE S3_URI [WORK_DIR]``: a checked SQLite snapshot to S3."""
SNAPSHOTS_KEY = "snapshots/"
"""Where under the backup prefix ``phoenix-backup.sh`` puts each snapshot (expired by the stack's lifecycle)."""
LATEST_KEY = "latest.db.gz"
"""The object under the backup prefix that ``phoenix-backup.sh`` overwrites with every snapshot and
``phoenix-restore.sh`` reads: never expired itself, only its overwritten (noncurrent) versions."""
RESTORE_SCRIPT = vm_script("phoenix-restore.sh")
"""``phoenix-restore.sh DB_FILE S3_URI [OWNER]``: the latest snapshot onto an empty data volume."""
SQLITE_HELPER = vm_helper("phoenix_sqlite.py")
"""The Python helper of the backup and restore scripts (snapshot, integrity check)."""


def restore_command(cfg: PhoenixConfig) -> list[str] | None:
    """argv of the restore step (``ExecStartPre``), or None without backups."""
    if cfg.backup is None:
        return None
    return [f"{SCRIPT_DIR}/phoenix-restore.sh", cfg.db_file, cfg.backup.uri, USER]


def backup_command(cfg: PhoenixConfig) -> list[str] | None:
    """argv of one backup run, or None without backups."""
    if cfg.backup is None:
        return None
    return [f"{SCRIPT_DIR}/phoenix-backup.sh", cfg.db_file, cfg.backup.uri]


def ingest_key_command(cfg: PhoenixConfig) -> list[str]:
    """argv of the ingest-key check/mint step on the Phoenix node."""
    args = [f"{SCRIPT_DIR}/phoenix-ingest-key.sh", cfg.ssm_region, cfg.ingest_key_parameter, cfg.local_url, ENV_FILE]
    if cfg.ingest_key_kms_key_id is not None:
        args.append(cfg.ingest_key_kms_key_id)
    return args


def env_file_command(cfg: PhoenixConfig) -> list[str]:
    """argv that builds ``ENV_FILE`` from SSM at boot."""
    pairs = [f"{var}={name}" for var, name in secret_parameters(cfg).items()]
    return [f"{SCRIPT_DIR}/phoenix-env.sh", cfg.ssm_region, ENV_FILE, *pairs]


def unit_file(cfg: PhoenixConfig) -> WriteFile:
    """``lmrun-phoenix.service``: restore (when backups are on), then ``phoenix serve`` as ``phoenix``."""
    env = [("Environment", f"{k}={v}") for k, v in server_environment(cfg).items()]
    pre: list[tuple[str, str]] = []
    restore = restore_command(cfg)
    if restore is not None and cfg.backup is not None:
        # '+': the restore runs as root (it writes the data dir and chowns the file to the service user).
        pre = [
            ("Environment", f"AWS_DEFAULT_REGION={cfg.backup.region}"),
            ("Environment", f"PYTHON={VENV}/bin/python"),
            ("ExecStartPre", "+" + sh_join(restore)),
        ]
    unit = systemd_unit(
        {
            "Unit": [
                ("Description", f"Arize Phoenix {cfg.phoenix_version} (lmrun observability)"),
                ("After", "network-online.target"),
                ("Wants", "network-online.target"),
                ("RequiresMountsFor", cfg.data_dir),
                ("StartLimitIntervalSec", "0"),
            ],
            "Service": [
                ("Type", "simple"),
                ("User", USER),
                ("Group", USER),
                *env,
                # No '-': without its secrets Phoenix must not start (auth on, nothing to sign with).
                ("EnvironmentFile", ENV_FILE),
                *pre,
                ("ExecStart", f"{VENV}/bin/phoenix serve"),
                ("Restart", "always"),
                ("RestartSec", "5"),
                ("TimeoutStopSec", "60"),
                ("LimitNOFILE", "65536"),
                ("NoNewPrivileges", "true"),
                ("PrivateTmp", "true"),
                ("ProtectSystem", "full"),
                ("ProtectHome", "true"),
            ],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )
    return WriteFile(f"/etc/systemd/system/{UNIT_NAME}", unit)


def _timer(description: str, unit: str, boot: str, every: str) -> str:
    return systemd_unit(
        {
            "Unit": [("Description", description)],
            "Timer": [("OnBootSec", boot), ("OnUnitActiveSec", every), ("AccuracySec", "15s"), ("Unit", unit)],
            "Install": [("WantedBy", "timers.target")],
        }
    )


def backup_units(cfg: PhoenixConfig) -> list[WriteFile]:
    """The backup service and its timer (empty without backups)."""
    command = backup_command(cfg)
    if command is None or cfg.backup is None:
        return []
    service = systemd_unit(
        {
            "Unit": [
                ("Description", f"Snapshot Phoenix's SQLite database to {cfg.backup.uri}"),
                ("After", f"network-online.target {UNIT_NAME}"),
                ("Wants", "network-online.target"),
                ("RequiresMountsFor", cfg.data_dir),
            ],
            "Service": [
                ("Type", "oneshot"),
                # As the database's owner: opening a WAL database (even read-only) may create its -wal/-shm
                # files, and root-owned ones would lock Phoenix out of its own database.
                ("User", USER),
                ("Group", USER),
                ("Environment", f"AWS_DEFAULT_REGION={cfg.backup.region}"),
                ("Environment", f"PYTHON={VENV}/bin/python"),
                ("ExecStart", sh_join(command)),
                ("Nice", "10"),
                ("IOSchedulingClass", "idle"),
            ],
        }
    )
    every = f"{cfg.backup.interval_minutes}min"
    timer = _timer(f"Phoenix backup every {every}", BACKUP_UNIT, every, every)
    return [
        WriteFile(f"/etc/systemd/system/{BACKUP_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{BACKUP_TIMER}", timer),
    ]


def ingest_key_units(cfg: PhoenixConfig) -> list[WriteFile]:
    """The ingest-key check/mint service and its timer."""
    service = systemd_unit(
        {
            "Unit": [
                ("Description", "Publish a Phoenix system API key for trace producers to SSM"),
                ("After", f"network-online.target {UNIT_NAME}"),
                ("Wants", f"network-online.target {UNIT_NAME}"),
            ],
            "Service": [
                ("Type", "oneshot"),
                ("Environment", f"PYTHON={VENV}/bin/python"),
                ("ExecStart", sh_join(ingest_key_command(cfg))),
            ],
        }
    )
    every = f"{INGEST_KEY_CHECK_MINUTES}min"
    timer = _timer("Re-check the Phoenix ingest key", INGEST_KEY_UNIT, "30s", every)
    return [
        WriteFile(f"/etc/systemd/system/{INGEST_KEY_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{INGEST_KEY_TIMER}", timer),
    ]


def install_script(cfg: PhoenixConfig) -> WriteFile:
    """``phoenix-install.sh``: user, data dir, pinned venv on the pinned CPython, secrets from SSM, the units."""
    timers = [INGEST_KEY_TIMER] + ([BACKUP_TIMER] if cfg.backup is not None else [])
    return vm_script(
        "phoenix-install.sh",
        {
            "UV_VENV": UV_VENV,
            "VENV": VENV,
            "PHOENIX_VERSION": cfg.phoenix_version,
            "DATA_DIR": cfg.data_dir,
            "SERVICE_USER": USER,
            "WRITE_ENV_FILE": env_file_command(cfg),
            "PHOENIX_UNIT": UNIT_NAME,
            "TIMERS": timers,
            "INGEST_KEY_UNIT": INGEST_KEY_UNIT,
        },
    )


def phoenix_files(cfg: PhoenixConfig) -> list[WriteFile]:
    """Everything the Phoenix node writes, next to its K3s agent/server files (which bring ``ssm-get.sh``)."""
    files = [ENV_FILE_SCRIPT, INGEST_KEY_SCRIPT, INGEST_KEY_HELPER, unit_file(cfg), *ingest_key_units(cfg)]
    if cfg.backup is not None:
        files += [BACKUP_SCRIPT, RESTORE_SCRIPT, SQLITE_HELPER, *backup_units(cfg)]
    return [*files, UV_VENV_SCRIPT, install_script(cfg)]


def phoenix_runcmd() -> list[list[str]]:
    """Run after the K3s bootstrap (and after the data volume is mounted)."""
    return [[f"{SCRIPT_DIR}/phoenix-install.sh"]]


# --- trace producers ------------------------------------------------------------------------------------------


def otlp_endpoint(grpc_node_port: int = GRPC_NODE_PORT) -> str:
    """The OTLP/gRPC endpoint producers use: Phoenix's gRPC node port on localhost (kube-proxy forwards it).

    ``http://`` tells OpenTelemetry's gRPC exporters to use a plaintext channel (the mesh is private);
    use it for ``VllmConfig.otlp_traces_endpoint`` too.
    """
    check_node_port("grpc_node_port", grpc_node_port)
    return f"http://localhost:{grpc_node_port}"


def client_environment(endpoint: str, api_key: str | None = None) -> dict[str, str]:
    """OpenTelemetry exporter variables for a producer (any OTel SDK honours them).

    Without ``api_key`` the header is left out: that is the public part, safe in a unit file; the full set is
    what ``phoenix-client-env.sh`` writes into ``CLIENT_ENV_FILE``.
    """
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?", endpoint):
        raise ValueError(f"endpoint: {endpoint!r} is not an OTLP/gRPC URL like 'http://localhost:30201'")
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
    }
    if api_key is not None:
        if not re.fullmatch(r"[A-Za-z0-9._\-]+", api_key):
            raise ValueError("api_key: not a Phoenix API key (JWT characters only)")
        env[HEADERS_ENV] = f"authorization=Bearer%20{api_key}"
    return env


@dataclass(frozen=True)
class PhoenixClientConfig:
    """A trace producer's view of Phoenix: where to send spans and which secret holds the key."""

    store: SecretStore
    """Where the producer reads the key (its K3s agent's store): the Phoenix node's own parameter, or a copy
    of the key the stack keeps in the store of VMs that cannot read that one."""
    ingest_key_parameter: str
    """Name of the ingest key in ``store``."""
    grpc_node_port: int = GRPC_NODE_PORT
    env_file: str = CLIENT_ENV_FILE
    restart_units: tuple[str, ...] = ()
    """Units that read ``env_file`` and must restart when the key changes (e.g. ``lmrun-vllm.service``)."""
    refresh_minutes: int = 5

    def __post_init__(self) -> None:
        self.store.check_name("ingest_key_parameter", self.ingest_key_parameter)
        check_node_port("grpc_node_port", self.grpc_node_port)
        _check_path("env_file", self.env_file)
        for unit in self.restart_units:
            if not _UNIT.match(unit):
                raise ValueError(f"restart_units: {unit!r} is not a systemd service name")
        if isinstance(self.refresh_minutes, bool) or not 1 <= self.refresh_minutes <= 1440:
            raise ValueError(f"refresh_minutes: {self.refresh_minutes!r} must be between 1 and 1440")

    @property
    def endpoint(self) -> str:
        return otlp_endpoint(self.grpc_node_port)

    @property
    def key_file(self) -> str:
        """Where the refresher has the store's helper write the key, next to ``env_file`` (removed at once)."""
        return f"{self.env_file}.key"


def client_env_command(cfg: PhoenixClientConfig) -> list[str]:
    """argv that (re)writes the producer's EnvironmentFile from the ingest key (its fetch is in the header of
    :func:`client_env_script`)."""
    return [f"{SCRIPT_DIR}/phoenix-client-env.sh", cfg.env_file, cfg.endpoint, *cfg.restart_units]


def client_env_script(cfg: PhoenixClientConfig) -> WriteFile:
    """``phoenix-client-env.sh`` with the store's fetch of the key in its header."""
    fetch = cfg.store.fetch_argv(cfg.ingest_key_parameter, cfg.key_file)
    return vm_script("phoenix-client-env.sh", {"FETCH_KEY": fetch, "KEY_FILE": cfg.key_file})


def client_env_snippet(cfg: PhoenixClientConfig) -> str:
    """Shell line for a bootstrap script: write the EnvironmentFile now (before the producer starts)."""
    return sh_join(client_env_command(cfg))


def client_files(cfg: PhoenixClientConfig) -> list[WriteFile]:
    """The producer side: the script plus a service and timer that keep the EnvironmentFile current.

    The producer's own unit adds ``EnvironmentFile=-<env_file>`` (the '-' lets it start before Phoenix has
    published a key; the refresher restarts it once the key arrives).
    """
    service = systemd_unit(
        {
            "Unit": [
                ("Description", f"Refresh the Phoenix OTLP exporter settings from {cfg.store.label}"),
                ("After", "network-online.target"),
                ("Wants", "network-online.target"),
            ],
            "Service": [("Type", "oneshot"), ("ExecStart", sh_join(client_env_command(cfg)))],
        }
    )
    every = f"{cfg.refresh_minutes}min"
    timer = _timer("Refresh the Phoenix OTLP exporter settings", CLIENT_ENV_UNIT, "20s", every)
    return [
        client_env_script(cfg),
        WriteFile(f"/etc/systemd/system/{CLIENT_ENV_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{CLIENT_ENV_TIMER}", timer),
    ]


def client_runcmd() -> list[list[str]]:
    """Start the refresher (it runs at once and then every ``refresh_minutes``)."""
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", CLIENT_ENV_TIMER]]


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines as systemd reads the EnvironmentFiles written here (for tests and debugging)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise ValueError(f"not an environment line: {line!r}")
        env[key] = value
    return env


def unit_environment(unit_text: str) -> dict[str, str]:
    """The ``Environment=`` assignments of a rendered unit (single ``KEY=value`` each, as rendered here)."""
    env: dict[str, str] = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment=") :].partition("=")
            env[key] = value
    return env


def describe(cfg: PhoenixConfig) -> Mapping[str, object]:
    """Plain facts for the plan view (no secrets, no parameter values)."""
    return {
        "version": cfg.phoenix_version,
        "storage": cfg.storage,
        "retention_days": cfg.retention_days,
        "backup_uri": cfg.backup.uri if cfg.backup else None,
        "backup_interval_minutes": cfg.backup.interval_minutes if cfg.backup else None,
    }


# --- whole user data ------------------------------------------------------------------------------------------

DATA_DEVICE = "/dev/sdg"
"""Device name the Phoenix data volume is attached at (placement ``node``)."""


def render_phoenix_node_user_data(agent: K3sAgentConfig, cfg: PhoenixConfig, *, data_volume_id: str | None) -> str:
    """``#cloud-config`` for the Phoenix node: mount its data volume, join K3s as an agent, run Phoenix.

    The volume is mounted first so the restore (on an empty volume) and Phoenix write to it, never to the
    root disk.
    """
    mount = [f"{SCRIPT_DIR}/mount-volume.sh", DATA_DEVICE, data_volume_id or "", cfg.data_dir, "lmrun-phoenix"]
    return cloud_config(
        write_files=[*agent_files(agent), MOUNT_VOLUME_SCRIPT, *phoenix_files(cfg)],
        runcmd=[mount, *agent_runcmd(), *phoenix_runcmd()],
    )
