"""The clouds whose networks the reachability walk reads: the one place a cloud's model is registered.

A new cloud adds ``<cloud>/network_model.py`` (a :class:`lmrun.verify.network.NetworkModel`) and one line
here. The first model holds the mesh's regions (the main region and the spokes).
"""

from __future__ import annotations

from lmrun.aws.network_model import AwsNetwork
from lmrun.gcp.network_model import GcpNetwork
from lmrun.verify.network import NetworkModel

NETWORK_MODELS: tuple[type[NetworkModel], ...] = (AwsNetwork, GcpNetwork)
