"""Real Phoenix: the pinned arize-phoenix on loopback, configured only by what lmrun renders.

One test walks the whole path a mesh takes, with moto (on loopback) standing in for SSM:

1. ``phoenix-env.sh`` builds the server's EnvironmentFile from SecureString parameters (secrets made here);
   Phoenix starts with the ``Environment=`` lines of the rendered unit plus that file (auth on, SQLite).
2. ``phoenix-ingest-key.sh`` mints a system API key with the admin secret and stores it in SSM.
3. ``phoenix-client-env.sh`` (what every producer runs) writes the OTLP settings from that parameter; an
   OpenTelemetry OTLP/gRPC exporter configured by those variables alone delivers a span, read back
   through Phoenix's REST API.
4. Without the header (or with a wrong key) Phoenix answers UNAUTHENTICATED and the span never appears.
5. A revoked/garbage key in SSM is replaced by the next ingest-key run, and producers pick it up.

It is one test on purpose: a single Phoenix start (~10 s) serves every step, and pytest-xdist cannot split it.
Never skipped: arize-phoenix, the OpenTelemetry exporter, moto and awscli are pinned dev requirements.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.render import phoenix
from tests.helpers_phoenix import (
    REGION,
    aws_env,
    free_port,
    http_request,
    install_scripts,
    moto_server,
    ok,
    phoenix_secret,
    run_script,
)

pytestmark = pytest.mark.slow

PROJECT = "lmrun-proof"
READY_TIMEOUT = 90.0
SPAN_TIMEOUT = 30.0


def _spans(span_name: str) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "lmrun-test", "openinference.project.name": PROJECT})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("lmrun.tests").start_as_current_span(span_name) as span:
        span.set_attribute("lmrun.proof", span_name)
    provider.shutdown()
    return list(memory.get_finished_spans())


def _span_names(base: str, token: str) -> set[str]:
    status, body = http_request(f"{base}/v1/projects/{PROJECT}/spans?limit=1000", token)
    if status == 404:  # the project appears with its first span
        return set()
    assert status == 200, (status, body)
    return {str(s["name"]) for s in body["data"]}


def _wait_for_span(base: str, token: str, name: str) -> set[str]:
    deadline = time.monotonic() + SPAN_TIMEOUT
    while time.monotonic() < deadline:
        names = _span_names(base, token)
        if name in names:
            return names
        time.sleep(0.3)
    raise AssertionError(f"span {name!r} did not show up in Phoenix within {SPAN_TIMEOUT}s")


def _export(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], span_name: str) -> SpanExportResult:
    """Export one span with an exporter configured only by ``env`` (as a producer's EnvironmentFile sets it)."""
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    exporter = OTLPSpanExporter(timeout=10)
    try:
        return exporter.export(_spans(span_name))
    finally:
        exporter.shutdown()


def _raw_export_status(grpc_port: int, token: str | None) -> grpc.StatusCode:
    """The gRPC status of one raw OTLP Export call (no SDK in between)."""
    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest(), metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


class _Phoenix:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, base: str) -> None:
        self.proc, self.log, self.base = proc, log, base

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def _start_phoenix(cfg: phoenix.PhoenixConfig, env_file: Path, tmp: Path) -> _Phoenix:
    unit = phoenix.unit_file(cfg).content
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        **phoenix.unit_environment(unit),
        **phoenix.parse_env_file(env_file.read_text()),
    }
    log = tmp / "phoenix.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "phoenix"), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return _Phoenix(proc, log, cfg.local_url)


def _stop(server: _Phoenix) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)


def _wait_ready(server: _Phoenix) -> float:
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT:
        if server.proc.poll() is not None:
            raise AssertionError(f"Phoenix exited with {server.proc.returncode}:\n{server.tail()}")
        try:
            if http_request(f"{server.base}/healthz", timeout=2)[0] == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"Phoenix not ready within {READY_TIMEOUT}s:\n{server.tail()}")


def test_span_over_otlp_grpc_with_rendered_auth_is_stored_and_unauthenticated_is_refused(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Secrets made here; they reach Phoenix only through SSM and the rendered env script.
    secret, admin_secret = phoenix_secret(), phoenix_secret()
    params = {"secret": "/lmrun/test/phoenix/secret", "admin": "/lmrun/test/phoenix/admin-secret"}
    ingest_param = "/lmrun/test/phoenix/ingest-key"
    ssm = boto3.client(
        "ssm",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm.put_parameter(Name=params["secret"], Value=secret, Type="SecureString")
    ssm.put_parameter(Name=params["admin"], Value=admin_secret, Type="SecureString")

    cfg = phoenix.PhoenixConfig(
        ssm_region=REGION,
        secret_parameter=params["secret"],
        admin_secret_parameter=params["admin"],
        ingest_key_parameter=ingest_param,
        retention_days=7,
        data_dir=str(tmp_path / "data"),
        host="127.0.0.1",
        http_port=free_port(),
        grpc_port=free_port(),
    )
    client_env_file = tmp_path / "etc" / "phoenix-client.env"
    client_cfg = phoenix.PhoenixClientConfig(
        store=SsmParameterStore(REGION), ingest_key_parameter=ingest_param, env_file=str(client_env_file)
    )
    scripts = install_scripts(tmp_path, [*phoenix.phoenix_files(cfg), *phoenix.client_files(client_cfg)])
    env = aws_env(moto_endpoint, tmp_path)
    (tmp_path / "data").mkdir()

    # 1. Server secrets from SSM into the EnvironmentFile, by the rendered argv (paths moved under tmp).
    env_file = tmp_path / "etc" / "phoenix.env"
    argv = phoenix.env_file_command(cfg)
    ok(run_script(scripts["phoenix-env.sh"], [argv[1], str(env_file), *argv[3:]], env))
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert phoenix.parse_env_file(env_file.read_text()) == {
        "PHOENIX_SECRET": secret,
        "PHOENIX_ADMIN_SECRET": admin_secret,
    }
    unit_env = phoenix.unit_environment(phoenix.unit_file(cfg).content)
    assert unit_env["PHOENIX_ENABLE_AUTH"] == "true"
    assert unit_env["PHOENIX_DEFAULT_RETENTION_POLICY_DAYS"] == "7"

    server = _start_phoenix(cfg, env_file, tmp_path)
    try:
        ready_after = _wait_ready(server)
        print(f"Phoenix {phoenix.PHOENIX_VERSION} ready after {ready_after:.1f}s")
        status, version = http_request(f"{server.base}/arize_phoenix_version")
        assert (status, version) == (200, phoenix.PHOENIX_VERSION)
        # Auth is really on: the API refuses anonymous callers.
        assert http_request(f"{server.base}/v1/projects")[0] == 401

        # 2. The Phoenix node mints the ingest key and publishes it to SSM.
        ingest = [*phoenix.ingest_key_command(cfg)[1:4], str(env_file)]
        minted = ok(run_script(scripts["phoenix-ingest-key.sh"], ingest, env))
        assert "stored a new Phoenix ingest key" in minted.stdout, minted.stdout
        key = ssm.get_parameter(Name=ingest_param, WithDecryption=True)["Parameter"]
        assert key["Type"] == "SecureString"
        assert key["Value"] not in (secret, admin_secret)
        # Idempotent: a key that works is kept (producers are not restarted for nothing).
        again = ok(run_script(scripts["phoenix-ingest-key.sh"], ingest, env))
        assert "is accepted by Phoenix" in again.stdout, again.stdout
        assert ssm.get_parameter(Name=ingest_param, WithDecryption=True)["Parameter"]["Value"] == key["Value"]

        # 3. A producer writes its EnvironmentFile from the parameter, with the rendered endpoint, but pointed at
        #    this Phoenix's gRPC port (on a mesh VM kube-proxy forwards localhost:30201 there).
        endpoint = f"http://127.0.0.1:{cfg.grpc_port}"
        client_argv = phoenix.client_env_command(client_cfg)
        assert client_argv[1:] == [str(client_env_file), "http://localhost:30201"]
        ok(run_script(scripts["phoenix-client-env.sh"], [str(client_env_file), endpoint], env))
        client_env = phoenix.parse_env_file(client_env_file.read_text())
        assert oct(client_env_file.stat().st_mode & 0o777) == "0o600"
        assert client_env == phoenix.client_environment(endpoint, key["Value"])

        assert _export(monkeypatch, client_env, "authorized-span") == SpanExportResult.SUCCESS
        names = _wait_for_span(server.base, admin_secret, "authorized-span")
        # Readable with the ingest key too (a system key reads and writes, but cannot mint keys).
        assert "authorized-span" in _span_names(server.base, key["Value"])
        status, _ = http_request(f"{server.base}/v1/system/api_keys", key["Value"], "POST", {"data": {"name": "x"}})
        assert status == 403

        # 4. Without the header: refused, both by the SDK exporter and as a raw gRPC call.
        no_auth = {k: v for k, v in client_env.items() if k != phoenix.HEADERS_ENV}
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.otlp.proto.grpc.exporter"):
            assert _export(monkeypatch, no_auth, "anonymous-span") == SpanExportResult.FAILURE
        refusal = [r.getMessage() for r in caplog.records if "UNAUTHENTICATED" in r.getMessage()]
        assert refusal, [r.getMessage() for r in caplog.records]
        print(f"exporter without header: {refusal[0]}")
        assert _raw_export_status(cfg.grpc_port, None) == grpc.StatusCode.UNAUTHENTICATED
        assert _raw_export_status(cfg.grpc_port, "not-a-key") == grpc.StatusCode.UNAUTHENTICATED
        assert _raw_export_status(cfg.grpc_port, key["Value"]) == grpc.StatusCode.OK
        # A later authorized span proves the pipeline drained; the anonymous one never arrived.
        assert _export(monkeypatch, client_env, "sentinel-span") == SpanExportResult.SUCCESS
        names = _wait_for_span(server.base, admin_secret, "sentinel-span")
        assert "anonymous-span" not in names, names

        # 5. A key Phoenix no longer accepts is replaced, and the producer's refresher picks up the new one.
        ssm.put_parameter(Name=ingest_param, Value="eyJub3Qi.revoked.key", Type="SecureString", Overwrite=True)
        rotated = ok(run_script(scripts["phoenix-ingest-key.sh"], ingest, env))
        assert "refused by Phoenix; minting a new one" in rotated.stdout, rotated.stdout
        new_key = ssm.get_parameter(Name=ingest_param, WithDecryption=True)["Parameter"]["Value"]
        assert new_key != key["Value"]
        refreshed = ok(run_script(scripts["phoenix-client-env.sh"], [str(client_env_file), endpoint], env))
        assert "wrote" in refreshed.stdout
        client_env = phoenix.parse_env_file(client_env_file.read_text())
        assert _export(monkeypatch, client_env, "after-rotation-span") == SpanExportResult.SUCCESS
        _wait_for_span(server.base, admin_secret, "after-rotation-span")
    finally:
        _stop(server)
    # No secret leaked into Phoenix's own log.
    log = server.log.read_text(errors="replace")
    assert secret not in log and admin_secret not in log
