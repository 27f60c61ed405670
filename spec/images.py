"""Spec of pinned images: ``lmrun:images`` (an AMI id per role, per AWS region; written by ``lmrun images
sync``) and ``images`` of a site (its cloud's exact image names, pinned by hand).

A pin is checked for its shape here; whether the mesh has every image it needs is the plan's question
(:mod:`lmrun.plan.images`), which knows which regions and sites run which VMs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from lmrun.aws.images import PUBLIC_IMAGES, ami_id
from lmrun.domain.names import IMAGE_GPU, IMAGE_SERVER
from lmrun.spec.model_base import SpecModel

AmiId = Annotated[str, AfterValidator(ami_id)]


class RegionImages(SpecModel):
    """The pinned AMIs of one AWS region of the mesh, per VM role."""

    server: AmiId | None = Field(
        default=None,
        description=f"AMI id (`ami-` and 8 or 17 hex digits) of {PUBLIC_IMAGES[IMAGE_SERVER].description} for the "
        "K3s server, the Phoenix node and the WireGuard hub; needed in lmrun:mainRegion.",
    )
    gpu: AmiId | None = Field(
        default=None,
        description=f"AMI id of {PUBLIC_IMAGES[IMAGE_GPU].description} for GPU nodes; needed in every region "
        "with AWS nodes.",
    )


class SiteImages(SpecModel):
    """The pinned images of one site, per VM role, in its cloud's own form (never a family)."""

    gateway: str | None = Field(
        default=None,
        description="Image of the site's WireGuard gateway, e.g. "
        "`projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260918` (GCP); always needed.",
    )
    gpu: str | None = Field(default=None, description="Image of the site's GPU nodes; needed when the site has nodes.")
