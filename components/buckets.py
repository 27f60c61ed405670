"""Private S3 buckets: the one shape every bucket of the mesh has — public access blocked, encrypted at rest,
expiring what it keeps by its lifecycle rules, and a policy that refuses every request without TLS (AWS
Foundational Security Best Practices S3.5). The policy rules ``s3-public-access-blocked``, ``s3-encrypted``,
``s3-tls-only`` (and ``s3-versioned`` for the versioned ones) hold every bucket of the stack to it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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


def _grants_nothing(bucket_arn: str) -> Sequence[Statement]:
    return []


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    policy: aws.s3.BucketPolicy
    """In place once the bucket refuses plain HTTP and admits what the policy grants: depend on it."""


def private_bucket(
    name: str,
    *,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    lifecycle_rules: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgsDict],
    bucket_name: str | None = None,
    versioned: bool = False,
    retain_on_delete: bool = False,
    sse_algorithm: Literal["aws:kms", "AES256"] = "aws:kms",
    statements: Callable[[str], pulumi.Input[Sequence[Statement]]] = _grants_nothing,
    retain_configuration: bool = False,
    provider: pulumi.ProviderResource | None = None,
) -> PrivateBucket:
    """The bucket ``name`` and its settings (``<name>-public-access``, ``-versioning``, ``-encryption``,
    ``-lifecycle``, ``-policy``); ``bucket_name`` is its exact S3 name (default: Pulumi's auto-name);
    ``provider`` the region's AWS provider (default: the parent's).

    ``sse_algorithm``: the account's S3 KMS key with a bucket key, or S3-managed keys (what a bucket an AWS
    service delivers logs into needs: the AWS managed key cannot admit the delivery service). ``statements``
    maps the bucket's ARN to what its policy grants beside the TLS-only deny. ``retain_configuration`` keeps
    the settings with a retained bucket (still private, still expiring, after ``pulumi destroy``)."""
    child = pulumi.ResourceOptions(
        parent=parent, provider=provider, retain_on_delete=True if retain_configuration else None
    )
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
    encryption: aws.s3.BucketServerSideEncryptionConfigurationRuleArgsDict = {
        "apply_server_side_encryption_by_default": {"sse_algorithm": sse_algorithm}
    }
    if sse_algorithm == "aws:kms":
        encryption["bucket_key_enabled"] = True
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id, rules=[encryption], opts=child
    )
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=list(lifecycle_rules), opts=child)

    def document(arn: str) -> pulumi.Output[str]:
        return pulumi.Output.from_input(statements(arn)).apply(lambda granted: bucket_policy_document(arn, *granted))

    text: pulumi.Output[str] = bucket.arn.apply(document)
    policy = aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id, policy=text, opts=child)
    return PrivateBucket(bucket, policy)
