"""Which config namespaces a stack may use, checked over every key of the flat config map.

Pulumi refuses a stack-file key without a namespace (``ParseKey`` of pulumi/pulumi's
sdk/go/common/resource/config/key.go: "configuration keys should be of the form `<namespace>:<name>`"), but
it hands any namespaced key to the program, so ``lmrn:regions`` (a typo) would silently be a provider's
config that nothing reads. A stack of this project reads its own namespace, ``pulumi:`` (the engine's
settings) and the config of the providers the program creates; every other namespace is refused, with a
did-you-mean.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from lmrun.clouds import CLOUD_NAMES
from lmrun.spec.errors import NAMESPACE, ConfigIssue

ENGINE_NAMESPACE = "pulumi"
MESH_PROVIDERS: tuple[str, ...] = ("command", "kubernetes", "random")
"""The Pulumi packages the mesh uses whatever its clouds (the readiness gates, the K3s objects, generated
keys); each cloud's package is named like the cloud. tests/test_stack_file.py checks the list against the
providers a planned stack registers."""

NAMESPACES: tuple[str, ...] = (NAMESPACE, ENGINE_NAMESPACE, *CLOUD_NAMES, *MESH_PROVIDERS)
"""Every namespace a stack of this project may set keys in."""


def namespace_issues(keys: Iterable[str], known_keys: Collection[str]) -> list[ConfigIssue]:
    """One issue per key without a namespace or in a namespace no part of the stack reads; ``known_keys``
    are this project's own keys (without the namespace), for the did-you-mean."""
    issues: list[ConfigIssue] = []
    for key in keys:
        namespace, colon, name = key.partition(":")
        if not colon:
            own = f"did you mean {NAMESPACE}:{key}? " if key in known_keys else ""
            issues.append(
                ConfigIssue(
                    key,
                    f"has no namespace, and Pulumi refuses such a stack config key; {own}write it as "
                    f"{NAMESPACE}:<key> (this project) or <provider>:<key>",
                )
            )
        elif namespace not in NAMESPACES:
            close = difflib.get_close_matches(namespace, NAMESPACES, n=1)
            hint = f"did you mean {close[0]}:{name}? " if close else ""
            issues.append(
                ConfigIssue(
                    key,
                    f"unknown namespace {namespace!r}: no part of this stack reads it; {hint}"
                    f"namespaces this stack reads: {', '.join(NAMESPACES)}",
                )
            )
    return issues
