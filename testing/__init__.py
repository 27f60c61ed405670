"""Offline test harness for lmrun components and programs: a recording mock engine."""

from lmrun.testing.engine import (
    RecordedResource,
    Recording,
    RecordingMocks,
    RecordingMonitor,
    Secret,
    UnmockedCallError,
    redact,
    run_program,
)

__all__ = [
    "RecordedResource",
    "Recording",
    "RecordingMocks",
    "RecordingMonitor",
    "Secret",
    "UnmockedCallError",
    "redact",
    "run_program",
]
