"""The clouds whose networks the reachability walk reads: every cloud of :mod:`lmrun.clouds`, each through its
``<pkg>.network_model`` module's ``MODEL`` (a :class:`lmrun.verify.network.NetworkModel` subclass). A new cloud
adds that module; its registration line in :mod:`lmrun.clouds` is the only other edit. The hub cloud's model
comes first: it holds the mesh's regions (the main region and the spokes).
"""

from __future__ import annotations

from typing import cast

from lmrun.clouds import CLOUDS, HUB_CLOUD, cloud_module
from lmrun.verify.network import NetworkModel


def network_models() -> tuple[type[NetworkModel], ...]:
    ordered = [HUB_CLOUD, *(name for name in CLOUDS if name != HUB_CLOUD)]
    return tuple(cast(type[NetworkModel], cloud_module(name, "network_model").MODEL) for name in ordered)
