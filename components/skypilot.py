"""SkyPilotInfra: the mesh as SkyPilot infrastructure — what SkyPilot finds by name when it launches into the
mesh, and nothing that gives its VMs more than joining needs.

- An IAM role and instance profile named ``lmrun-<stack>-skypilot`` (``aws.remote_identity``) allowed exactly:
  ``ssm:GetParameter`` on the agent's joining credential and the Phoenix ingest key, the checkpoint prefix of
  its bucket, and Session Manager when SkyPilot connects through it (``useSsm``).
- A security group of that name in every mesh VPC (``aws.security_group_name`` is looked up in the VPC
  SkyPilot launches into): all traffic from the mesh ranges that region reaches (like the mesh's own groups;
  K3s, kube-proxy's DNAT to app ports and the node ports all need it), SSH only from lmrun:operatorCidrs and
  only without Session Manager; SkyPilot opens no ``ports`` of a group it did not create.
- The checkpoint bucket (exact name): private, versioned, encrypted, each checkpoint object expiring
  ``checkpointRetentionDays`` after its last write; the role reaches only its ``checkpoints/`` prefix, and only in
  buckets of its own account (``aws:ResourceAccount``), so a bucket name squatted elsewhere gets nothing.

Per region one security group (inline rules); in the main region the role, its policy, the profile
(and the Session Manager attachment), and the bucket with its four settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.buckets import private_bucket
from lmrun.components.instance_role import InstanceRole
from lmrun.components.naming import slug, with_name
from lmrun.domain.names import TAG_REGION, TAG_ROLE
from lmrun.domain.secrets import SecretPaths
from lmrun.domain.skypilot import CHECKPOINT_PREFIX, SKYPILOT_ROLE, joining_credential_path
from lmrun.plan.backup import NONCURRENT_DAYS
from lmrun.plan.mesh import MeshPlan
from lmrun.plan.skypilot import SkyPilotPlan
from lmrun.render.skypilot import SkyPilotMesh, SkyService

SSH_PORT = 22


class SkyPilotInfraArgs(TypedDict):
    """Inputs of :class:`SkyPilotInfra`."""

    plan: SkyPilotPlan
    """Names, ingress and reads decided by :func:`lmrun.plan.skypilot.plan_skypilot`."""
    main_region: str
    """Where the role's and the bucket's provider is."""
    vpc_ids: Mapping[str, pulumi.Input[str]]
    """The mesh VPC per region (each gets the security group)."""
    providers: Mapping[str, aws.Provider]
    """Explicit AWS provider per region."""
    reads: Mapping[str, pulumi.Input[str]]
    """SSM parameter name -> ARN of each parameter the role reads; exactly ``plan.reads``."""
    tags: Mapping[str, str]


def checkpoint_lifecycle_rules(retention_days: int) -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    """Checkpoints expire ``retention_days`` after their last write (each sync writes a new version); the
    version a write replaced goes a day later."""
    return [
        {
            "id": "expire-checkpoints",
            "status": "Enabled",
            "filter": {"prefix": f"{CHECKPOINT_PREFIX}/"},
            "expiration": {"days": retention_days},
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        }
    ]


def checkpoint_statements(bucket: str) -> list[dict[str, Any]]:
    """S3 access to the checkpoint prefix only, in buckets of the role's own account."""
    own_account = {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}
    return [
        {
            "Sid": "CheckpointObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{CHECKPOINT_PREFIX}/*"],
            "Condition": own_account,
        },
        {
            "Sid": "CheckpointList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {**own_account, "StringLike": {"s3:prefix": [f"{CHECKPOINT_PREFIX}/*"]}},
        },
    ]


def _ingress(plan: SkyPilotPlan, region: str) -> list[aws.ec2.SecurityGroupIngressArgs]:
    rules = [
        aws.ec2.SecurityGroupIngressArgs(
            protocol="-1", from_port=0, to_port=0, cidr_blocks=[cidr], description=f"all traffic from mesh {cidr}"
        )
        for cidr in plan.ingress[region]
    ]
    rules += [
        aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=SSH_PORT,
            to_port=SSH_PORT,
            cidr_blocks=[cidr],
            description="SkyPilot's SSH from lmrun:operatorCidrs",
        )
        for cidr in plan.ssh_cidrs
    ]
    return rules


def sky_facts(plan: MeshPlan, vpc_names: Mapping[str, str]) -> SkyPilotMesh:
    """What ``lmrun sky render`` needs, from the mesh plan and the VPCs' ``Name`` tags (the stack's output)."""
    sky = plan.skypilot
    if sky is None:
        raise ValueError("skypilot: the plan has no SkyPilot part")
    cluster = plan.cluster
    by_service: dict[str, SkyService] = {}
    for node in sorted(cluster.nodes.values(), key=lambda n: n.name):
        by_service.setdefault(
            node.service,
            SkyService(
                name=node.service,
                node_port=cluster.endpoints[node.service].node_port,
                app_port=node.app_port,
                model=node.model,
                revision=node.model_revision,
                gpu=node.gpu,
                gpu_count=node.gpu_count,
                disk_size_gb=node.disk_size_gb,
                vllm_args=node.vllm_args,
            ),
        )
    phoenix = cluster.phoenix
    paths = SecretPaths.for_mesh(plan.mesh)
    return SkyPilotMesh(
        stack=plan.mesh,
        main_region=plan.main.name,
        vpc_names={region: vpc_names[region] for region in plan.regions},
        name=sky.name,
        bucket=sky.bucket,
        use_ssm=sky.use_ssm,
        server_ip=cluster.server.private_ip,
        k3s_version=cluster.server.k3s_version,
        token_parameter=joining_credential_path(paths),
        ingest_key_parameter=paths.phoenix("ingest-key") if phoenix is not None else None,
        phoenix_grpc_node_port=phoenix.grpc_node_port if phoenix is not None else None,
        services=tuple(by_service[name] for name in sorted(by_service)),
        node_ports=dict(cluster.node_ports),
        tags={**plan.tags, TAG_ROLE: SKYPILOT_ROLE},
    )


class SkyPilotInfra(pulumi.ComponentResource):
    """The instance profile, a security group per mesh VPC and the checkpoint bucket, by SkyPilot's names."""

    security_group_ids: dict[str, pulumi.Output[str]]
    instance_profile_name: pulumi.Output[str]
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, *, args: SkyPilotInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lmrun:index:SkyPilotInfra", name, None, opts)
        plan = args["plan"]
        main = args["main_region"]
        reads = args["reads"]
        if set(reads) != set(plan.reads):
            raise ValueError(f"reads: {sorted(reads)} are not the SkyPilot role's intended reads {sorted(plan.reads)}")
        tags = {**args["tags"], TAG_ROLE: SKYPILOT_ROLE}
        on_main = pulumi.ResourceOptions(parent=self, provider=args["providers"][main])

        identity = InstanceRole(
            f"{name}-identity",
            args={
                "reads": [reads[parameter] for parameter in plan.reads],
                "writes": [],
                "statements": checkpoint_statements(plan.bucket),
                "fixed_name": plan.name,
                "session_manager": plan.use_ssm,
                "tags": {**tags, TAG_REGION: main},
            },
            opts=on_main,
        )
        bucket = private_bucket(
            f"{name}-checkpoints",
            tags={**tags, TAG_REGION: main},
            parent=self,
            lifecycle_rules=checkpoint_lifecycle_rules(plan.checkpoint_retention_days),
            bucket_name=plan.bucket,
            versioned=True,
        )
        self.security_group_ids = {}
        for region, vpc_id in sorted(args["vpc_ids"].items()):
            group = aws.ec2.SecurityGroup(
                f"{name}-{slug(region)}-sg",
                name=plan.name,
                vpc_id=vpc_id,
                description="SkyPilot clusters of the lmrun mesh: inbound from mesh ranges only",
                ingress=_ingress(plan, region),
                egress=[
                    aws.ec2.SecurityGroupEgressArgs(
                        protocol="-1",
                        from_port=0,
                        to_port=0,
                        cidr_blocks=["0.0.0.0/0"],
                        description="egress for packages, images and models",
                    )
                ],
                tags=with_name({**tags, TAG_REGION: region}, plan.name),
                opts=pulumi.ResourceOptions(parent=self, provider=args["providers"][region]),
            )
            self.security_group_ids[region] = group.id
        self.instance_profile_name = identity.instance_profile_name
        self.bucket_name = bucket.bucket
        self.register_outputs({"instance_profile_name": self.instance_profile_name, "bucket_name": self.bucket_name})
