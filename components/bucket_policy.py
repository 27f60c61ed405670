"""What every bucket of the mesh says in its policy: no request without TLS (AWS Foundational Security Best
Practices S3.5). A Deny on ``aws:SecureTransport = false`` for every principal and action, on the bucket and its
objects; it grants nothing, so it is not a public policy (``BlockPublicPolicy`` accepts it)."""

from __future__ import annotations

import json
from typing import Any


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    """The statement refusing every request to the bucket or its objects made without TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def bucket_policy_document(bucket_arn: str, *statements: dict[str, Any]) -> str:
    """A bucket policy of ``statements`` and the TLS-only deny, as JSON."""
    return json.dumps({"Version": "2012-10-17", "Statement": [*statements, deny_insecure_transport(bucket_arn)]})
