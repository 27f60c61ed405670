"""The mesh's S3 buckets, built one way: retained on delete, public access blocked, versioned, encrypted,
expiring by their lifecycle, and a policy that refuses every request without TLS (AWS Foundational Security
Best Practices S3.5; the policy rules ``s3-public-access-blocked``, ``s3-versioned``, ``s3-encrypted`` and
``s3-tls-only`` hold every bucket of the stack to it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import with_name

Statement = dict[str, Any]


def deny_insecure_transport(bucket_arn: str) -> Statement:
    """Refuse every request to the bucket or its objects made without TLS. A Deny for every principal grants
    nothing, so it is not a public policy (``BlockPublicPolicy`` accepts it)."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def bucket_policy_document(bucket_arn: str, *statements: Statement) -> str:
    """A bucket policy of ``statements`` and the TLS-only deny, as JSON."""
    return json.dumps({"Version": "2012-10-17", "Statement": [*statements, deny_insecure_transport(bucket_arn)]})


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    policy: aws.s3.BucketPolicy
    """Exists once the bucket refuses plain HTTP (and admits what ``statements`` grant): depend on it."""


def private_bucket(
    name: str,
    *,
    tags: Mapping[str, str],
    encryption: aws.s3.BucketServerSideEncryptionConfigurationRuleArgsDict,
    lifecycle: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgsDict],
    parent: pulumi.Resource,
    statements: Callable[[str], pulumi.Input[Sequence[Statement]]] = lambda _: [],
    retain_configuration: bool = False,
) -> PrivateBucket:
    """The bucket ``name`` (retained on delete: its objects outlive the stack) and its configuration, named
    ``<name>-public-access``, ``-versioning``, ``-encryption``, ``-lifecycle`` and ``-policy``. ``statements``
    maps the bucket's ARN to what the policy grants beside the TLS-only deny. ``retain_configuration`` keeps
    the configuration with the bucket too (still private, still expiring after ``pulumi destroy``)."""
    kept = pulumi.ResourceOptions(parent=parent, retain_on_delete=True)
    child = kept if retain_configuration else pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, tags=with_name(tags, name), opts=kept)
    aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketVersioning(
        f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id, rules=[encryption], opts=child
    )
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=list(lifecycle), opts=child)

    def document(arn: str) -> pulumi.Output[str]:
        return pulumi.Output.from_input(statements(arn)).apply(lambda granted: bucket_policy_document(arn, *granted))

    text: pulumi.Output[str] = bucket.arn.apply(document)
    policy = aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id, policy=text, opts=child)
    return PrivateBucket(bucket, policy)
