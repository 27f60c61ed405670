"""Declared client -> service paths (``lmrun:paths``): what the mesh must carry, checked against its topology."""

from __future__ import annotations

from pydantic import Field

from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import Name


class PathSpec(SpecModel):
    """Clients in ``from`` (an AWS region of the mesh or a site) call ``to`` (a service on its node port)."""

    source: str = Field(alias="from", description="Where the clients run: an AWS region of the mesh or a site name.")
    to: Name = Field(description="The service they call (a name from the node-port map).")
