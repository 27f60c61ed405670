"""The lmrun-mesh CrossGuard policy pack: ``pulumi preview --policy-pack policy``.

Only builds the pack: constructing ``PolicyPack`` starts the analyzer's gRPC server and blocks, so nothing
else may import this module. The rules live in :mod:`lmrun.policy.rules`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from lmrun.policy.rules import PACK_NAME, build_policies

PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.ADVISORY)
