"""InstanceRole: the IAM identity of one mesh VM, allowed exactly the SSM parameters it needs.

Every VM also gets AmazonSSMManagedInstanceCore so operators reach it with Session Manager instead of
SSH. Parameter access is by ARN: ``ssm:GetParameter`` on what the VM reads, ``ssm:PutParameter`` on what it
publishes; no wildcard action and no wildcard resource.

That managed policy also allows ``ssm:GetParameter(s)`` on every parameter (``"Resource": "*"``), and the mesh's
SecureStrings use the account's ``aws/ssm`` key, whose key policy lets every principal of the account decrypt
through SSM: without more, any VM could read every secret of the mesh. So the inline policy ends with an explicit
Deny of ``ssm:GetParameter*`` (GetParameter, GetParameters, GetParametersByPath, GetParameterHistory) on every
resource but the VM's own reads (``NotResource``). An explicit deny wins over any allow ("Policy evaluation logic",
IAM User Guide), so the managed policy keeps everything Session Manager needs and reads nothing else. Why a Deny and
not a customer-managed KMS key per mesh: no extra resource and no KMS cost ($1/month per key plus requests), and
it also closes ``GetParametersByPath`` and the parameters' metadata; see docs/architecture.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.aws.managed_policies import SSM_MANAGED_INSTANCE_CORE
from lmrun.components.naming import with_name

PARAMETER_READ_ACTIONS = "ssm:GetParameter*"
"""Every action that returns a parameter's value: GetParameter, GetParameters, GetParametersByPath,
GetParameterHistory."""
DENY_OTHER_PARAMETERS = "DenyOtherParameters"

_ASSUME_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


class InstanceRoleArgs(TypedDict):
    """Inputs of :class:`InstanceRole`."""

    reads: Sequence[pulumi.Input[str]]
    """ARNs of SSM parameters the VM reads (``ssm:GetParameter``)."""
    writes: Sequence[pulumi.Input[str]]
    """ARNs of SSM parameters the VM publishes (``ssm:PutParameter``)."""
    tags: Mapping[str, str]
    """Tags for the role and the instance profile."""
    statements: NotRequired[pulumi.Input[Sequence[pulumi.Input[Mapping[str, Any]]]]]
    """More IAM statements (e.g. S3 access to one prefix); each must name its actions and resources."""
    fixed_name: NotRequired[str]
    """The role's and the instance profile's exact name, for identities found by name (SkyPilot's
    ``remote_identity``); absent: Pulumi's auto-names."""
    session_manager: NotRequired[bool]
    """Attach AmazonSSMManagedInstanceCore (default true: operators reach mesh VMs through Session Manager)."""


def parameter_policy(reads: Sequence[str], writes: Sequence[str], extra: Sequence[Mapping[str, Any]] = ()) -> str:
    """The inline policy document for the given parameter ARNs, plus ``extra`` statements, then the Deny of every
    other parameter's value."""
    statements: list[dict[str, Any]] = []
    if reads:
        statements.append(
            {"Sid": "ReadParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": sorted(reads)}
        )
    if writes:
        statements.append(
            {
                "Sid": "PublishParameters",
                "Effect": "Allow",
                "Action": ["ssm:PutParameter"],
                "Resource": sorted(writes),
            }
        )
    statements.extend(dict(statement) for statement in extra)
    statements.append(
        {
            "Sid": DENY_OTHER_PARAMETERS,
            "Effect": "Deny",
            "Action": [PARAMETER_READ_ACTIONS],
            **({"NotResource": sorted(reads)} if reads else {"Resource": "*"}),
        }
    )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class InstanceRole(pulumi.ComponentResource):
    """Role, inline parameter policy (with its Deny), Session Manager attachment and instance profile."""

    role_name: pulumi.Output[str]
    instance_profile_name: pulumi.Output[str]
    instance_profile_arn: pulumi.Output[str]

    def __init__(self, name: str, *, args: InstanceRoleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the role, its inline policy for ``args`` (:class:`InstanceRoleArgs`) and the instance profile;
        IAM is global, so any AWS provider of the account (in ``opts``) does."""
        super().__init__("lmrun:index:InstanceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]

        fixed_name = args.get("fixed_name")
        role = aws.iam.Role(
            f"{name}-role",
            name=fixed_name,
            assume_role_policy=_ASSUME_EC2,
            tags=with_name(tags, fixed_name or f"{name}-role"),
            opts=child,
        )
        reads = pulumi.Output.all(*args["reads"])
        writes = pulumi.Output.all(*args["writes"])
        statements = pulumi.Output.from_input(args.get("statements", []))
        policy = aws.iam.RolePolicy(
            f"{name}-parameters",
            role=role.name,
            policy=pulumi.Output.all(reads, writes, statements).apply(
                lambda rws: parameter_policy(rws[0], rws[1], rws[2])
            ),
            opts=child,
        )
        if args.get("session_manager", True):
            # After the Deny: the managed policy's GetParameter on "*" never applies without it.
            aws.iam.RolePolicyAttachment(
                f"{name}-session-manager",
                role=role.name,
                policy_arn=SSM_MANAGED_INSTANCE_CORE.arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            name=fixed_name,
            role=role.name,
            tags=with_name(tags, fixed_name or f"{name}-profile"),
            opts=child,
        )

        self.role_name = role.name
        self.instance_profile_name = profile.name
        self.instance_profile_arn = profile.arn
        self.register_outputs(
            {
                "role_name": self.role_name,
                "instance_profile_name": self.instance_profile_name,
                "instance_profile_arn": self.instance_profile_arn,
            }
        )
