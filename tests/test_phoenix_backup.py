"""Phoenix backup and restore scripts, run for real: bash, the AWS CLI (PyPI ``awscli``), moto on loopback as S3,
and a real SQLite database in WAL mode (as Phoenix uses it) with a writer connection open during the backup.

Also: every rendered Phoenix script passes shellcheck, and the rendered units pass ``systemd-analyze verify``.
"""

from __future__ import annotations

import gzip
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.components.phoenix import backup_lifecycle_rules
from lmrun.render import phoenix
from lmrun.render.cloudinit import WriteFile
from tests.helpers_phoenix import (
    REGION,
    aws_env,
    install_scripts,
    moto_server,
    ok,
    run_script,
)
from tests.validators import in_ci, require_tool

BUCKET = "lmrun-test-backups"
PREFIX = "phoenix/test"
URI = f"s3://{BUCKET}/{PREFIX}"

CFG = phoenix.PhoenixConfig(
    ssm_region=REGION,
    secret_parameter="/lmrun/test/phoenix/secret",
    admin_secret_parameter="/lmrun/test/phoenix/admin-secret",
    ingest_key_parameter="/lmrun/test/phoenix/ingest-key",
    admin_password_parameter="/lmrun/test/phoenix/admin-password",
    backup=phoenix.PhoenixBackup(bucket=BUCKET, prefix=PREFIX, region=REGION, interval_minutes=5),
)
CLIENT = phoenix.PhoenixClientConfig(
    SsmParameterStore(REGION), "/lmrun/test/phoenix/ingest-key", restart_units=("lmrun-vllm.service",)
)
ALL_FILES = [*phoenix.phoenix_files(CFG), *phoenix.client_files(CLIENT)]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[tuple[dict[str, str], object]]:
    with moto_server() as endpoint:
        client = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=BUCKET)
        yield aws_env(endpoint, tmp_path), client


def _make_db(path: Path, rows: int) -> sqlite3.Connection:
    """A WAL-mode database with ``rows`` spans, left open (a live writer, like Phoenix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE spans (id INTEGER PRIMARY KEY, name TEXT NOT NULL, attributes TEXT)")
    with con:
        con.executemany(
            "INSERT INTO spans (name, attributes) VALUES (?, ?)",
            [(f"span-{i}", f'{{"lmrun.proof": {i}}}') for i in range(rows)],
        )
    return con


def _rows(path: Path) -> list[tuple[int, str, str]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(con.execute("SELECT id, name, attributes FROM spans ORDER BY id"))
    finally:
        con.close()


def _keys(client: object) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)  # type: ignore[attr-defined]
    return sorted(str(o["Key"]) for o in listed.get("Contents", []))


def test_backup_wipe_restore_gives_back_the_same_rows(tmp_path: Path, s3: tuple[dict[str, str], object]) -> None:
    env, client = s3
    scripts = install_scripts(tmp_path, phoenix.phoenix_files(CFG))
    db = tmp_path / "data" / phoenix.DB_FILENAME
    writer = _make_db(db, rows=250)
    # Uncheckpointed rows sit in the WAL file only: a plain file copy would lose them, the backup API must not.
    with writer:
        writer.execute("INSERT INTO spans (name, attributes) VALUES ('in-wal-only', '{}')")
    assert Path(f"{db}-wal").stat().st_size > 0
    expected = _rows(db)
    assert len(expected) == 251

    backup_argv = phoenix.backup_command(CFG)
    assert backup_argv is not None and backup_argv[2] == URI
    work = tmp_path / "work"
    work.mkdir()
    result = ok(run_script(scripts["phoenix-backup.sh"], [str(db), URI, str(work)], env))
    assert f"backed up {db}" in result.stdout
    writer.close()
    keys = _keys(client)
    snapshots = [k for k in keys if re.fullmatch(rf"{PREFIX}/snapshots/phoenix-\d{{8}}T\d{{6}}Z\.db\.gz", k)]
    assert len(snapshots) == 1 and f"{PREFIX}/latest.db.gz" in keys, keys
    assert list(work.iterdir()) == [], "backup left temporary files behind"
    latest = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/latest.db.gz")["Body"].read()  # type: ignore[attr-defined]
    assert gzip.decompress(latest)[:16] == b"SQLite format 3\x00"

    # Wipe the data volume, restore as the unit's ExecStartPre would (owner = current user here).
    shutil.rmtree(db.parent)
    db.parent.mkdir()
    Path(f"{db}-wal").write_bytes(b"stale WAL of some other database")
    restore_argv = phoenix.restore_command(CFG)
    assert restore_argv is not None and restore_argv[1:3] == [CFG.db_file, URI]
    owner = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    result = ok(run_script(scripts["phoenix-restore.sh"], [str(db), URI, owner], env))
    assert "restored" in result.stdout, result.stdout
    # Only the database: no stale -wal/-shm (a WAL from another database would be replayed into this one).
    assert sorted(p.name for p in db.parent.iterdir()) == [phoenix.DB_FILENAME], "restore left files behind"
    assert _rows(db) == expected

    # A volume that has data is never overwritten.
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO spans (name, attributes) VALUES ('after-restore', '{}')")
    con.close()
    result = ok(run_script(scripts["phoenix-restore.sh"], [str(db), URI, owner], env))
    assert "nothing to restore" in result.stdout
    assert len(_rows(db)) == 252


def test_restore_on_first_boot_starts_empty_but_fails_when_s3_is_unreadable(
    tmp_path: Path, s3: tuple[dict[str, str], object]
) -> None:
    env, _ = s3
    scripts = install_scripts(tmp_path, phoenix.phoenix_files(CFG))
    db = tmp_path / "data" / phoenix.DB_FILENAME
    first = ok(run_script(scripts["phoenix-restore.sh"], [str(db), URI], env))
    assert "no backup under" in first.stdout and not db.exists()
    # A bucket it cannot read (here: missing) must stop Phoenix from starting empty over the real backups.
    broken = run_script(scripts["phoenix-restore.sh"], [str(db), "s3://no-such-bucket-lmrun/phoenix"], env)
    assert broken.returncode != 0, broken.stdout
    assert "refusing to start Phoenix empty" in broken.stderr
    assert not db.exists()


def test_backup_without_database_is_a_no_op_and_upload_errors_fail(
    tmp_path: Path, s3: tuple[dict[str, str], object]
) -> None:
    env, client = s3
    scripts = install_scripts(tmp_path, phoenix.phoenix_files(CFG))
    db = tmp_path / "data" / phoenix.DB_FILENAME
    result = ok(run_script(scripts["phoenix-backup.sh"], [str(db), URI, str(tmp_path)], env))
    assert "nothing to back up" in result.stdout and _keys(client) == []
    _make_db(db, rows=3).close()
    failed = run_script(scripts["phoenix-backup.sh"], [str(db), "s3://no-such-bucket-lmrun/x", str(tmp_path)], env)
    assert failed.returncode != 0


def _s3_api(value: Any) -> Any:
    """A Pulumi rule (``backup_lifecycle_rules``) in the S3 API's spelling (``noncurrent_days``: ``NoncurrentDays``)."""
    if isinstance(value, dict):
        return {
            "ID" if key == "id" else "".join(part.title() for part in key.split("_")): _s3_api(item)
            for key, item in value.items()
        }
    return value


def test_every_backup_object_falls_under_one_lifecycle_rule_and_latest_never_expires(
    tmp_path: Path, s3: tuple[dict[str, str], object]
) -> None:
    """The stack's lifecycle rules, applied to what the real script writes into a versioned bucket: each snapshot
    expires after the retention, the restore's ``latest.db.gz`` never does, and the version of it each backup
    overwrites (the ~8,600 forgotten copies a month at the former defaults) goes after a day."""
    env, client = s3
    client.put_bucket_versioning(  # type: ignore[attr-defined]
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    rules = backup_lifecycle_rules(7, prefix=PREFIX)
    client.put_bucket_lifecycle_configuration(  # type: ignore[attr-defined]
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [_s3_api(dict(rule)) for rule in rules]}
    )
    stored = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]  # type: ignore[attr-defined]
    assert [rule["ID"] for rule in stored] == ["expire-phoenix-snapshots", "expire-superseded-latest"]
    scripts = install_scripts(tmp_path, phoenix.phoenix_files(CFG))
    db = tmp_path / "data" / phoenix.DB_FILENAME
    _make_db(db, rows=10).close()
    for _ in range(2):
        ok(run_script(scripts["phoenix-backup.sh"], [str(db), URI, str(tmp_path)], env))
        time.sleep(1.1)  # snapshot keys carry the second
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=PREFIX)["Versions"]  # type: ignore[attr-defined]
    by_key: dict[str, list[bool]] = {}
    for version in versions:
        by_key.setdefault(str(version["Key"]), []).append(bool(version["IsLatest"]))
    latest_key = f"{PREFIX}/{phoenix.LATEST_KEY}"
    assert sorted(by_key[latest_key]) == [False, True], "each backup overwrites latest.db.gz: one noncurrent"
    snapshot_keys = [key for key in by_key if key != latest_key]
    assert len(snapshot_keys) == 2 and all(key.startswith(f"{PREFIX}/{phoenix.SNAPSHOTS_KEY}") for key in snapshot_keys)
    for key in by_key:
        matching = [rule for rule in rules if key.startswith(rule["filter"]["prefix"])]  # type: ignore[index]
        assert len(matching) == 1, key
        rule = matching[0]
        assert rule["noncurrent_version_expiration"] == {"noncurrent_days": 1}  # type: ignore[typeddict-item]
        if key == latest_key:
            assert "expiration" not in rule, "the restore's source must never expire"
        else:
            assert rule["expiration"] == {"days": 7}  # type: ignore[typeddict-item]


def test_every_rendered_phoenix_script_passes_shellcheck(tmp_path: Path) -> None:
    tool = require_tool("shellcheck")
    scripts = install_scripts(tmp_path, ALL_FILES)
    names = {p for p in scripts if p.startswith("phoenix-")}
    assert names == {
        "phoenix-env.sh",
        "phoenix-ingest-key.sh",
        "phoenix-client-env.sh",
        "phoenix-backup.sh",
        "phoenix-restore.sh",
        "phoenix-install.sh",
    }
    result = subprocess.run(
        [tool, "--severity=style", "--shell=bash", *(str(scripts[n]) for n in sorted(names))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert subprocess.run([tool, str(bad)], capture_output=True, check=False).returncode != 0


def _units(files: list[WriteFile]) -> dict[str, str]:
    return {Path(f.path).name: f.content for f in files if f.path.startswith("/etc/systemd/system/")}


def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` checks syntax, known directives and that every Exec path exists."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # Debian's systemd package brings it; .ci/run does not install it (not a proof this issue requires).
        reason = "systemd-analyze is not installed (Debian package systemd)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    # Exec paths must exist: point them at stand-ins under tmp_path.
    root = tmp_path / "root"
    units = _units(ALL_FILES)
    assert set(units) == {
        phoenix.UNIT_NAME,
        phoenix.BACKUP_UNIT,
        phoenix.BACKUP_TIMER,
        phoenix.INGEST_KEY_UNIT,
        phoenix.INGEST_KEY_TIMER,
        phoenix.CLIENT_ENV_UNIT,
        phoenix.CLIENT_ENV_TIMER,
    }
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for exe in ("/usr/local/lib/lmrun/", phoenix.VENV + "/bin/"):
        (root / exe.strip("/")).mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        text = text.replace("/usr/local/lib/lmrun/", f"{root}/usr/local/lib/lmrun/")
        text = text.replace(phoenix.VENV + "/bin/", f"{root}{phoenix.VENV}/bin/")
        for exe in re.findall(rf"{re.escape(str(root))}[^\s]+", text):
            if "/bin/" in exe or exe.endswith(".sh"):
                Path(exe).write_text("#!/bin/sh\n")
                Path(exe).chmod(0o755)
        (unit_dir / name).write_text(text)
    paths = [str(unit_dir / n) for n in sorted(units)]
    result = subprocess.run(
        [tool, "verify", "--man=no", *paths], capture_output=True, text=True, check=False, timeout=60
    )
    # Only complaints about our units count (the host may have unrelated broken units).
    ours = [line for line in (result.stdout + result.stderr).splitlines() if str(unit_dir) in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
    broken = unit_dir / "broken.service"
    broken.write_text("[Service]\nExecStart=relative/path\nNoSuchDirective=1\n")
    rejected = subprocess.run([tool, "verify", "--man=no", str(broken)], capture_output=True, text=True, check=False)
    assert rejected.returncode != 0, "systemd-analyze accepts anything"
    assert "NoSuchDirective" in rejected.stderr or "relative/path" in rejected.stderr, rejected.stderr
