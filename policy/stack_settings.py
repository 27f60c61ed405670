"""The values a policy rule checks that the stack itself decides: the hub's WireGuard port, the peering
quota and the elastic services' spot regions. The pack takes them from the stack, so a valid config never fails a
mandatory rule (``lmrun:wireguard.port: 51821`` once failed ``no-public-ingress``, which only knew 51820).

Offline (``lmrun plan``, ``lmrun check``) they come from the plan's ``policySettings`` export
(:func:`lmrun.plan.exports.policy_settings`); in the CrossGuard pack, from the stack config Pulumi hands the
pack (pulumi/pulumi#20570: policy packs read stack config), planned the same way. A property set in the pack
config (``--policy-pack-config``) still wins: the organisation's word over the stack's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from lmrun.domain.errors import LmrunError

STACK_DECIDED = ("wireguardPort", "maxPeerings", "elasticServices")
"""Rule properties whose default is the stack's value (their JSON schema carries no default, so the engine
leaves them unset unless the pack config sets them)."""


def stack_defaults(defaults: Mapping[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """A rule's ``defaults`` with the stack's value of each property the stack decides."""
    found = {key: value for key, value in (settings or {}).items() if key in STACK_DECIDED and key in defaults}
    return {**defaults, **found}


@functools.cache
def current_stack_settings() -> dict[str, Any]:
    """The running stack's settings, from the config Pulumi gave the pack; {} when that config does not plan
    (the program refuses it anyway, with every reason)."""
    from lmrun.plan.exports import policy_settings
    from lmrun.plan.validate import checked_plan
    from lmrun.spec.config import current_pulumi_config, current_secret_keys

    try:
        _, plan = checked_plan(
            current_pulumi_config(), current_secret_keys(), mesh=os.environ.get("PULUMI_STACK", "stack")
        )
    except LmrunError:
        return {}
    return policy_settings(plan)
