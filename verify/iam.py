"""IAM policy evaluation for the subset of the policy language the mesh's roles use, three-valued.

Why here: the access check (:mod:`lmrun.verify.access`) must say which machine can read which secret from the
policies the resources declare, never from what the program meant them to say; that needs the evaluation rules
themselves, as the IAM User Guide states them:

- **Explicit deny wins.** A request is allowed only if some statement allows it and no statement denies it; with
  neither, it is implicitly denied ("Policy evaluation logic": "An explicit deny in any of these policies
  overrides the allow").
- **Action / NotAction, Resource / NotResource.** A statement applies when the action matches one of its
  ``Action`` patterns (or none of its ``NotAction`` patterns) and the resource matches one of its ``Resource``
  patterns (or none of its ``NotResource`` patterns) ("IAM JSON policy elements": NotAction, NotResource).
- **Wildcards.** ``*`` matches any run of characters and ``?`` exactly one, anywhere in the pattern. Actions
  match case-insensitively (``service:Action``); resource ARNs case-sensitively, ``*`` crossing ``/`` and ``:``
  ("Resource": a wildcard at the end of a segment "can expand to match beyond the colon boundaries";
  ``arn:aws:s3:::bucket/*/test/*`` matches ``bucket/1/2/test/3/object.jpg``).
- **Conditions** are not evaluated: an Allow with a ``Condition`` counts as allowing, a Deny with one as not
  denying. Both err towards more access, so the check can only report too much, never hide a grant.

Permissions boundaries, session policies and SCPs only ever remove access: leaving them out also errs towards
more access. What is not known (a policy a preview has not computed, a resource whose ARN is unknown) makes the
verdict ``None``: *cannot tell*, never a pass or a failure.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ALLOW = "Allow"
DENY = "Deny"


class PolicyDocumentError(ValueError):
    """A policy document that is not one (AWS would refuse it); the message says where."""

    internal = True  # turned into "cannot tell" by the caller; never reaches the CLI


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = ["." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """``ssm:GetParameter*`` matches ``ssm:getparameters``: wildcards anywhere, any case."""
    return _glob(pattern, True).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """``arn:aws:ssm:*:*:parameter/lmrun/*`` matches ``arn:aws:ssm:us-east-1:1:parameter/lmrun/x/y``."""
    return _glob(pattern, False).fullmatch(resource) is not None


def _strings(statement: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    if key not in statement:
        return None
    value = statement[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyDocumentError(f"{where}: {key} must be a string or a list of strings")
    return tuple(values)


@dataclass(frozen=True)
class Statement:
    """One statement of a policy, labelled with where it comes from."""

    source: str
    """The policy: the resource that declares it (an inline policy), or the managed policy with its version."""
    sid: str
    """Its ``Sid``, or ``Statement[i]`` when it has none."""
    effect: str
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    conditional: bool = False

    @property
    def label(self) -> str:
        return f"{self.source} ({self.sid})"

    def covers_action(self, action: str) -> bool:
        if self.actions is not None:
            return any(action_matches(p, action) for p in self.actions)
        return not any(action_matches(p, action) for p in self.not_actions or ())

    def covers_resource(self, resource: str | None) -> bool | None:
        """Whether the statement names ``resource``; None when that depends on a resource not known (None)."""
        patterns = self.resources if self.resources is not None else self.not_resources or ()
        if resource is None:
            if self.resources is not None and "*" in patterns:
                return True
            return None
        named = any(resource_matches(p, resource) for p in patterns)
        return named if self.resources is not None else not named

    def applies(self, action: str, resource: str | None) -> bool | None:
        """Whether the statement takes part in a request (three-valued); conditions as the module says."""
        if not self.covers_action(action):
            return False
        if self.effect == DENY and self.conditional:
            return False
        return self.covers_resource(resource)


def parse_policy(document: Any, source: str) -> list[Statement]:
    """The statements of a policy document (a JSON string or its parsed form).

    Raises :class:`PolicyDocumentError` for anything IAM would refuse to store: not JSON, no ``Statement``, an
    effect other than Allow/Deny, both or neither of Action/NotAction (or Resource/NotResource)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise PolicyDocumentError(f"{source}: not JSON ({exc.msg})") from None
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise PolicyDocumentError(f"{source}: not a policy document (no Statement)")
    raw = document["Statement"]
    statements = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(statements, list):
        raise PolicyDocumentError(f"{source}: Statement must be an object or a list")
    parsed = []
    for index, statement in enumerate(statements):
        where = f"{source} Statement[{index}]"
        if not isinstance(statement, Mapping):
            raise PolicyDocumentError(f"{where}: not an object")
        effect = statement.get("Effect")
        if effect not in (ALLOW, DENY):
            raise PolicyDocumentError(f"{where}: Effect must be Allow or Deny, not {effect!r}")
        actions, not_actions = _strings(statement, "Action", where), _strings(statement, "NotAction", where)
        resources, not_resources = _strings(statement, "Resource", where), _strings(statement, "NotResource", where)
        if (actions is None) == (not_actions is None):
            raise PolicyDocumentError(f"{where}: needs exactly one of Action and NotAction")
        if (resources is None) == (not_resources is None):
            raise PolicyDocumentError(f"{where}: needs exactly one of Resource and NotResource")
        sid = statement.get("Sid")
        parsed.append(
            Statement(
                source=source,
                sid=str(sid) if sid else f"Statement[{index}]",
                effect=str(effect),
                actions=actions,
                not_actions=not_actions,
                resources=resources,
                not_resources=not_resources,
                conditional=bool(statement.get("Condition")),
            )
        )
    return parsed


@dataclass(frozen=True)
class Policy:
    """A policy attached to an identity: its statements, or why they cannot be known."""

    source: str
    statements: tuple[Statement, ...] = ()
    unknown: str | None = None
    """Why the document cannot be read (a value a preview does not know, an unmodelled managed policy...)."""

    @classmethod
    def of(cls, document: Any, source: str) -> Policy:
        try:
            return cls(source, tuple(parse_policy(document, source)))
        except PolicyDocumentError as exc:
            return cls(source, unknown=str(exc))


@dataclass(frozen=True)
class Verdict:
    """Whether an identity may make a request: True, False, or None (cannot tell), with the deciding statements:
    the allows that grant it, or the explicit denies that refuse it (none for an implicit deny)."""

    allowed: bool | None
    statements: tuple[Statement, ...] = ()
    reason: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.statements)


def evaluate(policies: Iterable[Policy], action: str, resource: str | None) -> Verdict:
    """The IAM decision for ``action`` on ``resource`` (None: an ARN not known) under ``policies``."""
    policies = list(policies)
    statements = [s for p in policies for s in p.statements]
    applying = [(s, s.applies(action, resource)) for s in statements]
    denies = [s for s, applies in applying if s.effect == DENY and applies is True]
    if denies:
        return Verdict(False, tuple(denies), "explicitly denied")
    doubts = [p.unknown for p in policies if p.unknown is not None]
    doubts += [f"{s.label} may deny it" for s, applies in applying if s.effect == DENY and applies is None]
    allows = [s for s, applies in applying if s.effect == ALLOW and applies is True]
    maybe = [s for s, applies in applying if s.effect == ALLOW and applies is None]
    if doubts:
        return Verdict(None, tuple(allows), "; ".join(doubts))
    if allows:
        return Verdict(True, tuple(allows), "allowed")
    if maybe:
        return Verdict(None, tuple(maybe), "depends on a resource ARN not known yet")
    return Verdict(False, (), "no statement allows it")


def evaluate_any(policies: Sequence[Policy], requests: Iterable[tuple[str, str | None]]) -> Verdict:
    """Whether any of several requests is allowed (a secret read by any of its read actions): the first allowed
    one, else cannot tell if any is undecided, else denied (with every request's explicit denies)."""
    verdicts = [evaluate(policies, action, resource) for action, resource in requests]
    for verdict in verdicts:
        if verdict.allowed:
            return verdict
    undecided = [v for v in verdicts if v.allowed is None]
    if undecided:
        return undecided[0]
    denies = tuple(dict.fromkeys(s for v in verdicts for s in v.statements))
    return Verdict(False, denies, "explicitly denied" if denies else "no statement allows it")
