"""The public AWS images the mesh boots, and the shape of a pinned AMI id.

The program never looks an image up: every AMI id is pinned in the stack config (``lmrun:images``), so
``pulumi preview`` is deterministic and an image upgrade is a reviewed config change. ``lmrun images sync``
reads the public SSM parameters below (the image AWS currently publishes under each name, per region) and
writes their values into the stack file; nothing else reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmrun.domain.names import IMAGE_GPU, IMAGE_SERVER

AMI_ID = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
"""An AMI id: ``ami-`` and 8 (older images) or 17 lowercase hex digits."""


@dataclass(frozen=True)
class PublicImage:
    """An image role's public SSM parameter: its value, per region, is the current AMI id."""

    parameter: str
    description: str


PUBLIC_IMAGES: dict[str, PublicImage] = {
    IMAGE_SERVER: PublicImage(
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "Amazon Linux 2023 (x86_64)",
    ),
    IMAGE_GPU: PublicImage(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)",
    ),
}
"""Image role -> its public parameter. ``server``: the main region's K3s server, Phoenix node and WireGuard
hub; ``gpu``: the GPU nodes of a region (NVIDIA driver, CUDA, the AWS CLI and the SSM agent preinstalled)."""


def ami_id(value: str) -> str:
    """``value`` if it is an AMI id; ValueError (for the spec) otherwise."""
    if not AMI_ID.match(value):
        raise ValueError(
            f"{value!r} is not an AMI id ('ami-' and 8 or 17 lowercase hex digits, e.g. 'ami-0123456789abcdef0')"
        )
    return value
