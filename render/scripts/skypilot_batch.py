"""A resumable batch for a SkyPilot managed job: one completion per step against a mesh service, each result a
line of ``DIR/results.jsonl``.

Usage: batch_job.py --dir DIR --steps N --port NODE_PORT --model NAME [--step-seconds S]

Resumes after the last complete line it finds (``checkpoint.sh restore`` put back what the last sync saved), so
a preempted job redoes at most the steps since that sync. ``--port 0`` computes nothing remote (a dry run).
With the OpenTelemetry SDK importable and ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set (the join script wrote it
with Phoenix's ingest key), every step is a span exported to Phoenix.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

RESULTS = "results.jsonl"


def done_steps(path: str) -> int:
    """How many steps the results file holds, a torn last line dropped (and cut off the file)."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "wb") as f:
            f.write(complete)
    return sum(1 for line in complete.splitlines() if line.strip())


def complete(port: int, model: str, step: int) -> str:
    """One completion from the service at ``localhost:<port>`` (the mesh's node port)."""
    if port == 0:
        return f"step {step}"
    body = json.dumps({"model": model, "prompt": f"Count to {step}:", "max_tokens": 16}).encode()
    request = urllib.request.Request(
        f"http://localhost:{port}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer: dict[str, Any] = json.load(response)
    return str(answer["choices"][0]["text"])


def tracer() -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """A span factory exporting to Phoenix when the SDK and the endpoint are there, else a no-op."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return lambda name: contextlib.nullcontext()
    # Optional, so the batch runs on any python3's stdlib alone: the job's venv (uv-venv.sh) adds the SDK.
    try:
        trace = importlib.import_module("opentelemetry.trace")
        exporter = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        sdk = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
    except ImportError:
        print("lmrun: OpenTelemetry is not installed; no spans", file=sys.stderr)
        return lambda name: contextlib.nullcontext()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.BatchSpanProcessor(exporter.OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_*
    trace.set_tracer_provider(provider)
    span: Callable[[str], contextlib.AbstractContextManager[Any]] = trace.get_tracer(
        "lmrun.batch"
    ).start_as_current_span
    return span


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, RESULTS)
    first = done_steps(path)
    print(f"lmrun: resuming at step {first} of {args.steps}" if first else f"lmrun: starting {args.steps} steps")
    span = tracer()
    for step in range(first, args.steps):
        with span(f"step {step}"):
            text = complete(args.port, args.model, step)
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "text": text}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(args.step_seconds)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="")
    parser.add_argument("--step-seconds", type=float, default=0.0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
