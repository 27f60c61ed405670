"""Shared harness: plan stacks offline through the real program and cache the recordings per process."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from lmrun.cli.main import main
from lmrun.spec.stackfile import StackConfig, load_stack_config
from lmrun.verify.offline import PlanReport, plan_stack

ROOT = Path(__file__).resolve().parent.parent
TEST_AMI = "ami-0123456789abcdef0"
"""An AMI id of the right shape for hand-written test configs (the example stacks pin their own)."""


TEST_GCP_IMAGES = {
    "gateway": "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260918",
    "gpu": "projects/deeplearning-platform-release/global/images/common-cu128-ubuntu-2204-nvidia-570-v20260320",
}
"""``images`` of a GCP site in hand-written test configs."""


def pinned_images(*regions: str) -> dict[str, dict[str, str]]:
    """``lmrun:images`` pinning a server and a GPU AMI in each of ``regions``, so a hand-written config plans
    (the plan refuses a mesh whose images are not pinned; pins it does not use are ignored)."""
    return {region: {"server": TEST_AMI, "gpu": TEST_AMI} for region in regions}


def stack_config(stack: str, **overrides: Any) -> StackConfig:
    """A stack from stacks/, with ``lmrun:`` keys overridden (plain Python values, encoded like Pulumi)."""
    base = load_stack_config(ROOT, stack=stack)
    config = dict(base.config)
    for key, value in overrides.items():
        config[f"lmrun:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return StackConfig(base.project, base.stack, config, base.secret_keys, base.source)


def stack_images(stack: str) -> dict[str, dict[str, str]]:
    """The ``lmrun:images`` an example stack pins."""
    images: dict[str, dict[str, str]] = json.loads(load_stack_config(ROOT, stack=stack).config["lmrun:images"])
    return images


def repinned(stack: str, region: str, role: str, ami: str) -> dict[str, dict[str, str]]:
    """An example stack's ``lmrun:images`` with one pin changed (or added): an image upgrade, as a test input."""
    images = stack_images(stack)
    images.setdefault(region, {})[role] = ami
    return images


@functools.cache
def _planned(stack: str, preview: bool, overrides_json: str) -> PlanReport:
    return plan_stack(ROOT, stack_config(stack, **json.loads(overrides_json)), preview=preview)


def plan(stack: str, *, preview: bool = False, **overrides: Any) -> PlanReport:
    """Offline plan of a stack (cached: recordings are read-only in tests)."""
    return _planned(stack, preview, json.dumps(overrides, sort_keys=True))


@pytest.fixture(params=[False, True], ids=["up", "preview"])
def preview(request: pytest.FixtureRequest) -> bool:
    """Run a test both as `pulumi up` and as `pulumi preview` would (unknowns can hide checks in preview)."""
    return bool(request.param)


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root like the repository's: its Pulumi.yaml and __main__.py, nothing else."""
    root = tmp_path_factory.mktemp("project")
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, root / name)
    return root


@contextlib.contextmanager
def moto_aws() -> Iterator[None]:
    """Fake credentials (never a real profile) and moto's AWS, for tests of the boto3 commands."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SECURITY_TOKEN": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            yield


class CallWatcher:
    """Watches every call of one AWS operation (``"ec2.DescribeRegions"``) made through a boto3 session: the
    region of each, the threads they ran on, and how many were in flight at once.

    ``delay`` holds each call open so overlap is observable even though moto answers in milliseconds.
    Subclasses look at the request (:meth:`seen`) or answer it instead of moto (:meth:`answer`).
    """

    def __init__(self, session: Any, operation: str, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.regions: list[str] = []
        self.threads: set[str] = set()
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        session.events.register(f"before-call.{operation}", self._before)

    def seen(self, region: str, params: dict[str, Any]) -> None:
        """The serialized request of a call (under the watcher's lock)."""

    def answer(self, region: str) -> Any:
        """A ``(response, parsed)`` pair to answer with instead of the endpoint, or None."""
        return None

    def _before(self, context: dict[str, Any], params: dict[str, Any], **_: Any) -> Any:
        region = str(context["client_region"])
        with self._lock:
            self.regions.append(region)
            self.seen(region, params)
            self.threads.add(threading.current_thread().name)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        return self.answer(region)


# --- the pinned skypilot over `lmrun sky render`'s files ---------------------------------------------------
@pytest.fixture(autouse=True)
def _traceback_limit_kept() -> Iterator[None]:
    """SkyPilot sets ``sys.tracebacklimit = 0`` while it raises a user-facing error and leaves it there; Pulumi's
    SDK then finds no stack to attribute a resource to. Each test gets the process as it found it."""
    had, before = hasattr(sys, "tracebacklimit"), getattr(sys, "tracebacklimit", None)
    yield
    if had:
        sys.tracebacklimit = before  # type: ignore[assignment]
    elif hasattr(sys, "tracebacklimit"):
        del sys.tracebacklimit


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lmrun sky render --stack global`` into a folder of the module (the SkyPilot tests read it)."""
    out = tmp_path_factory.mktemp("sky")
    assert main(["sky", "render", "--project-dir", str(ROOT), "--stack", "global", "--out", str(out)]) == 0
    return out
