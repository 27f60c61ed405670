"""ServeControllerIdentity: the IAM identity of SkyServe's controller VM, allowed to launch replicas into the mesh.

The controller of elastic services (``lmrun:elasticServices``) is a VM SkyPilot launches in the main region; it
launches, relaunches and terminates the replicas itself, with its instance profile (``aws.remote_identity`` maps
``sky-serve-controller-*`` to this profile and every other cluster to the VMs' profile, so no local credentials
are uploaded to it). What it may do is SkyPilot's documented minimal policy ("Minimal Permissions", AWS, SkyPilot
docs: docs/source/cloud-setup/cloud-permissions/aws.rst), narrowed to the mesh:

- ``ec2:RunInstances`` with public or own images, into the mesh's VPCs only (``ec2:Vpc`` on the subnet, network
  interface and security group a launch names);
- start, stop and terminate only instances SkyPilot launched (tagged ``ray-cluster-name``, the tag SkyPilot's AWS
  provisioner filters every cluster by: ``sky/provision/aws/instance.py`` ``_cluster_name_filter``);
- tag instances (SkyPilot tags at launch and when it stops a cluster), describe EC2;
- pass, and read, only the VMs' role and instance profile: a replica it launches holds the VMs' identity, never
  the controller's;
- no ``ec2:CreateSecurityGroup`` / ``ec2:AuthorizeSecurityGroupIngress`` (the documented policy has them): the
  mesh's SkyPilot groups exist under the name SkyPilot looks up, with rules, so SkyPilot has nothing to create or
  open (``sky/provision/aws/config.py`` ``_configure_security_group`` adds rules only to a group without any);
- read the agent token to join K3s (it reaches the GPU pool's pods by their pod IPs), nothing else in SSM.

It reaches the replicas over SSH at their private addresses (inside the mesh), not through Session Manager: SkyPilot
drops ``ssh_proxy_command`` on its controllers, and the rendered config sets ``use_ssm: false`` with the Session
Manager proxy spelled out per region instead (:mod:`lmrun.render.skyserve`), so it needs no ``ssm:StartSession``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import pulumi

from lmrun.components.instance_role import InstanceRole
from lmrun.domain.names import TAG_REGION, TAG_ROLE
from lmrun.domain.skypilot import SKYSERVE_CONTROLLER_ROLE
from lmrun.plan.skypilot import ServeControllerPlan

CLUSTER_TAG = "ray-cluster-name"
"""The tag SkyPilot's AWS provisioner puts on, and finds, every instance of a cluster."""


class ServeControllerIdentityArgs(TypedDict):
    """Inputs of :class:`ServeControllerIdentity`."""

    plan: ServeControllerPlan
    replica_identity: str
    """The VMs' role and instance profile name (``lmrun-<stack>-skypilot``): the only identity it may pass."""
    account_id: pulumi.Input[str]
    """The account of the mesh (a VPC's owner: the program makes no lookup)."""
    vpcs: Mapping[str, pulumi.Input[str]]
    """Region -> the mesh VPC's id there: where it may launch."""
    reads: Mapping[str, pulumi.Input[str]]
    """SSM parameter name -> ARN of each parameter it reads; exactly ``plan.reads``."""
    session_manager: bool
    """Attach Session Manager (SkyPilot reaches its VMs through it, ``useSsm``), like the VMs' identity."""
    main_region: str
    tags: Mapping[str, str]


def controller_statements(account: str, vpc_arns: Sequence[str], replica_identity: str) -> list[dict[str, Any]]:
    """The controller's IAM statements beside its parameter reads (see the module docstring)."""
    in_mesh = {"StringEquals": {"ec2:Vpc": sorted(vpc_arns)}}
    return [
        {
            "Sid": "LaunchImages",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": ["arn:aws:ec2:*::image/ami-*"],
        },
        {
            "Sid": "LaunchInstances",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": [f"arn:aws:ec2:*:{account}:instance/*", f"arn:aws:ec2:*:{account}:volume/*"],
        },
        {
            "Sid": "LaunchIntoTheMesh",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": [
                f"arn:aws:ec2:*:{account}:network-interface/*",
                f"arn:aws:ec2:*:{account}:security-group/*",
                f"arn:aws:ec2:*:{account}:subnet/*",
            ],
            "Condition": in_mesh,
        },
        {
            "Sid": "ManageSkyPilotInstances",
            "Effect": "Allow",
            "Action": ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"],
            "Resource": [f"arn:aws:ec2:*:{account}:instance/*"],
            "Condition": {"Null": {f"ec2:ResourceTag/{CLUSTER_TAG}": "false"}},
        },
        {
            "Sid": "TagInstances",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": [f"arn:aws:ec2:*:{account}:instance/*", f"arn:aws:ec2:*:{account}:volume/*"],
        },
        # Describe* supports no resource-level permission: "*" is the only resource it takes.
        {"Sid": "Describe", "Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": ["*"]},
        {
            "Sid": "PassTheVmsRole",
            "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:PassRole"],
            "Resource": [f"arn:aws:iam::{account}:role/{replica_identity}"],
        },
        {
            "Sid": "ReadTheVmsProfile",
            "Effect": "Allow",
            "Action": ["iam:GetInstanceProfile"],
            "Resource": [f"arn:aws:iam::{account}:instance-profile/{replica_identity}"],
        },
    ]


def _vpc_arns(account: str, regions: Sequence[str], vpc_ids: Sequence[str]) -> list[str]:
    return [f"arn:aws:ec2:{region}:{account}:vpc/{vpc}" for region, vpc in zip(regions, vpc_ids, strict=True)]


class ServeControllerIdentity(pulumi.ComponentResource):
    """Role (its policy ending with the Deny of other parameters), Session Manager, instance profile."""

    instance_profile_name: pulumi.Output[str]

    def __init__(
        self, name: str, *, args: ServeControllerIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Declare the controller's identity from ``args`` (:class:`ServeControllerIdentityArgs`); ``opts`` carries
        the main region's provider (IAM is global)."""
        super().__init__("lmrun:index:ServeControllerIdentity", name, None, opts)
        plan = args["plan"]
        reads = args["reads"]
        if set(reads) != set(plan.reads):
            raise ValueError(f"reads: {sorted(reads)} are not the controller's intended reads {sorted(plan.reads)}")
        regions = sorted(args["vpcs"])
        statements = pulumi.Output.all(args["account_id"], *(args["vpcs"][r] for r in regions)).apply(
            lambda values: controller_statements(
                values[0], _vpc_arns(values[0], regions, values[1:]), args["replica_identity"]
            )
        )
        identity = InstanceRole(
            f"{name}-identity",
            args={
                "reads": [reads[parameter] for parameter in plan.reads],
                "writes": [],
                "statements": statements,
                "fixed_name": plan.name,
                "session_manager": args["session_manager"],
                "tags": {**args["tags"], TAG_ROLE: SKYSERVE_CONTROLLER_ROLE, TAG_REGION: args["main_region"]},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.instance_profile_name = identity.instance_profile_name
        self.register_outputs({"instance_profile_name": self.instance_profile_name})
