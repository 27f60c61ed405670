"""Private S3 buckets: the one shape every bucket of the mesh has (public access blocked, encrypted at rest
with the account's S3 KMS key and a bucket key, expiring what it keeps by its lifecycle rules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import with_name


def private_bucket(
    name: str,
    *,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    lifecycle_rules: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgsDict],
    bucket_name: str | None = None,
    versioned: bool = False,
    retain_on_delete: bool = False,
    provider: pulumi.ProviderResource | None = None,
) -> aws.s3.Bucket:
    """The bucket ``name`` and its settings (``<name>-public-access``, ``-versioning``, ``-encryption``,
    ``-lifecycle``); ``bucket_name`` is its exact S3 name (default: Pulumi's auto-name); ``provider`` the
    region's AWS provider (default: the parent's)."""
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    bucket = aws.s3.Bucket(
        name,
        bucket=bucket_name,
        tags=with_name(tags, name),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, retain_on_delete=retain_on_delete),
    )
    aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    if versioned:
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
        opts=child,
    )
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=list(lifecycle_rules), opts=child)
    return bucket
