"""Mock answers for what the mesh program asks the cloud: computed outputs and its lookups.

The mock engine echoes inputs; a few resources also have outputs a real provider computes that the
program reads (a subnet's AZ name for EBS volumes, a random password's value, a command's stdout). The
program makes no lookup at all (image ids are pinned in the stack config), so :data:`MESH_LOOKUPS` is
empty and any lookup fails the run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pulumi

from lmrun.mock_engine.engine import CallHandler, ComputedOutputs, RecordingMocks

MOCK_ACCOUNT_ID = "123456789012"
"""The account the mocks answer for (AWS's documentation account id)."""


def _digest(text: str, length: int = 17) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


MESH_LOOKUPS: dict[str, CallHandler] = {}
"""Lookups the mesh program makes: none. What decides a resource comes from config (images included), never
from a lookup at run time: a lookup would make ``pulumi preview`` depend on the day it runs."""


def _subnet(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"availabilityZone": f"az-of-{args.inputs.get('availabilityZoneId', 'unknown')}"}


def _password(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"result": f"mock-{_digest(args.name, 32)}"}


def _random_bytes(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    # New keepers mean new bytes, as with the real provider (that is how keyEpoch rotates a key).
    seed = args.name + repr(sorted((args.inputs.get("keepers") or {}).items()))
    raw = hashlib.sha256(seed.encode()).digest()[: int(args.inputs.get("length", 32))]
    return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}


def _command(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"stdout": f"mock stdout of {args.name}", "stderr": ""}


def _instance(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {
        "privateIp": args.inputs.get("privateIp", "10.0.0.1"),
        "publicIp": "203.0.113.10",
        "primaryNetworkInterfaceId": f"eni-{_digest(args.name)}",
    }


def _eip(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"publicIp": f"203.0.113.{int(_digest(args.name, 2), 16) % 200 + 20}"}


def _launch_template(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"latestVersion": 1, "defaultVersion": 1}


def _vpc(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    # AWS creates a main route table and a default security group with every VPC; the owner is the account.
    return {
        "defaultRouteTableId": f"rtb-{_digest(args.name)}",
        "defaultSecurityGroupId": f"sg-{_digest(args.name)}",
        "ownerId": MOCK_ACCOUNT_ID,
    }


def _bucket(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    # Pulumi autonames buckets "<name>-<random>"; the mock keeps it valid for S3 (lowercase, <= 63).
    return {"bucket": f"{args.name[:46]}-{_digest(args.name, 8)}"}


MESH_COMPUTED: dict[str, ComputedOutputs] = {
    "aws:s3/bucket:Bucket": _bucket,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:ec2/subnet:Subnet": _subnet,
    "random:index/randomPassword:RandomPassword": _password,
    "random:index/randomBytes:RandomBytes": _random_bytes,
    "command:local:Command": _command,
    "aws:ec2/instance:Instance": _instance,
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/vpc:Vpc": _vpc,
}


# Ids that renderers validate (an EBS volume id is baked into user data to find the NVMe device).
MESH_IDS: dict[str, Callable[[pulumi.runtime.MockResourceArgs], str]] = {
    "aws:ebs/volume:Volume": lambda args: f"vol-{_digest(args.name)}",
}


def mesh_mocks() -> RecordingMocks:
    """Mocks that answer everything the lmrun mesh program asks, and nothing more."""
    return RecordingMocks(calls=MESH_LOOKUPS, computed=MESH_COMPUTED, ids=MESH_IDS)
