"""FlowLogs: the flow log of every AWS VPC of the mesh, delivered to one private S3 bucket in the main region.

Why S3 and one bucket (checked against the AWS documentation, 2026-11):

- **Cost.** Flow logs are "vended logs": delivery to S3 is $0.25/GB (first 10 TB a month, us-east-1), delivery
  to CloudWatch Logs $0.50/GB plus $0.03/GB-month archived (Amazon CloudWatch pricing, Logs, Vended Logs).
  S3 storage of the gzipped files is $0.023/GB-month, bounded by the lifecycle below.
- **Resources.** A CloudWatch Logs destination "must be in the same region" as the flow log (EC2 answers
  ``LogDestination must be in the same region as the API caller``), so it takes a log group per region and an
  IAM role for the service. An S3 bucket takes deliveries from every region of the account: its policy names
  the source as ``arn:aws:logs:<source-region>:<account>:*`` (CloudWatch Logs User Guide, "Logs sent to Amazon
  S3"). One bucket and its configuration (6 resources) serve all regions; each VPC adds its flow log only.
- **Policy.** The bucket policy is the one the VPC User Guide documents ("Amazon S3 bucket permissions for flow
  logs": the ``delivery.logs.amazonaws.com`` principal, ``aws:SourceAccount`` and ``aws:SourceArn``
  conditions against the confused deputy, ``bucket-owner-full-control``), for any region of this account (a
  new spoke changes no policy), plus a deny of every request without TLS. It exists before the first flow log:
  EC2 writes its own policy onto a bucket that has none.
- **Encryption.** SSE-S3: a flow-log delivery into an SSE-KMS bucket needs a customer managed key whose key
  policy admits the delivery service (the AWS managed ``aws/s3`` key cannot), i.e. one more resource, $1 a
  month and a KMS request per file, for no reader this stack has.

The bucket outlives the stack: ``pulumi destroy`` (or turning the option off) deletes the flow logs but keeps
the bucket and its configuration (``retain_on_delete``: still private, still refusing plain HTTP), so the trail
of what happened before is still there, and each file still expires ``retention_days`` after it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.buckets import Statement, private_bucket
from lmrun.components.naming import slug, with_name
from lmrun.plan.flow_logs import FlowLogsPlan

LOG_PREFIX = "AWSLogs/"
"""Where EC2 writes flow-log files in the bucket (``AWSLogs/<account>/vpcflowlogs/<region>/...``)."""
NONCURRENT_DAYS = 1
"""An expired file's noncurrent version goes a day later (the lifecycle's minimum): versioning only guards a
file against an overwrite or a delete in the meantime."""


class FlowLogVpc(TypedDict):
    """One VPC whose flows are logged."""

    vpc_id: pulumi.Input[str]
    provider: aws.Provider
    """The AWS provider of the VPC's region (the flow log is created there)."""
    tags: Mapping[str, str]
    """Tags for its flow log."""


class FlowLogsArgs(TypedDict):
    """Inputs of :class:`FlowLogs`. The main region's AWS provider (the bucket's) comes in ``opts.provider``."""

    plan: FlowLogsPlan
    """Retention and aggregation interval."""
    vpcs: Mapping[str, FlowLogVpc]
    """Region (a stable key: it names the flow log) -> its VPC."""
    account_id: pulumi.Input[str]
    """The AWS account of the VPCs (the only source the bucket admits deliveries from)."""
    tags: Mapping[str, str]
    """Tags for the bucket."""


def delivery_statements(bucket_arn: str, account_id: str) -> list[Statement]:
    """What the bucket policy grants: flow-log deliveries from ``account_id``, in any region (the TLS-only deny
    comes with every mesh bucket)."""
    partition = bucket_arn.split(":")[1]
    sources = {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:*:{account_id}:*"},
    }
    write = {**sources, "StringEquals": {**sources["StringEquals"], "s3:x-amz-acl": "bucket-owner-full-control"}}
    return [
        {
            "Sid": "AWSLogDeliveryWrite",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/{LOG_PREFIX}{account_id}/*",
            "Condition": write,
        },
        {
            "Sid": "AWSLogDeliveryAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": sources,
        },
    ]


class FlowLogs(pulumi.ComponentResource):
    """The bucket (private, versioned, encrypted, expiring) and one flow log per VPC (all traffic)."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, *, args: FlowLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:FlowLogs", name, None, opts)
        plan = args["plan"]
        tags = args["tags"]
        # The bucket and its configuration stay when the stack goes: the logs are the evidence of what happened.
        store = private_bucket(
            f"{name}-bucket",
            tags=tags,
            parent=self,
            lifecycle_rules=[
                {
                    "id": "expire-flow-logs",
                    "status": "Enabled",
                    "filter": {"prefix": LOG_PREFIX},
                    "expiration": {"days": plan.retention_days},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            versioned=True,
            retain_on_delete=True,
            sse_algorithm="AES256",
            statements=lambda arn: pulumi.Output.from_input(args["account_id"]).apply(
                lambda account: delivery_statements(arn, account)
            ),
            retain_configuration=True,
        )
        bucket, policy = store.bucket, store.policy

        for region, vpc in sorted(args["vpcs"].items()):
            aws.ec2.FlowLog(
                f"{name}-{slug(region)}",
                vpc_id=vpc["vpc_id"],
                traffic_type="ALL",
                log_destination_type="s3",
                log_destination=bucket.arn,
                max_aggregation_interval=plan.aggregation_interval_seconds,
                tags=with_name(vpc["tags"], f"{name}-{region}"),
                opts=pulumi.ResourceOptions(parent=self, provider=vpc["provider"], depends_on=[policy]),
            )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
