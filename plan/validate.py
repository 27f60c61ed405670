"""Every problem of a stack's config in one run: the stack file's, the spec's and the plan's, sorted by path.

The plan's checks (image pins, paths, AWS limits) also run when the spec has problems: on the part of the
config that is valid (:mod:`lmrun.spec.usable`), so a user fixes a broken stack in one pass, not in waves.
``__main__.py`` (under ``pulumi up``), ``lmrun plan`` (before it runs the program) and ``lmrun check``
(planning a preview's outputs) all go through :func:`checked_plan`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from lmrun.plan.mesh import MeshPlan, plan_mesh
from lmrun.spec.config import check_spec, config_namespace_issues, namespaced, unprefixed_secret_keys
from lmrun.spec.errors import ConfigError, ConfigIssue, PlanError, is_under
from lmrun.spec.model import MeshSpec
from lmrun.spec.usable import usable_config


def _plan_issues(
    raw: Mapping[str, Any], shape: Iterable[ConfigIssue], conflicts: Iterable[ConfigIssue], mesh: str
) -> list[ConfigIssue]:
    """The plan's issues about the valid part of a config whose spec has problems, at their original paths."""
    usable = usable_config(raw, shape, conflicts)
    spec = usable.spec() if usable is not None else None
    if usable is None or spec is None:
        return []
    try:
        plan_mesh(spec, mesh=mesh)
    except PlanError as exc:
        return [issue for issue in map(usable.original, exc.issues) if issue is not None]
    return []


def checked_plan(
    config: Mapping[str, Any],
    secret_keys: Collection[str] | None = None,
    *,
    mesh: str,
    file_issues: Iterable[ConfigIssue] = (),
) -> tuple[MeshSpec, MeshPlan]:
    """The spec and plan of a flat Pulumi config map (``secret_keys``: the full keys Pulumi marked secret, when
    known; ``file_issues``: what the stack file held that the map cannot carry).

    Raises :class:`ConfigError` with every problem of every stage, or :class:`PlanError` when only the plan
    has some. No two lines for one path: a problem of the stack file hides the spec's at or under its path,
    and a spec problem the plan's.
    """
    raw = namespaced(config)
    checked = check_spec(raw, secret_keys=unprefixed_secret_keys(secret_keys))
    earlier = [*file_issues, *config_namespace_issues(config)]
    if not earlier and not checked.issues and checked.spec is not None:
        return checked.spec, plan_mesh(checked.spec, mesh=mesh)
    spec_issues = [issue for issue in checked.issues if not is_under(issue.path, {i.path for i in earlier})]
    plan_issues = _plan_issues(raw, checked.shape, checked.conflicts, mesh)
    reported = {issue.path for issue in [*earlier, *spec_issues]}
    plan_issues = [issue for issue in plan_issues if not is_under(issue.path, reported)]
    if not earlier and not spec_issues:
        raise PlanError(plan_issues)
    raise ConfigError([*earlier, *spec_issues, *plan_issues])
