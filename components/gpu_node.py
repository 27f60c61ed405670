"""GpuNode: one GPU VM running vLLM and joining K3s, kept alive by an auto-scaling group of one.

The group spans every subnet (AZ) of the region, so a reclaimed spot instance or an AZ without capacity
is replaced automatically without a config change. A spot group may launch the node's instance type or its
alternatives (launch-template overrides, the plan's ``alternative_instance_types``: the same GPUs, each its
own spot pool) and then rebalances: ``capacity_rebalance`` starts a replacement in a healthier pool on the
rebalance signal, before the two-minute interruption notice. With a single type there is no other pool to move
to, only the same type in another AZ, which price-capacity-optimized allocation already picks at each launch,
so rebalancing stays off (it would trade a working instance for one in a pool no better). The group does not
wait for capacity:
``pulumi up`` must not hang on a GPU shortage. Launch-template changes roll the node (instance refresh).

Tags: the launch template carries only the node's identity tags (:func:`~lmrun.components.naming.identity_tags`,
which never change), on itself and on the root volume it creates; every tag, ``lmrun:tags`` included, reaches
the instance through the group (``propagate_at_launch``). So adding a tag updates the group in place and the
next instance it launches, and rolls nothing (a launch-template change would refresh the instance). "Tags are
not propagated to Amazon EBS volumes. To add tags to Amazon EBS volumes, specify the tags in a launch
template" (EC2 Auto Scaling User Guide, "Tag Auto Scaling groups and instances"): the root volume keeps the
identity tags, which name its mesh, node and role for cost allocation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from lmrun.components.instance_role import InstanceRole
from lmrun.components.instances import LAUNCH_TEMPLATE_IMDSV2_ONLY
from lmrun.components.naming import identity_tags, with_name
from lmrun.render.cloudinit import gzip_base64_user_data

ROOT_DEVICE = "/dev/sda1"
"""Root device of the Ubuntu-based Deep Learning AMIs."""


class GpuNodeArgs(TypedDict):
    """Inputs of :class:`GpuNode`. The region's AWS provider comes in ``opts.provider``."""

    instance_type: str
    """EC2 instance type chosen by the plan."""
    alternative_instance_types: NotRequired[Sequence[str]]
    """More instance types a spot node may run on (the same GPUs); none: only ``instance_type``."""
    spot: bool
    """Spot capacity (price-capacity-optimized) instead of on-demand."""
    disk_size_gb: int
    """Root volume size (encrypted gp3); holds the model weights."""
    ami_id: pulumi.Input[str]
    """GPU image with NVIDIA drivers, the AWS CLI and the SSM agent (Deep Learning Base AMI)."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Every subnet the node may launch in (one per AZ)."""
    security_group_ids: Sequence[pulumi.Input[str]]
    """Mesh security groups of the node's VPC."""
    user_data: pulumi.Input[str]
    """Rendered ``#cloud-config`` (parameter names only, never secret values)."""
    parameter_arns: Sequence[pulumi.Input[str]]
    """SSM parameters the node reads at boot (K3s agent token, Hugging Face token, Phoenix ingest key)."""
    tags: Mapping[str, str]
    """Tags for every taggable resource and for the instances the group launches (their identity tags also
    on the launch template and the root volume)."""


class GpuNode(pulumi.ComponentResource):
    """Identity, launch template and a one-instance auto-scaling group.

    On its own, from another project (the user data and image helpers are in :mod:`lmrun.components`)::

        node = GpuNode(
            "qwen",
            args={
                "instance_type": "g6.xlarge",
                "spot": True,
                "disk_size_gb": 256,
                "ami_id": gpu_image_id(config.require("gpuAmi"), region="eu-west-1"),
                "subnet_ids": subnet_ids,
                "security_group_ids": [security_group_id],
                "user_data": gpu_node_user_data(
                    name="qwen", model="Qwen/Qwen2.5-7B-Instruct", revision="a09a3545...", gpu="L4",
                    region="eu-west-1",
                ),
                "parameter_arns": [],
                "tags": {"team": "ml"},
            },
            opts=pulumi.ResourceOptions(provider=eu_west_1),
        )
    """

    launch_template_id: pulumi.Output[str]
    group_name: pulumi.Output[str]

    def __init__(self, name: str, *, args: GpuNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the node's identity, launch template and group from ``args`` (:class:`GpuNodeArgs`; the user
        data from :func:`gpu_node_user_data`, the image a pinned AMI id); ``opts.provider`` is the region's AWS
        provider."""
        super().__init__("lmrun:index:GpuNode", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = with_name(args["tags"], name)
        fixed = identity_tags(tags)

        identity = InstanceRole(
            f"{name}-identity", args={"reads": list(args["parameter_arns"]), "writes": [], "tags": tags}, opts=child
        )
        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=args["ami_id"],
            instance_type=args["instance_type"],
            iam_instance_profile={"arn": identity.instance_profile_arn},
            vpc_security_group_ids=list(args["security_group_ids"]),
            metadata_options=LAUNCH_TEMPLATE_IMDSV2_ONLY,
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "volume_size": args["disk_size_gb"],
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            # A launch template takes base64; gzip first keeps it under EC2's 16 KB raw (cloud-init gunzips).
            user_data=pulumi.Output.from_input(args["user_data"]).apply(gzip_base64_user_data),
            update_default_version=True,
            tag_specifications=[{"resource_type": "volume", "tags": fixed}],
            tags=fixed,
            opts=child,
        )
        template_ref = {"launch_template_id": template.id, "version": template.latest_version.apply(str)}
        alternatives = [t for t in args.get("alternative_instance_types", ()) if t != args["instance_type"]]
        capacity: dict[str, Any]
        if args["spot"]:
            launch: dict[str, Any] = {"launch_template_specification": template_ref}
            if alternatives:
                launch["overrides"] = [{"instance_type": t} for t in [args["instance_type"], *alternatives]]
            capacity = {
                "mixed_instances_policy": {
                    "instances_distribution": {
                        "on_demand_base_capacity": 0,
                        "on_demand_percentage_above_base_capacity": 0,
                        "spot_allocation_strategy": "price-capacity-optimized",
                    },
                    "launch_template": launch,
                },
                "capacity_rebalance": bool(alternatives),
            }
        else:
            capacity = {"launch_template": {"id": template.id, "version": template.latest_version.apply(str)}}
        group = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=1,
            max_size=1,
            desired_capacity=1,
            vpc_zone_identifiers=list(args["subnet_ids"]),
            health_check_type="EC2",
            wait_for_capacity_timeout="0",
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 0}},
            tags=[{"key": key, "value": value, "propagate_at_launch": True} for key, value in sorted(tags.items())],
            opts=child,
            **capacity,
        )

        self.launch_template_id = template.id
        self.group_name = group.name
        self.register_outputs({"launch_template_id": self.launch_template_id, "group_name": self.group_name})
