"""AWS managed policies the mesh attaches (or that the access check knows how to read), pinned with their version.

Why pinned: the access check (:mod:`lmrun.aws.access_model`) must evaluate what an attached managed policy grants
without asking AWS. Each document is copied from the AWS Managed Policy Reference
(docs.aws.amazon.com/aws-managed-policy/latest/reference/<Name>.html, "Policy version" and "JSON policy document");
AWS may publish a new default version at any time, so the version is part of the pin: bump it with the document.
A managed policy not listed here is unknown to the check, which then assumes it allows everything (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class ManagedPolicy:
    name: str
    version: str
    document: Mapping[str, Any]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::aws:policy/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


SSM_MANAGED_INSTANCE_CORE: Final = ManagedPolicy(
    "AmazonSSMManagedInstanceCore",
    # v2, the default version since 2019-05-23 (AWS Managed Policy Reference, AmazonSSMManagedInstanceCore).
    "v2",
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ssm:DescribeAssociation",
                    "ssm:GetDeployablePatchSnapshotForInstance",
                    "ssm:GetDocument",
                    "ssm:DescribeDocument",
                    "ssm:GetManifest",
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:ListAssociations",
                    "ssm:ListInstanceAssociations",
                    "ssm:PutInventory",
                    "ssm:PutComplianceItems",
                    "ssm:PutConfigurePackageResult",
                    "ssm:UpdateAssociationStatus",
                    "ssm:UpdateInstanceAssociationStatus",
                    "ssm:UpdateInstanceInformation",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2messages:AcknowledgeMessage",
                    "ec2messages:DeleteMessage",
                    "ec2messages:FailMessage",
                    "ec2messages:GetEndpoint",
                    "ec2messages:GetMessages",
                    "ec2messages:SendReply",
                ],
                "Resource": "*",
            },
        ],
    },
)
"""What Session Manager needs on an instance (the SSM agent's registration and message channels), attached to
every mesh VM's role. Its ``ssm:GetParameter(s)`` on ``*`` is why each role also carries an explicit Deny."""

SSM_READ_ONLY_ACCESS: Final = ManagedPolicy(
    "AmazonSSMReadOnlyAccess",
    # v1, the default version since 2015-05-29 (AWS Managed Policy Reference, AmazonSSMReadOnlyAccess).
    "v1",
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ssm:Describe*", "ssm:Get*", "ssm:List*"], "Resource": "*"}],
    },
)
"""Not attached by the mesh: known so the check can say what it would grant (every parameter, but for the Deny)."""

MANAGED_POLICIES: Final = {policy.arn: policy for policy in (SSM_MANAGED_INSTANCE_CORE, SSM_READ_ONLY_ACCESS)}

SESSION_MANAGER_ACTIONS: Final = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)
"""What an instance's role must allow for Session Manager (AWS Systems Manager User Guide, "Reference: ec2messages,
ssmmessages, and other API operations": the agent's registration and its message and session channels; all on
``*``, as AmazonSSMManagedInstanceCore grants them). Written out from that guide, not derived from the pinned
document, so a test can hold the roles (the document, the Deny beside it) to what Session Manager needs."""
