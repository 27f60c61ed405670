"""Boot the Phoenix node of ``global`` for real: its rendered user data, cloud-init, systemd, Phoenix from PyPI.

A Debian 12 rootfs (``mmdebstrap``) boots with ``systemd-nspawn``; cloud-init reads the Phoenix instance's
``userData`` from the offline plan through its NoCloud datasource and runs it as EC2 would: write_files,
then the runcmd steps in order (mount the data volume, join K3s, install and start Phoenix). A moto server
on the host answers SSM (secrets, the K3s token, the ingest key), S3 (backups) and the instance metadata
(IMDSv2 token and the instance role's credentials) through the AWS CLI's ``AWS_ENDPOINT_URL`` and
``AWS_EC2_METADATA_SERVICE_ENDPOINT``.

Real: cloud-init and its module order, every rendered script and unit, systemd (timers, ``RequiresMountsFor``,
``ExecStartPre=+``, ``User=``), the data volume (a blank block device: blkid, mkfs.ext4, fstab, mount by
UUID), the SSM reads and writes, the install script fetching ``arize-phoenix`` from the package index,
Phoenix serving with auth, the backup service writing to S3.

Stand-ins, exactly: the EBS volume is a loop device (1 GiB) shown at ``/dev/nvme1n1`` with the udev symlink
``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<volume>`` (udev does not run in a container); the K3s
installer (GitHub is unreachable from the tests and there is no K3s server to join) is a fake ``curl`` on
PATH that answers that one URL with an installer recording its arguments, every other call being the real
curl; the pinned CPython that ``uv-venv.sh`` has uv download (from GitHub, unreachable from the tests) is the
machine's own python3 relocated into uv's managed Pythons, with the header's PYTHON_VERSION set to its
version (the one line of the user data that changes; uv's wheel still comes from PyPI and is checked); the
network is the host's (cloud-init's network config is disabled); AWS is moto. Around them, the machine is an
image like any other: the host's extra CAs are trusted (a TLS-inspecting proxy's; ``SSL_CERT_FILE`` points
uv at them), and uv's download cache is kept between runs (uv still resolves every pin against the index).

A second boot gives the volume a partition table (not blank, no filesystem): ``mount-volume.sh`` refuses it,
and nothing after it runs; cloud-init reports the error.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from lmrun.domain.ports import PHOENIX_GRPC_PORT, PHOENIX_HTTP_PORT
from lmrun.domain.versions import K3S_VERSION, PHOENIX_VERSION, UV
from lmrun.render.cloudinit import SCRIPT_DIR, runcmd_argvs, written_files
from lmrun.render.readiness import PARAMETER_PLACEHOLDER
from lmrun.verify.user_data import user_data_payload, user_data_text
from tests.conftest import plan
from tests.helpers_boot import (
    CACHE,
    KEYRING,
    Machine,
    booted,
    checked,
    default_environment,
    loop_device,
    machine_lock,
    machine_root,
    rootfs,
    seed_nocloud,
    wait_for,
)
from tests.helpers_k3s_installer import fake_k3s_curl
from tests.helpers_netns import require
from tests.helpers_phoenix import REGION, http_request, moto_server, phoenix_secret
from tests.validators import require_tool

pytestmark = pytest.mark.slow

INSTANCE = "mesh-cluster-phoenix-instance"
INSTANCE_ID = "i-0b007b007b007b007"
DATA_DIR = "/var/lib/lmrun-phoenix"
BOOT_TIMEOUT = 20 * 60.0
"""cloud-init's whole run, installing Phoenix from the package index included (~0.5-2 min)."""
VOLUME_BYTES = 1 << 30
RECORD = "/var/lib/lmrun-boot-test"
FAKE_CURL = fake_k3s_curl(f"{RECORD}/k3s-install.args", real_curl_otherwise=True)


def _user_data() -> tuple[bytes, str]:
    """The Phoenix instance's user data as EC2 hands it to cloud-init (bytes), and as text."""
    instance = plan("global").recording.named(INSTANCE)
    raw, text = user_data_payload(instance), user_data_text(instance)
    assert raw is not None and text is not None, "the Phoenix instance carries readable user data"
    return raw, text


def _header_value(text: str, script: str, name: str) -> str:
    """``NAME=value`` of a rendered script's header, from the user data."""
    [value] = re.findall(rf"^{name}=(\S+)$", written_files(text)[f"{SCRIPT_DIR}/{script}"], re.MULTILINE)
    return value


def _stand_in_python(root: Path, user_data: bytes, text: str) -> tuple[bytes, str]:
    """The one download the tests cannot make: uv fetches the pinned CPython from GitHub. The machine's own
    python3, relocated, is installed where uv keeps its managed Pythons (``UV_DIR/python``, a build's layout)
    and ``uv-venv.sh``'s PYTHON_VERSION names its version: uv finds it and downloads nothing. The user data
    changes in that one header line; returns it (compressed as it came) and the stand-in's version."""
    version = checked(["chroot", str(root), "python3", "-c", "import platform; print(platform.python_version())"], 60)
    version = version.strip()
    short = ".".join(version.split(".")[:2])
    install = root / _header_value(text, "uv-venv.sh", "UV_DIR").lstrip("/") / "python"
    home = install / f"cpython-{version}-linux-{platform.machine()}-gnu"
    (home / "bin").mkdir(parents=True)
    shutil.copy2(root / f"usr/bin/python{short}", home / "bin" / f"python{short}")
    for link in ("python3", "python"):
        (home / "bin" / link).symlink_to(f"python{short}")
    shutil.copytree(root / f"usr/lib/python{short}", home / "lib" / f"python{short}", symlinks=True)
    pinned = re.escape(_header_value(text, "uv-venv.sh", "PYTHON_VERSION"))
    changed, count = re.subn(rf"^(\s*)PYTHON_VERSION={pinned}$", rf"\g<1>PYTHON_VERSION={version}", text, flags=re.M)
    assert count == 1, count
    data = changed.encode()
    return (gzip.compress(data) if user_data[:2] == b"\x1f\x8b" else data), version


def _parameters(text: str) -> dict[str, str]:
    """Every SSM parameter of the stack the user data names, with a value as `pulumi up` would leave it."""
    names = [str(p.inputs["name"]) for p in plan("global").recording.by_type("aws:ssm/parameter:Parameter")]
    return {
        name: PARAMETER_PLACEHOLDER if name.endswith("/ingest-key") else phoenix_secret()
        for name in names
        if re.search(rf"{re.escape(name)}\b", text)
    }


def _answers(url: str) -> bool:
    try:
        return http_request(url, timeout=2)[0] == 200
    except OSError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _require_prerequisites() -> None:
    require_tool("mmdebstrap")
    require_tool("systemd-nspawn")
    require_tool("nsenter")
    require_tool("losetup")
    reasons = [] if os.geteuid() == 0 else ["needs root (mmdebstrap, systemd-nspawn, loop devices)"]
    if not KEYRING.exists():
        reasons.append(f"{KEYRING} is missing (package debian-archive-keyring)")
    require(reasons, "booting a VM")


def _snapshot_tables(blob: bytes, tmp: Path) -> set[str]:
    path = tmp / "latest.db"
    path.write_bytes(gzip.decompress(blob))
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


@dataclass
class _Node:
    machine: Machine
    root: Path
    user_data: str
    """The user data's cloud-config (decompressed)."""
    parameters: dict[str, str]
    ssm: Any
    s3: Any
    bucket: str
    booted_after: float
    """Seconds from starting the machine to cloud-init's final stage finished."""
    python_version: str
    """The stand-in for the pinned CPython (see :func:`_stand_in_python`)."""

    def parameter(self, suffix: str) -> str:
        return next(name for name in self.parameters if name.endswith(suffix))


@contextlib.contextmanager
def _phoenix_node(tmp_path: Path, volume: Callable[[Path], None] = lambda image: None) -> Iterator[_Node]:
    """The Phoenix node of ``global`` booted until cloud-init's final stage ended; ``volume`` may write to the
    blank data volume's image first. Its rootfs copy is removed afterwards (the logs stay in ``tmp_path``)."""
    _require_prerequisites()
    user_data, text = _user_data()
    [mount] = [argv for argv in runcmd_argvs(text) if Path(argv[0]).name == "mount-volume.sh"]
    [bucket] = set(re.findall(r"s3://([a-z0-9.-]+)/", text))
    parameters = _parameters(text)
    assert len(parameters) == 5, parameters  # Phoenix's three secrets, its ingest key, the K3s token

    base, rootfs_seconds = rootfs()
    print(f"rootfs ready in {rootfs_seconds:.0f}s")
    root = tmp_path / "root"
    trust = machine_root(base, root)
    user_data, python_version = _stand_in_python(root, user_data, text)
    seed_nocloud(
        root,
        user_data,
        {"instance-id": INSTANCE_ID, "local-hostname": "phoenix"},
        # The machine shares the host's network namespace: cloud-init must leave its interfaces alone.
        "datasource_list: [NoCloud]\nnetwork: {config: disabled}\n",
    )
    fake_curl = root / "usr/local/bin/curl"
    fake_curl.write_text(FAKE_CURL)
    fake_curl.chmod(0o755)
    # udev's EBS rule (amazon-ec2-utils) names a Nitro instance's volume by its id; no udev runs in a container.
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / f"nvme-Amazon_Elastic_Block_Store_{mount[2].replace('-', '')}").symlink_to("../../nvme1n1")
    # uv's download cache is kept between runs (uv still resolves every pin against the index).
    uv_cache = CACHE / "uv-cache"
    uv_cache.mkdir(parents=True, exist_ok=True)
    uv_dir = _header_value(text, "uv-venv.sh", "UV_DIR")
    image = tmp_path / "ebs.img"
    with image.open("wb") as f:
        f.truncate(VOLUME_BYTES)
    volume(image)

    try:
        with machine_lock(), moto_server() as endpoint:
            busy = [p for p in (PHOENIX_HTTP_PORT, PHOENIX_GRPC_PORT) if _port_in_use(p)]
            assert not busy, f"ports {busy} are taken on this host; the machine's Phoenix needs them"
            aws: dict[str, Any] = {
                "region_name": REGION,
                "endpoint_url": endpoint,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
            ssm, s3 = boto3.client("ssm", **aws), boto3.client("s3", **aws)
            for name, value in parameters.items():
                ssm.put_parameter(Name=name, Value=value, Type="SecureString")
            s3.create_bucket(Bucket=bucket)
            # No credentials on the machine: the AWS CLI takes the instance role's from the metadata service.
            default_environment(
                root, {"AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{endpoint}/", **trust}
            )
            with loop_device(image) as device:
                binds = {device: "/dev/nvme1n1", str(by_id): "/dev/disk/by-id", str(uv_cache): f"{uv_dir}/cache"}
                with booted(root, tmp_path / "console.log", binds) as machine:
                    try:
                        result = root / "var/lib/cloud/data/result.json"
                        wait_for(
                            "cloud-init's final stage", lambda: machine.alive() and result.exists(), BOOT_TIMEOUT, 2
                        )
                        booted_after = time.monotonic() - machine.started
                        print(f"cloud-init finished {booted_after:.0f}s after the machine started")
                        yield _Node(machine, root, text, parameters, ssm, s3, bucket, booted_after, python_version)
                    except AssertionError as err:
                        raise AssertionError(f"{err}\n{machine.diagnostics()}") from err
    finally:
        for log in ("cloud-init.log", "cloud-init-output.log"):
            if (root / "var/log" / log).exists():
                shutil.copy(root / "var/log" / log, tmp_path / log)
        shutil.rmtree(root, ignore_errors=True)


def _cloud_init_status(node: _Node) -> tuple[str, list[str]]:
    """``cloud-init status``'s word and result.json's errors."""
    status = node.machine.run(["cloud-init", "status", "--long"])
    word = re.search(r"^status: (\w+)", status.stdout, re.MULTILINE)
    assert word, status.stdout + status.stderr
    errors: list[str] = json.loads((node.root / "var/lib/cloud/data/result.json").read_text())["v1"]["errors"]
    return word.group(1), errors


def test_phoenix_node_boots_its_rendered_user_data_and_serves_with_auth_and_backs_up(tmp_path: Path) -> None:
    start = time.monotonic()
    with _phoenix_node(tmp_path) as node:
        machine, root = node.machine, node.root
        # 1. cloud-init ran every stage of the rendered user data, without an error, the runcmd steps in order.
        assert _cloud_init_status(node) == ("done", [])
        runcmd = (root / f"var/lib/cloud/instances/{INSTANCE_ID}/scripts/runcmd").read_text()
        steps = [Path(line.split()[0].strip("'")).name for line in runcmd.splitlines()[1:] if line.startswith("'")]
        assert steps == [Path(argv[0]).name for argv in runcmd_argvs(node.user_data)], runcmd

        # 2. The blank volume got a filesystem and is mounted where Phoenix keeps its database.
        mounted = machine.run(["findmnt", "--noheadings", "--output", "SOURCE,FSTYPE", DATA_DIR])
        assert mounted.stdout.split() == ["/dev/nvme1n1", "ext4"], mounted
        assert f" {DATA_DIR} ext4 " in (root / "etc/fstab").read_text()

        # 3. The K3s join ran with the agent token read from SSM and the node's labels.
        args = (root / RECORD.lstrip("/") / "k3s-install.args").read_text().splitlines()
        assert args[:2] == [f"INSTALL_K3S_VERSION={K3S_VERSION}", "agent"], args
        token_file = args[args.index("--token-file") + 1]
        assert (root / token_file.lstrip("/")).read_text().strip() == node.parameters[
            node.parameter("/k3s/agent-token")
        ]
        assert "lmrun.io/node=phoenix" in args

        # 4. uv (its wheel from PyPI, checked) built Phoenix's venv; Phoenix (from PyPI) answers with auth on.
        pins = (root / "opt/lmrun/phoenix/.lmrun-pins").read_text().split()
        assert pins == [f"python=={node.python_version}", f"arize-phoenix=={PHOENIX_VERSION}"], pins
        uv = node.machine.run([f"{_header_value(node.user_data, 'uv-venv.sh', 'UV_DIR')}/{UV.version}/uv", "--version"])
        assert uv.stdout.split()[:2] == ["uv", UV.version], uv
        phoenix = f"http://127.0.0.1:{PHOENIX_HTTP_PORT}"
        admin_secret = node.parameters[node.parameter("/phoenix/admin-secret")]
        wait_for("Phoenix /healthz", lambda: _answers(f"{phoenix}/healthz"), 180, 2)
        assert http_request(f"{phoenix}/arize_phoenix_version") == (200, PHOENIX_VERSION)
        assert http_request(f"{phoenix}/v1/projects")[0] == 401
        assert http_request(f"{phoenix}/v1/projects", admin_secret)[0] == 200

        # 5. The node minted an ingest key and published it to SSM; Phoenix accepts it.
        ingest_parameter = node.parameter("/phoenix/ingest-key")

        def published() -> str | None:
            value = str(node.ssm.get_parameter(Name=ingest_parameter, WithDecryption=True)["Parameter"]["Value"])
            return None if value == PARAMETER_PLACEHOLDER else value

        key = wait_for("the ingest key in SSM", published, 300, 3)
        assert key not in node.parameters.values()
        assert http_request(f"{phoenix}/v1/projects", key)[0] == 200

        # 6. The backup timer's service writes a snapshot (run once instead of waiting for the timer).
        timer = machine.run(["systemctl", "is-active", "lmrun-phoenix-backup.timer"])
        assert timer.stdout.split() == ["active"], timer
        backup = machine.run(["systemctl", "start", "lmrun-phoenix-backup.service"], timeout=300)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        keys = [o["Key"] for o in node.s3.list_objects_v2(Bucket=node.bucket).get("Contents", [])]
        assert "phoenix/latest.db.gz" in keys, keys
        assert any(re.fullmatch(r"phoenix/snapshots/phoenix-\d{8}T\d{6}Z\.db\.gz", k) for k in keys), keys
        latest = node.s3.get_object(Bucket=node.bucket, Key="phoenix/latest.db.gz")["Body"].read()
        assert {"projects", "spans"} <= _snapshot_tables(latest, tmp_path)

        # 7. Nothing failed on the way.
        failed = machine.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend"])
        assert failed.stdout.strip() == "", failed.stdout
    print(f"whole test {time.monotonic() - start:.0f}s")


def _partition_table(image: Path) -> None:
    """An MBR with one partition: a volume that is not blank (blkid finds a signature) and has no filesystem."""
    with image.open("r+b") as f:
        f.seek(446)
        f.write(struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, VOLUME_BYTES // 512 - 2048))
        f.seek(510)
        f.write(b"\x55\xaa")


def test_a_volume_that_cannot_be_mounted_stops_the_boot_before_phoenix_and_cloud_init_reports_it(
    tmp_path: Path,
) -> None:
    """mount-volume.sh refuses a volume it must not format; nothing after it runs, and the boot is an error.

    Otherwise Phoenix would start on the root disk (no fstab entry, so ``RequiresMountsFor`` has no mount to
    wait for) while ``cloud-init status`` said done, and the next instance would find the stale volume."""
    with _phoenix_node(tmp_path, _partition_table) as node:
        status, errors = _cloud_init_status(node)
        assert status == "error" and any("scripts-user" in e for e in errors), (status, errors)
        assert not (node.root / RECORD.lstrip("/") / "k3s-install.args").exists(), "the K3s join ran anyway"
        assert not (node.root / "opt/lmrun/phoenix").exists(), "Phoenix was installed anyway"
        phoenix = node.machine.run(["systemctl", "is-active", "lmrun-phoenix.service"])
        assert phoenix.stdout.strip() != "active"
        assert (
            "has no filesystem UUID; refusing to mount it" in (node.root / "var/log/cloud-init-output.log").read_text()
        )
