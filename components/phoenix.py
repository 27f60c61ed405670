"""Phoenix: LLM traces for the mesh, with data that outlives any instance.

:class:`PhoenixStore` holds what must survive: the generated secrets (SSM SecureStrings the VMs read by
name), the ingest-key parameter the node publishes for trace producers, and the S3 backup bucket (public
access blocked, TLS only, versioned, encrypted, expiring old snapshots and overwritten versions).
:class:`PhoenixNode` is the replaceable part: a small instance in the main region, joined to K3s, with
Phoenix's SQLite database on its own encrypted, protected, retained EBS volume. On first boot with an empty
volume the node restores the latest backup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from lmrun.components.buckets import private_bucket
from lmrun.components.instance_role import InstanceRole
from lmrun.components.instances import attach_volume, mesh_instance, stateful_volume
from lmrun.components.naming import with_name
from lmrun.domain.secrets import SecretPaths
from lmrun.plan.backup import NONCURRENT_DAYS
from lmrun.render.k3s import K3sAgentConfig
from lmrun.render.phoenix import (
    DATA_DEVICE,
    LATEST_KEY,
    SNAPSHOTS_KEY,
    PhoenixBackup,
    PhoenixConfig,
    render_phoenix_node_user_data,
)
from lmrun.render.readiness import PARAMETER_PLACEHOLDER

BACKUP_PREFIX = "phoenix"
_SECRETS = {"secret": 64, "admin-secret": 64, "admin-password": 32}


def backup_lifecycle_rules(
    retention_days: int, prefix: str = BACKUP_PREFIX
) -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    """The backup bucket's lifecycle (the storage it leads to: :mod:`lmrun.plan.backup`).

    - Snapshots expire ``retention_days`` after upload; the expired (noncurrent) version goes a day later, and
      S3 then removes the expired object's delete marker itself (a rule with ``days`` does).
    - ``latest.db.gz`` never expires (a node restoring after a long outage must still find it); each version
      it overwrites goes a day later. Nothing reads a noncurrent version: every snapshot is also a current
      object under ``snapshots/``.
    """
    snapshots = f"{prefix}/{SNAPSHOTS_KEY}"
    latest = f"{prefix}/{LATEST_KEY}"
    return [
        {
            "id": "expire-phoenix-snapshots",
            "status": "Enabled",
            "filter": {"prefix": snapshots},
            "expiration": {"days": retention_days},
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        },
        {
            "id": "expire-superseded-latest",
            "status": "Enabled",
            "filter": {"prefix": latest},
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        },
    ]


class PhoenixStoreArgs(TypedDict):
    """Inputs of :class:`PhoenixStore`. The main region's AWS provider comes in ``opts.provider``."""

    parameter_prefix: str
    """SSM path prefix of the mesh, e.g. ``/lmrun/dev``."""
    backup_retention_days: int
    """Days a snapshot (and a superseded version) stays in the bucket."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""


class PhoenixStore(pulumi.ComponentResource):
    """Secrets, the ingest-key parameter and the backup bucket (the parts a node replacement keeps)."""

    parameter_names: dict[str, str]
    """``secret``, ``admin-secret``, ``admin-password``, ``ingest-key`` -> SSM parameter name."""
    secret_parameter_arns: list[pulumi.Output[str]]
    ingest_key_parameter_arn: pulumi.Output[str]
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, *, args: PhoenixStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the secrets, the ingest-key parameter and the backup bucket from ``args``
        (:class:`PhoenixStoreArgs`); ``opts`` carries the main region's AWS provider and the random provider."""
        super().__init__("lmrun:index:PhoenixStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]
        paths = SecretPaths(args["parameter_prefix"])
        self.parameter_names = {key: paths.phoenix(key) for key in [*_SECRETS, "ingest-key"]}
        self.secret_parameter_arns = []
        for key, length in _SECRETS.items():
            # Phoenix refuses a secret without a digit and a lowercase letter (phoenix.auth
            # REQUIREMENTS_FOR_PHOENIX_SECRET): without the minimums ~1 stack in 100,000 would never start. The
            # minimums are ignored on existing stacks: pulumi-random replaces a password when any argument changes,
            # and a new PHOENIX_SECRET would revoke every API key (a stack whose Phoenix started already has a
            # compliant one; one that never started: `pulumi up --replace <URN>` of the password).
            value = random.RandomPassword(
                f"{name}-{key}",
                length=length,
                special=False,
                min_numeric=1,
                min_lower=1,
                min_upper=1,
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["minNumeric", "minLower", "minUpper"]),
            )
            parameter = aws.ssm.Parameter(
                f"{name}-{key}-parameter",
                name=self.parameter_names[key],
                type="SecureString",
                value=value.result,
                description=f"Phoenix {key} (read by the Phoenix node at boot)",
                tags=with_name(tags, f"{name}-{key}"),
                opts=child,
            )
            self.secret_parameter_arns.append(parameter.arn)
        ingest_key = aws.ssm.Parameter(
            f"{name}-ingest-key-parameter",
            name=self.parameter_names["ingest-key"],
            type="SecureString",
            value=PARAMETER_PLACEHOLDER,
            description="Phoenix system API key for trace producers, minted and published by the Phoenix node",
            tags=with_name(tags, f"{name}-ingest-key"),
            # The node owns the value (it mints a key once Phoenix runs); Pulumi only creates the parameter.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]),
        )
        self.ingest_key_parameter_arn = ingest_key.arn

        bucket = private_bucket(
            f"{name}-backups",
            tags=tags,
            parent=self,
            lifecycle_rules=backup_lifecycle_rules(args["backup_retention_days"]),
            versioned=True,
            # Backups are the data of last resort: `pulumi destroy` leaves the bucket behind.
            retain_on_delete=True,
        ).bucket
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

    def backup_statements(self) -> list[pulumi.Output[dict[str, Any]]]:
        """S3 access to the backup prefix only: write and read snapshots, list that prefix."""
        objects = self.bucket_arn.apply(
            lambda arn: {
                "Sid": "PhoenixBackupObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": [f"{arn}/{BACKUP_PREFIX}/*"],
            }
        )
        listing = self.bucket_arn.apply(
            lambda arn: {
                "Sid": "PhoenixBackupList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{BACKUP_PREFIX}/*"]}},
            }
        )
        return [objects, listing]

    def config(
        self, *, region: str, data_dir: str, retention_days: int, backup_interval_minutes: int
    ) -> pulumi.Output[PhoenixConfig]:
        """The renderer's view of Phoenix (parameter names, backup location), once the bucket has a name."""
        return self.bucket_name.apply(
            lambda bucket: PhoenixConfig(
                ssm_region=region,
                secret_parameter=self.parameter_names["secret"],
                admin_secret_parameter=self.parameter_names["admin-secret"],
                ingest_key_parameter=self.parameter_names["ingest-key"],
                admin_password_parameter=self.parameter_names["admin-password"],
                backup=PhoenixBackup(bucket, BACKUP_PREFIX, region, backup_interval_minutes),
                retention_days=retention_days,
                data_dir=data_dir,
            )
        )


class PhoenixNodeArgs(TypedDict):
    """Inputs of :class:`PhoenixNode`. The main region's AWS provider comes in ``opts.provider``."""

    store: PhoenixStore
    """Secrets, ingest-key parameter and backup bucket."""
    region: str
    """Main region."""
    instance_type: str
    """Phoenix node instance type."""
    volume_gb: int
    """Size of the data volume."""
    retention_days: int
    """Days Phoenix keeps traces."""
    backup_interval_minutes: int
    """Minutes between snapshots."""
    ami_id: pulumi.Input[str]
    """Amazon Linux 2023 (AWS CLI, SSM agent, Python 3.11 from dnf)."""
    subnet_id: pulumi.Input[str]
    """Subnet of the node (its AZ holds the data volume)."""
    availability_zone: pulumi.Input[str]
    """AZ name of ``subnet_id``."""
    security_group_ids: Sequence[pulumi.Input[str]]
    """Mesh security groups of the main VPC: Phoenix is reachable from the mesh only."""
    agent: K3sAgentConfig
    """How the node joins K3s (labels: ``lmrun.io/node=phoenix``)."""
    token_parameter_arn: pulumi.Input[str]
    """ARN of the K3s agent-token parameter (the node joins as an agent)."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""


class PhoenixNode(pulumi.ComponentResource):
    """The Phoenix instance, its identity and its protected data volume."""

    data_volume_id: pulumi.Output[str]

    def __init__(self, name: str, *, args: PhoenixNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the Phoenix VM beside its ``args["store"]`` (:class:`PhoenixNodeArgs`); ``opts.provider`` is
        the main region's AWS provider."""
        super().__init__("lmrun:index:PhoenixNode", name, None, opts)
        store = args["store"]
        tags = args["tags"]
        identity = InstanceRole(
            f"{name}-identity",
            args={
                "reads": [args["token_parameter_arn"], *store.secret_parameter_arns, store.ingest_key_parameter_arn],
                "writes": [store.ingest_key_parameter_arn],
                "statements": store.backup_statements(),
                "tags": tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        volume = stateful_volume(
            f"{name}-data",
            availability_zone=args["availability_zone"],
            size_gb=args["volume_gb"],
            tags=tags,
            parent=self,
        )
        config = store.config(
            region=args["region"],
            data_dir="/var/lib/lmrun-phoenix",
            retention_days=args["retention_days"],
            backup_interval_minutes=args["backup_interval_minutes"],
        )
        user_data = pulumi.Output.all(config, volume.id).apply(
            lambda values: render_phoenix_node_user_data(args["agent"], values[0], data_volume_id=values[1])
        )
        instance = mesh_instance(
            f"{name}-instance",
            ami=args["ami_id"],
            instance_type=args["instance_type"],
            subnet_id=args["subnet_id"],
            security_group_ids=args["security_group_ids"],
            instance_profile=identity.instance_profile_name,
            user_data=user_data,
            root_gb=30,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        attach_volume(f"{name}-data-attachment", device=DATA_DEVICE, volume=volume, instance=instance, parent=self)
        self.data_volume_id = volume.id
        self.register_outputs({"data_volume_id": self.data_volume_id})
