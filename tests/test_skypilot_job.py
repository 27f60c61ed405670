"""The managed-job template's checkpoint and resume, run for real against a moto S3 server.

The job's ``run`` (as rendered, its scripts pointed into a scratch folder, the sync every second instead of every
minute) runs on "VM 1" until its checkpoint is in the bucket; the whole process group is then killed (a spot
preemption: nothing gets to clean up). "VM 2" starts from an empty home, restores the checkpoint and resumes
after the last step the bucket holds; the bucket ends with every step exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from lmrun.render.skypilot import SkyPilotMesh, bundle, job_run_lines
from tests.conftest import plan
from tests.helpers_phoenix import REGION, aws_env, moto_server

pytestmark = pytest.mark.slow

JOB = "sky-managed-2026-01-01-00-00-00-000000_mesh-batch_1-0"


def _lines(s3: object, bucket: str, key: str) -> list[dict[str, object]]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()  # type: ignore[attr-defined]
    except Exception:
        return []
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_checkpoint_sync_preempt_restore_resume(tmp_path: Path) -> None:
    # Without Phoenix: the tracing lines read a root-only file with sudo (the join test covers that file).
    mesh = replace(
        SkyPilotMesh.from_json(plan("global").outputs["skypilot"]),
        ingest_key_parameter=None,
        phoenix_grpc_node_port=None,
    )
    scripts = tmp_path / "lib"
    scripts.mkdir()
    for name in ("checkpoint.sh", "batch_job.py"):
        (scripts / name).write_text(bundle(mesh)[name])
        (scripts / name).chmod(0o755)
    run = "\n".join(job_run_lines(mesh, script_dir=str(scripts), python=sys.executable)).replace(
        "~/lmrun/batch_job.py", str(scripts / "batch_job.py")
    )
    key = f"{mesh.checkpoint_prefix}/{JOB}/results.jsonl"
    with moto_server() as endpoint:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # fmt: skip
        s3.create_bucket(Bucket=mesh.bucket)

        def vm(home: str, steps: int, step_seconds: float) -> subprocess.Popen[str]:
            (tmp_path / home).mkdir()
            env = aws_env(endpoint, tmp_path / home, SKYPILOT_TASK_ID=JOB, STEPS=str(steps), NODE_PORT="0",
                          MODEL="qwen", CHECKPOINT_EVERY="1", STEP_SECONDS=str(step_seconds))  # fmt: skip
            return subprocess.Popen(["bash", "-c", run], env=env, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

        first = vm("vm1", 10_000, 0.05)
        deadline = time.monotonic() + 60
        while len(_lines(s3, mesh.bucket, key)) < 10:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "no checkpoint reached the bucket"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the spot VM is gone
        first.wait(timeout=10)
        saved = len(_lines(s3, mesh.bucket, key))
        assert 10 <= saved < 10_000

        total = saved + 7
        second = vm("vm2", total, 0.0)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert f"lmrun: resuming at step {saved} of {total}" in output
        steps = [line["step"] for line in _lines(s3, mesh.bucket, key)]
        assert steps == list(range(total))
        # VM 1 had done at least what the bucket holds; VM 2 redid only what came after the last sync.
        assert (tmp_path / "vm1" / "lmrun-checkpoint" / "results.jsonl").read_text().count("\n") >= saved
