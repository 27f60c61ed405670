"""Pulumi ComponentResources of the mesh, reusable from other projects.

Components take typed args and explicit providers and never read stack config.
"""

from lmrun.components.mesh import Mesh, MeshArgs
from lmrun.components.peering import PeeringHub, PeeringHubArgs, PeerVpc
from lmrun.components.vpc import RegionalVpc, RegionalVpcArgs

__all__ = [
    "Mesh",
    "MeshArgs",
    "PeerVpc",
    "PeeringHub",
    "PeeringHubArgs",
    "RegionalVpc",
    "RegionalVpcArgs",
]
