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


MOCK_ACCOUNT = "123456789012"
"""The account id of the ARNs the mocks compute (AWS's documentation account)."""


class _ProviderAware:
    """Outputs a real provider derives from its configuration: SSM parameters get their real ARN shape,
    ``arn:aws:ssm:<region>:<account>:parameter/<name>``, in their provider's region (the access check matches IAM
    resource patterns such as ``parameter/lmrun/*`` against it); GCP service accounts their email in their
    provider's project (bindings name it)."""

    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Any]] = {}

    def provider(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        self.providers[args.name] = dict(args.inputs)
        return {}

    def _config(self, args: pulumi.runtime.MockResourceArgs, key: str, default: str) -> str:
        # A resource names its provider as "<urn>::<id>", the URN ending in the provider's name.
        name = (args.provider or "").rsplit("::", 1)[0].rsplit("::", 1)[-1]
        return str(self.providers.get(name, {}).get(key) or default)

    def parameter(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        name = str(args.inputs.get("name") or args.name)
        path = name if name.startswith("/") else f"/{name}"
        return {"arn": f"arn:aws:ssm:{self._config(args, 'region', 'us-east-1')}:{MOCK_ACCOUNT}:parameter{path}"}

    def service_account(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        project = self._config(args, "project", "mock-project")
        return {"email": f"{args.inputs.get('accountId', args.name)}@{project}.iam.gserviceaccount.com"}


def _autonamed(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    # Pulumi auto-names IAM roles and instance profiles "<name>-<random>"; what references them holds that name.
    return {"name": f"{args.name[:56]}-{_digest(args.name, 7)}"}


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
    "aws:iam/role:Role": _autonamed,
    "aws:iam/instanceProfile:InstanceProfile": _autonamed,
}


# Ids that renderers validate (an EBS volume id is baked into user data to find the NVMe device).
MESH_IDS: dict[str, Callable[[pulumi.runtime.MockResourceArgs], str]] = {
    "aws:ebs/volume:Volume": lambda args: f"vol-{_digest(args.name)}",
}


def mesh_mocks() -> RecordingMocks:
    """Mocks that answer everything the lmrun mesh program asks, and nothing more."""
    derived = _ProviderAware()
    computed = {
        **MESH_COMPUTED,
        "pulumi:providers:aws": derived.provider,
        "pulumi:providers:gcp": derived.provider,
        "aws:ssm/parameter:Parameter": derived.parameter,
        "gcp:serviceaccount/account:Account": derived.service_account,
    }
    return RecordingMocks(calls=MESH_LOOKUPS, computed=computed, ids=MESH_IDS)
