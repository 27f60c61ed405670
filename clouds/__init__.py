"""The clouds of the mesh by name: the one place a cloud's name is mapped to its folder.

AWS is the hub cloud: the fabric (peered VPCs), the K3s server, Phoenix and the WireGuard hub live there,
and its GPU nodes live in the mesh's AWS regions. Every other cloud is a *site cloud*: its locations join
the hub through WireGuard, and its GPU nodes live in its sites. A site of kind ``external`` has no cloud
code at all (any other cloud or on-prem, joined by a bundle).

A cloud is a package with one module per role, each exposing one object that implements that role's
protocol (the protocol lives in the layer that uses it):

===========  ======================  ==========  ==============================================  ===========
role         module                  object      protocol                                        layer
===========  ======================  ==========  ==============================================  ===========
rules        ``<pkg>.rules``         ``RULES``   :class:`lmrun.spec.cloud_rules.CloudRules`      spec
placement    ``<pkg>.placement``     ``PLACER``  :class:`lmrun.plan.placement.CloudPlacement`    plan
secrets      ``<pkg>.secret_store``  a class     :class:`lmrun.render.secret_store.SecretStore`  render
site         ``<pkg>.site``          ``SITES``   :class:`lmrun.components.site_cloud.SiteCloud`  components
network      ``<pkg>.network_model`` ``MODEL``   :class:`lmrun.verify.network.NetworkModel`      checks
access       ``<pkg>.access_model``  ``MODEL``   :class:`lmrun.verify.access.AccessModel`        checks
===========  ======================  ==========  ==============================================  ===========

Site clouds implement every role; the hub cloud implements all but ``site`` (its hub components are the
mesh's own, in ``lmrun.components``). docs/architecture.md says how to add a cloud.
"""

from __future__ import annotations

import importlib
from types import ModuleType

CLOUDS: dict[str, str] = {"aws": "lmrun.aws", "gcp": "lmrun.gcp"}
"""Cloud name (as written in stack config) -> its package. A new cloud is a folder and a line here."""

HUB_CLOUD = "aws"
"""The cloud of the main region and the spoke regions."""

EXTERNAL_SITE = "external"
"""The site kind with no cloud code: its gateway joins with a bundle from ``lmrun join-bundle``."""

CLOUD_NAMES: tuple[str, ...] = tuple(CLOUDS)
SITE_CLOUDS: tuple[str, ...] = tuple(name for name in CLOUDS if name != HUB_CLOUD)
SITE_KINDS: tuple[str, ...] = (*SITE_CLOUDS, EXTERNAL_SITE)


def cloud_module(cloud: str, role: str) -> ModuleType:
    """The module implementing ``role`` for ``cloud`` (imported on first use, so lower layers can dispatch
    to a cloud without importing its higher-layer parts). KeyError for an unknown cloud."""
    return importlib.import_module(f"{CLOUDS[cloud]}.{role}")
