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
curl; the network is the host's (cloud-init's network config is disabled); AWS is moto.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from lmrun.domain.ports import PHOENIX_GRPC_PORT, PHOENIX_HTTP_PORT
from lmrun.domain.versions import K3S_VERSION, PHOENIX_VERSION
from lmrun.render.readiness import PARAMETER_PLACEHOLDER
from tests.conftest import plan
from tests.helpers_boot import (
    CACHE,
    booted,
    copy_tree,
    default_environment,
    loop_device,
    machine_lock,
    rootfs,
    seed_nocloud,
    wait_for,
)
from tests.helpers_netns import require
from tests.helpers_phoenix import REGION, http_request, moto_server, phoenix_secret
from tests.validators import require_tool

pytestmark = pytest.mark.slow

INSTANCE = "mesh-cluster-phoenix-instance"
DATA_DIR = "/var/lib/lmrun-phoenix"
BOOT_TIMEOUT = 20 * 60.0
"""cloud-init's whole run, installing Phoenix from the package index included (~2-4 min)."""
VOLUME_BYTES = 1 << 30
RECORD = "/var/lib/lmrun-boot-test"
FAKE_CURL = r"""#!/bin/sh
# lmrun boot test stand-in: there is no K3s server to join and GitHub is unreachable, so the download of K3s's
# installer gets an installer that records how it was run. Every other call is the real curl.
out="" prev="" k3s=""
for arg in "$@"; do
    if [ "$prev" = "-o" ]; then out="$arg"; fi
    case "$arg" in https://raw.githubusercontent.com/k3s-io/k3s/*/install.sh) k3s=1 ;; esac
    prev="$arg"
done
if [ -n "$k3s" ] && [ -n "$out" ]; then
    cat >"$out" <<'INSTALLER'
#!/bin/sh
mkdir -p RECORD
{ echo "INSTALL_K3S_VERSION=$INSTALL_K3S_VERSION"; printf '%s\n' "$@"; } >RECORD/k3s-install.args
INSTALLER
    exit 0
fi
exec /usr/bin/curl "$@"
""".replace("RECORD", RECORD)


def _user_data() -> tuple[bytes, str]:
    """The Phoenix instance's user data as EC2 hands it to cloud-init (bytes), and as text."""
    inputs = plan("global").recording.named(INSTANCE).inputs
    raw = base64.b64decode(inputs["userDataBase64"]) if "userDataBase64" in inputs else str(inputs["userData"]).encode()
    return raw, (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


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
    for command in (
        require_tool("mmdebstrap"),
        require_tool("systemd-nspawn"),
        require_tool("nsenter"),
        require_tool("losetup"),
    ):
        assert command
    require([] if os.geteuid() == 0 else ["needs root (mmdebstrap, systemd-nspawn, loop devices)"], "booting a VM")


def _snapshot_tables(blob: bytes, tmp: Path) -> set[str]:
    path = tmp / "latest.db"
    path.write_bytes(gzip.decompress(blob))
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def test_phoenix_node_boots_its_rendered_user_data_and_serves_with_auth_and_backs_up(tmp_path: Path) -> None:
    _require_prerequisites()
    user_data, text = _user_data()
    config = yaml.safe_load(text)
    [mount] = [c for c in config["runcmd"] if Path(c[0]).name == "mount-volume.sh"]
    volume_serial = mount[2].replace("-", "")
    [bucket] = set(re.findall(r"s3://([a-z0-9.-]+)/", text))
    parameters = _parameters(text)
    assert len(parameters) == 5, parameters  # Phoenix's three secrets, its ingest key, the K3s token
    admin_secret = next(v for k, v in parameters.items() if k.endswith("/admin-secret"))
    token = next(v for k, v in parameters.items() if k.endswith("/k3s/token"))
    ingest_parameter = next(k for k in parameters if k.endswith("/ingest-key"))

    start = time.monotonic()
    base, timings = rootfs()
    root = tmp_path / "root"
    copy_tree(base, root)
    seed_nocloud(
        root,
        user_data,
        {"instance-id": "i-0b007b007b007b007", "local-hostname": "phoenix"},
        # The machine shares the host's network namespace: cloud-init must leave its interfaces alone.
        "datasource_list: [NoCloud]\nnetwork: {config: disabled}\n",
    )
    fake_curl = root / "usr/local/bin/curl"
    fake_curl.write_text(FAKE_CURL)
    fake_curl.chmod(0o755)
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / f"nvme-Amazon_Elastic_Block_Store_{volume_serial}").symlink_to("../../nvme1n1")
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)

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
        default_environment(root, {"AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{endpoint}/"})

        with loop_device(tmp_path / "ebs.img", VOLUME_BYTES) as device:
            binds = {device: "/dev/nvme1n1", str(by_id): "/dev/disk/by-id", str(downloads): "/root/.cache"}
            with booted(root, tmp_path / "console.log", binds) as machine:
                try:
                    # 1. cloud-init ran every stage of the rendered user data, without an error.
                    result = root / "var/lib/cloud/data/result.json"
                    wait_for("cloud-init's final stage", lambda: machine.alive() and result.exists(), BOOT_TIMEOUT, 2)
                    booted_after = time.monotonic() - machine.started
                    status = machine.run(["cloud-init", "status", "--long"])
                    assert status.returncode == 0 and "status: done" in status.stdout, status.stdout + status.stderr
                    assert json.loads(result.read_text())["v1"]["errors"] == []
                    runcmd = (root / "var/lib/cloud/instance/scripts/runcmd").read_text()
                    assert [Path(line.split()[0].strip("'")).name for line in runcmd.splitlines()[1:]] == [
                        Path(c[0]).name for c in config["runcmd"]
                    ]

                    # 2. The blank volume got a filesystem and is mounted where Phoenix keeps its database.
                    mounted = machine.run(["findmnt", "--noheadings", "--output", "SOURCE,FSTYPE", DATA_DIR])
                    assert mounted.stdout.split() == ["/dev/nvme1n1", "ext4"], mounted
                    assert f" {DATA_DIR} ext4 " in (root / "etc/fstab").read_text()

                    # 3. The K3s join ran with the token read from SSM and the node's labels.
                    args = (root / RECORD.lstrip("/") / "k3s-install.args").read_text().splitlines()
                    assert args[:2] == [f"INSTALL_K3S_VERSION={K3S_VERSION}", "agent"], args
                    token_file = args[args.index("--token-file") + 1]
                    assert (root / token_file.lstrip("/")).read_text().strip() == token
                    assert "lmrun.io/node=phoenix" in args

                    # 4. Phoenix (installed from the package index) answers with auth on.
                    phoenix = f"http://127.0.0.1:{PHOENIX_HTTP_PORT}"
                    wait_for("Phoenix /healthz", lambda: _answers(f"{phoenix}/healthz"), 180, 2)
                    assert http_request(f"{phoenix}/arize_phoenix_version") == (200, PHOENIX_VERSION)
                    assert http_request(f"{phoenix}/v1/projects")[0] == 401
                    assert http_request(f"{phoenix}/v1/projects", admin_secret)[0] == 200

                    # 5. The node minted an ingest key and published it to SSM; Phoenix accepts it.
                    def published() -> str | None:
                        value = str(ssm.get_parameter(Name=ingest_parameter, WithDecryption=True)["Parameter"]["Value"])
                        return None if value == PARAMETER_PLACEHOLDER else value

                    key = wait_for("the ingest key in SSM", published, 300, 3)
                    assert key not in parameters.values()
                    assert http_request(f"{phoenix}/v1/projects", key)[0] == 200

                    # 6. The backup timer's service writes a snapshot (run once instead of waiting 5 minutes).
                    timers = machine.run(["systemctl", "is-active", "lmrun-phoenix-backup.timer"])
                    assert timers.stdout.split() == ["active"], timers
                    backup = machine.run(["systemctl", "start", "lmrun-phoenix-backup.service"], timeout=300)
                    assert backup.returncode == 0, backup.stdout + backup.stderr
                    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
                    assert "phoenix/latest.db.gz" in keys, keys
                    assert any(re.fullmatch(r"phoenix/snapshots/phoenix-\d{8}T\d{6}Z\.db\.gz", k) for k in keys), keys
                    latest = s3.get_object(Bucket=bucket, Key="phoenix/latest.db.gz")["Body"].read()
                    assert {"projects", "spans"} <= _snapshot_tables(latest, tmp_path)

                    # 7. Nothing failed on the way.
                    failed = machine.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend"])
                    assert failed.stdout.strip() == "", failed.stdout
                except AssertionError as err:
                    raise AssertionError(f"{err}\n{machine.diagnostics()}") from err
    total = time.monotonic() - start
    print(f"rootfs {timings:.0f}s, cloud-init done {booted_after:.0f}s after boot, whole test {total:.0f}s")
