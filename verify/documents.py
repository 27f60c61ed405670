"""``lmrun check``: the offline checks on a file the Pulumi CLI wrote — a preview or a state export.

Why: the offline plan proves what the program *would* declare under mocks; a real ``pulumi preview --json``
shows what the engine and the providers will do, and ``pulumi stack export`` what exists. The same policy,
reachability and cost checks run on them (:func:`lmrun.verify.checks.run_checks`), printed by the same view.

The paths to check and the GPU fleet come from the stack's outputs (``reachability``, ``nodes``, ...). A
state export holds them; a preview does not (its digest is taken before outputs exist), so they are planned
again from the digest's ``config`` (pure: spec -> plan, no program run), or from ``--stack``/``--config-file``
when given. What a preview cannot tell is reported per path as undecidable (see
:mod:`lmrun.verify.reachability`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from lmrun.plan.exports import plan_exports
from lmrun.plan.validate import checked_plan
from lmrun.spec.stackfile import StackConfig
from lmrun.verify.checks import PlanReport, run_checks
from lmrun.verify.resources import Snapshot
from lmrun.verify.sources import BLINDED_SECRET, DocumentError, from_preview, from_state, read_document, stack_of

Kind = Literal["preview", "state"]
ARGUMENTS: dict[Kind, str] = {"preview": "--from-preview", "state": "--from-state"}


def read_snapshot(path: Path, kind: Kind) -> tuple[Snapshot, dict[str, str]]:
    """The resources of a preview or state file, and the preview's config ({} for a state export).

    Raises :class:`DocumentError` naming the option and the file when it is not such a document.
    """
    argument = ARGUMENTS[kind]
    document = read_document(path, argument)
    try:
        snapshot, config = from_preview(document) if kind == "preview" else (from_state(document), {})
    except DocumentError as exc:
        raise DocumentError(f"{argument} {path}: {exc}") from None
    if not snapshot.resources:
        raise DocumentError(f"{argument} {path}: holds no resources")
    return snapshot, config


def planned_outputs(config: Mapping[str, str], stack: str) -> dict[str, Any]:
    """The stack outputs known before any resource exists (regions, node ports, nodes, sites, reachability),
    planned from a flat config map; blinded values (``[secret]``) count as secret keys."""
    secret_keys = {key for key, value in config.items() if value == BLINDED_SECRET}
    return plan_exports(checked_plan(config, secret_keys, mesh=stack)[1])


def check_document(
    path: Path,
    kind: Kind,
    *,
    stack_config: StackConfig | None = None,
    policy_config: Mapping[str, Any] | None = None,
) -> PlanReport:
    """The offline checks over a preview or a state file (``stack_config``, when given, supplies the planned
    outputs the file lacks). Raises what :func:`run_checks` raises, and :class:`DocumentError`."""
    snapshot, config = read_snapshot(path, kind)
    named = stack_of(snapshot)
    stack = stack_config.stack if stack_config else named[0] if named else path.stem
    outputs = dict(snapshot.outputs)
    if "reachability" not in outputs:
        source = stack_config.config if stack_config else config
        if source:
            outputs = {**planned_outputs(source, stack), **outputs}
    return run_checks(stack, Snapshot(snapshot.resources, outputs, source=snapshot.source), policy_config=policy_config)
