"""Offline test harness for lmrun components and programs: a recording mock engine."""

from lmrun.mock_engine.aws_mocks import MESH_COMPUTED, MESH_IDS, MESH_LOOKUPS, mesh_mocks
from lmrun.mock_engine.engine import (
    RecordedCall,
    RecordedResource,
    Recording,
    RecordingMocks,
    RecordingMonitor,
    Secret,
    UnmockedCallError,
    plain_strings,
    redact,
    run_program,
)

__all__ = [
    "MESH_COMPUTED",
    "MESH_IDS",
    "MESH_LOOKUPS",
    "RecordedCall",
    "RecordedResource",
    "Recording",
    "RecordingMocks",
    "RecordingMonitor",
    "Secret",
    "UnmockedCallError",
    "mesh_mocks",
    "plain_strings",
    "redact",
    "run_program",
]
