"""The mesh's EC2 building blocks with their secure defaults, in one place.

Every VM requires IMDSv2 (no token-less metadata calls, one network hop so containers cannot reach it),
boots from an encrypted gp3 volume and is replaced when its user data changes (bootstrap is cloud-init,
which runs once). User data goes gzip-compressed (``user_data_base64``): EC2 caps it at 16 KB raw and
cloud-init decompresses it first. Stateful data lives on separate encrypted volumes that are protected, retained on
delete and tagged ``lmrun:stateful`` so the policy pack can check them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from lmrun.components.naming import with_name
from lmrun.render.cloudinit import gzip_base64_user_data

IMDSV2_ONLY: aws.ec2.InstanceMetadataOptionsArgsDict = {
    "http_tokens": "required",
    "http_endpoint": "enabled",
    "http_put_response_hop_limit": 1,
}
LAUNCH_TEMPLATE_IMDSV2_ONLY: aws.ec2.LaunchTemplateMetadataOptionsArgsDict = {
    "http_tokens": "required",
    "http_endpoint": "enabled",
    "http_put_response_hop_limit": 1,
}
STATEFUL_TAG = "lmrun:stateful"


def mesh_instance(
    name: str,
    *,
    ami: pulumi.Input[str],
    instance_type: str,
    subnet_id: pulumi.Input[str],
    security_group_ids: Sequence[pulumi.Input[str]],
    instance_profile: pulumi.Input[str],
    user_data: pulumi.Input[str],
    root_gb: int,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    private_ip: str | None = None,
    source_dest_check: bool = True,
) -> aws.ec2.Instance:
    """An instance with the mesh's defaults. A fixed ``private_ip`` implies ``delete_before_replace``:
    AWS gives the address to the new instance only once the old one is gone.

    ``user_data`` is the rendered text; the instance gets it gzip-compressed through ``user_data_base64``
    (pulumi-aws: "gzip-encoded user data must be base64-encoded and passed via this argument";
    ``user_data_replace_on_change`` applies to it as to ``user_data``)."""
    if private_ip is not None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
    root: aws.ec2.InstanceRootBlockDeviceArgsDict = {
        "encrypted": True,
        "volume_type": "gp3",
        "volume_size": root_gb,
        "tags": with_name(tags, name),
    }
    return aws.ec2.Instance(
        name,
        ami=ami,
        instance_type=instance_type,
        subnet_id=subnet_id,
        private_ip=private_ip,
        source_dest_check=source_dest_check,
        vpc_security_group_ids=list(security_group_ids),
        iam_instance_profile=instance_profile,
        metadata_options=IMDSV2_ONLY,
        root_block_device=root,
        user_data_base64=pulumi.Output.from_input(user_data).apply(gzip_base64_user_data),
        user_data_replace_on_change=True,
        tags=with_name(tags, name),
        opts=opts,
    )


def stateful_volume(
    name: str, *, availability_zone: pulumi.Input[str], size_gb: int, tags: Mapping[str, str], parent: pulumi.Resource
) -> aws.ebs.Volume:
    """An encrypted gp3 data volume that neither a replacement nor ``pulumi destroy`` can delete."""
    return aws.ebs.Volume(
        name,
        availability_zone=availability_zone,
        size=size_gb,
        type="gp3",
        encrypted=True,
        tags={**with_name(tags, name), STATEFUL_TAG: "true"},
        opts=pulumi.ResourceOptions(parent=parent, protect=True, retain_on_delete=True),
    )


def attach_volume(
    name: str, *, device: str, volume: aws.ebs.Volume, instance: aws.ec2.Instance, parent: pulumi.Resource
) -> aws.ec2.VolumeAttachment:
    """Attach at a stable device; a new instance gets the volume after the old attachment is gone."""
    return aws.ec2.VolumeAttachment(
        name,
        device_name=device,
        volume_id=volume.id,
        instance_id=instance.id,
        stop_instance_before_detaching=True,
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )
