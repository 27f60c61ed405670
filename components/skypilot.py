"""SkyPilotInfra: the mesh as SkyPilot infrastructure — what SkyPilot finds by name when it launches into the
mesh, and nothing that gives its VMs more than joining needs.

- An IAM role and instance profile named ``lmrun-<stack>-skypilot`` (``aws.remote_identity``) allowed exactly:
  ``ssm:GetParameter`` on the agent's joining credential and the Phoenix ingest key, the checkpoint prefix of
  its bucket, and Session Manager when SkyPilot connects through it (``useSsm``).
- A security group of that name in every mesh VPC (``aws.security_group_name`` is looked up in the VPC
  SkyPilot launches into): all traffic from the mesh ranges that region reaches (like the mesh's own groups;
  K3s, kube-proxy's DNAT to app ports and the node ports all need it), SSH only from lmrun:operatorCidrs and
  only without Session Manager, and all traffic from the VPC's mesh security group: SkyPilot's ``open_ports``
  (sky/provision/aws/instance.py) adds a ``0.0.0.0/0`` TCP rule for every port a task or the SkyServe load
  balancer asks for, *unless* the group already has an all-traffic rule naming another group; that rule makes it
  open nothing. The mesh group was chosen over a dedicated empty group because it admits no one new (its members
  are the mesh's own instances in that VPC, whose addresses the group admits already by the VPC's CIDR) and it
  costs no resource (an empty group would be one more per region).
- The checkpoint bucket (exact name): private, TLS only, versioned, encrypted, each checkpoint object expiring
  ``checkpointRetentionDays`` after its last write; the role reaches only its ``checkpoints/`` prefix, and only in
  buckets of its own account (``aws:ResourceAccount``), so a bucket name squatted elsewhere gets nothing.

Per region one security group (a spoke's with inline rules; the main region's with one standalone rule per
admitted range and one for the mesh group, so a new region or site only adds one); in the main region the role,
its policy, the profile (and the Session Manager attachment), and the bucket with its five settings (its TLS-
only policy included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
from lmrun.render.skypilot import SkyPilotMesh, SkyService, sky_elastic

SSH_PORT = 22


class SkyPilotInfraArgs(TypedDict):
    """Inputs of :class:`SkyPilotInfra`."""

    plan: SkyPilotPlan
    """Names, ingress and reads decided by :func:`lmrun.plan.skypilot.plan_skypilot`."""
    main_region: str
    """Where the role's and the bucket's provider is."""
    vpc_ids: Mapping[str, pulumi.Input[str]]
    """The mesh VPC per region (each gets the security group)."""
    mesh_security_group_ids: Mapping[str, pulumi.Input[str]]
    """The mesh security group of each VPC: the source of the all-traffic rule that stops SkyPilot's ``open_ports``
    from opening ports to the internet (it admits only instances the VPC's CIDR rule admits already)."""
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


@dataclass(frozen=True)
class _Admitted:
    """One rule of a SkyPilot group: all traffic (or TCP on one port) from/to one range, and what that range is."""

    what: str
    cidr: str
    description: str
    port: int | None = None

    @property
    def key(self) -> str:
        """A stable resource-name fragment (what the range is, and the port)."""
        return slug(self.what) + ("" if self.port is None else f"-tcp-{self.port}")

    def as_ingress(self) -> aws.ec2.SecurityGroupIngressArgs:
        protocol, port = ("-1", 0) if self.port is None else ("tcp", self.port)
        return aws.ec2.SecurityGroupIngressArgs(
            protocol=protocol, from_port=port, to_port=port, cidr_blocks=[self.cidr], description=self.description
        )

    def as_egress(self) -> aws.ec2.SecurityGroupEgressArgs:
        return aws.ec2.SecurityGroupEgressArgs(
            protocol="-1", from_port=0, to_port=0, cidr_blocks=[self.cidr], description=self.description
        )


def _admitted(plan: SkyPilotPlan, region: str) -> list[_Admitted]:
    rules = [_Admitted(what, cidr, f"all traffic from mesh {what}") for what, cidr in plan.ingress[region].items()]
    rules += [
        _Admitted(f"operator {cidr}", cidr, "SkyPilot's SSH from lmrun:operatorCidrs", SSH_PORT)
        for cidr in plan.ssh_cidrs
    ]
    return rules


MESH_GROUP_RULE = "all traffic from the mesh group (admits no one new; stops SkyPilot opening ports to 0.0.0.0/0)"


def sky_facts(plan: MeshPlan, vpc_names: Mapping[str, str], private_subnet_names: list[str]) -> SkyPilotMesh:
    """What ``lmrun sky render`` needs, from the mesh plan, the VPCs' ``Name`` tags and the private subnets'
    (the stack's output)."""
    sky = plan.skypilot
    if sky is None:
        raise ValueError("skypilot: the plan has no SkyPilot part")
    cluster = plan.cluster
    by_service: dict[str, SkyService] = {}
    for node in sorted(cluster.nodes.values(), key=lambda n: n.name):
        if node.pool is not None:
            continue  # a GPU pool node serves no model: its GPUs are SkyPilot's through Kubernetes
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
        private_subnet_names=list(private_subnet_names),
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
        controller_profile=sky.controller.name if sky.controller is not None else None,
        private_regions=sky.private_regions,
        elastic=tuple(sky_elastic(service) for service in sky.elastic),
    )


class SkyPilotInfra(pulumi.ComponentResource):
    """The instance profile, a security group per mesh VPC and the checkpoint bucket, by SkyPilot's names."""

    security_group_ids: dict[str, pulumi.Output[str]]
    instance_profile_name: pulumi.Output[str]
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, *, args: SkyPilotInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the SkyPilot role, profile, per-VPC security groups and checkpoint bucket from ``args``
        (:class:`SkyPilotInfraArgs`: the plan's names, the main region's provider and the mesh's VPCs); ``reads``
        must be exactly the role's intended reads."""
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
            provider=args["providers"][main],
            lifecycle_rules=checkpoint_lifecycle_rules(plan.checkpoint_retention_days),
            bucket_name=plan.bucket,
            versioned=True,
        ).bucket
        self.security_group_ids = {}
        for region, vpc_id in sorted(args["vpc_ids"].items()):
            on_region = pulumi.ResourceOptions(parent=self, provider=args["providers"][region])
            # The main region's group admits every region and site: standalone rules there, so adding a region
            # or a site adds a rule and changes no existing resource (a spoke's two ranges never change: inline).
            standalone = region == main
            rules = _admitted(plan, region)
            mesh_group = args["mesh_security_group_ids"][region]
            egress = _Admitted("internet", "0.0.0.0/0", "egress for packages, images and models")
            # Inline or standalone, never both: the provider would overwrite one with the other (an inline list,
            # even empty, owns every rule of its direction).
            group = aws.ec2.SecurityGroup(
                f"{name}-{slug(region)}-sg",
                name=plan.name,
                vpc_id=vpc_id,
                description="SkyPilot clusters of the lmrun mesh: inbound from mesh ranges only",
                ingress=None
                if standalone
                else [
                    *(rule.as_ingress() for rule in rules),
                    aws.ec2.SecurityGroupIngressArgs(
                        protocol="-1", from_port=0, to_port=0, security_groups=[mesh_group], description=MESH_GROUP_RULE
                    ),
                ],
                egress=None if standalone else [egress.as_egress()],
                tags=with_name({**tags, TAG_REGION: region}, plan.name),
                opts=on_region,
            )
            if standalone:
                prefix = f"{name}-{slug(region)}"
                aws.vpc.SecurityGroupEgressRule(
                    f"{prefix}-egress",
                    security_group_id=group.id,
                    ip_protocol="-1",
                    cidr_ipv4=egress.cidr,
                    description=egress.description,
                    tags=with_name({**tags, TAG_REGION: region}, f"{prefix}-egress"),
                    opts=on_region,
                )
                aws.vpc.SecurityGroupIngressRule(
                    f"{prefix}-from-mesh-group",
                    security_group_id=group.id,
                    ip_protocol="-1",
                    referenced_security_group_id=mesh_group,
                    description=MESH_GROUP_RULE,
                    tags=with_name({**tags, TAG_REGION: region}, f"{prefix}-from-mesh-group"),
                    opts=on_region,
                )
                for rule in rules:
                    rule_name = f"{prefix}-from-{rule.key}"
                    aws.vpc.SecurityGroupIngressRule(
                        rule_name,
                        security_group_id=group.id,
                        ip_protocol="-1" if rule.port is None else "tcp",
                        from_port=rule.port,
                        to_port=rule.port,
                        cidr_ipv4=rule.cidr,
                        description=rule.description,
                        tags=with_name({**tags, TAG_REGION: region}, rule_name),
                        opts=on_region,
                    )
            self.security_group_ids[region] = group.id
        self.instance_profile_name = identity.instance_profile_name
        self.bucket_name = bucket.bucket
        self.register_outputs({"instance_profile_name": self.instance_profile_name, "bucket_name": self.bucket_name})
