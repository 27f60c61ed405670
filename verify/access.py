"""Who can read and write each secret of a stack, computed from its recorded resources, and where that disagrees
with the intended matrix (:data:`lmrun.domain.access.ACCESS_MATRIX`).

Why: the secrets are only as private as the broadest grant on them, and a grant is easy to widen by accident (a
managed policy with ``"Resource": "*"``, a project-level binding). The table is computed the way the clouds decide:
each cloud folder's ``access_model`` module (``MODEL``, an :class:`AccessModel`, loaded for every cloud of
:mod:`lmrun.clouds`) maps the recorded machines to principals (instance or template -> instance profile -> role;
instance or template -> service account) and evaluates their grants on each secret of its stores. This module
adds the external sites' join bundles (held in Pulumi's state only), compares the result with the matrix and
names, for every disagreement, the secret, the principal and the statement that grants (or refuses) it.

It reads the same :class:`~lmrun.verify.resources.Snapshot` as every other check, so ``lmrun plan``, ``lmrun check
--from-preview`` and ``--from-state`` print the same table. What the source cannot tell (a first preview does not
know the policies, built from ARNs, nor a secret's value) is ``?``, never a disagreement.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from lmrun.clouds import CLOUDS, EXTERNAL_SITE, HUB_CLOUD, cloud_module
from lmrun.domain.access import BUNDLE, MESH, OPERATOR, SITE, Scope, intended
from lmrun.domain.errors import LmrunError
from lmrun.verify.iam import Verdict
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown, plain, unwrap
from lmrun.verify.user_data import USER_DATA_TYPES, user_data_text

UNDECIDED = "?"
"""In a row's ``readers``/``writers``: some principal's access cannot be told from the source."""
PULUMI_STATE = "Pulumi state"
OPERATOR_WRITES = "the program sets its value"


@dataclass(frozen=True)
class Principal:
    """A machine of the mesh as the access table names it."""

    label: str
    """``k3s-server``, ``gpu-node:<node>``, ``gateway:<site>``... (:func:`lmrun.domain.access.principal_label`)."""
    roles: frozenset[str]
    """Its role, and the roles of what it also hosts (``lmrun:hosts``); empty for a machine without a role."""
    cloud: str
    site: str | None = None
    machines: tuple[str, ...] = ()
    """The resources that run as it (instances, launch or instance templates)."""


@dataclass(frozen=True)
class SecretRow:
    """One secret: where it lives and every principal's verdict on reading and writing it."""

    name: str
    """The table's key: ``k3s/agent-token``, ``gcp-usc1/k3s-agent-token``, ``lab-onprem/join-bundle``."""
    scope: Scope
    key: str
    """Its line in the matrix (:attr:`lmrun.domain.access.SecretAccess.key`)."""
    store: str
    path: str
    resource: str
    """The resource holding it (the stack output for a join bundle)."""
    cloud: str | None = None
    site: str | None = None
    reads: Mapping[str, Verdict] = field(default_factory=dict)
    """Principal label -> may it read the value."""
    writes: Mapping[str, Verdict] = field(default_factory=dict)
    """Principal label -> may it write the value (``operator``: the program sets it)."""

    def allowed(self, kind: str) -> list[str]:
        verdicts = self.reads if kind == "read" else self.writes
        return sorted(label for label, verdict in verdicts.items() if verdict.allowed)

    def undecided(self, kind: str) -> list[str]:
        verdicts = self.reads if kind == "read" else self.writes
        return sorted(label for label, verdict in verdicts.items() if verdict.allowed is None)

    def to_json(self) -> dict[str, Any]:
        def listed(kind: str) -> list[str]:
            return self.allowed(kind) + ([UNDECIDED] if self.undecided(kind) else [])

        return {"store": self.store, "path": self.path, "readers": listed("read"), "writers": listed("write")}


def gather_principals(
    machines: Iterable[Resource],
    principal_of: Callable[[Resource], Principal],
    identity_of: Callable[[Resource], str | None],
) -> tuple[tuple[Principal, ...], dict[str, list[str | None]]]:
    """A cloud's principals by label (machines with one label merge their roles and resources), and the identities
    each label's machines run as (None where a machine's cannot be known)."""
    found: dict[str, Principal] = {}
    identities: dict[str, list[str | None]] = defaultdict(list)
    for machine in machines:
        principal = principal_of(machine)
        known = found.get(principal.label)
        if known is not None:
            principal = dataclasses.replace(
                known, roles=known.roles | principal.roles, machines=(*known.machines, *principal.machines)
            )
        found[principal.label] = principal
        identities[principal.label].append(identity_of(machine))
    return tuple(found.values()), dict(identities)


class AccessModel(Protocol):
    """A cloud's part of the access table (``<pkg>.access_model.MODEL``), built over one snapshot."""

    def __call__(self, snapshot: Snapshot) -> CloudAccess: ...


class CloudAccess(Protocol):
    @property
    def principals(self) -> Sequence[Principal]: ...

    def rows(self) -> Iterable[SecretRow]:
        """Every secret of the cloud's stores the snapshot holds, each with every principal's verdicts (the
        cloud's own principals; ``operator`` among the writers)."""
        ...


def access_models() -> tuple[AccessModel, ...]:
    ordered = [HUB_CLOUD, *(name for name in CLOUDS if name != HUB_CLOUD)]
    return tuple(cast(AccessModel, cloud_module(name, "access_model").MODEL) for name in ordered)


# --- join bundles ---------------------------------------------------------------------------------------------

_PRIVATE_KEY = re.compile(r"^\s*PrivateKey\s*=\s*(?P<key>\S+)\s*$", re.MULTILINE)


def _texts(resource: Resource) -> Iterator[str]:
    """Every text a resource carries: its string inputs, and its user data as cloud-init reads it."""
    stack: list[Any] = [unwrap(resource.inputs)]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    if resource.type in USER_DATA_TYPES:
        text = user_data_text(resource)
        if text is not None:
            yield text


def bundle_rows(snapshot: Snapshot, stored: Sequence[SecretRow]) -> list[SecretRow]:
    """Each external site's join bundle: read by the operator (it is a secret stack output) and by whoever reads a
    resource its private key also reached (a store's readers; ``anyone reading <resource>`` elsewhere)."""
    sites = snapshot.outputs.get("sites") or {}
    bundles = plain(snapshot.outputs.get("joinBundles"))
    by_resource = {row.resource: row for row in stored}
    rows = []
    for site, info in sorted(sites.items()) if isinstance(sites, Mapping) else ():
        if not isinstance(info, Mapping) or info.get("kind") != EXTERNAL_SITE:
            continue
        reads: dict[str, Verdict] = {OPERATOR: Verdict(True, reason="a secret stack output")}
        config = get(bundles, site, "config") if isinstance(bundles, Mapping) else None
        match = _PRIVATE_KEY.search(config) if isinstance(config, str) and not is_unknown(config) else None
        if match is None:
            reads[UNDECIDED] = Verdict(None, reason="the joinBundles output is not in the source")
        else:
            key = match.group("key")
            for resource in snapshot:
                if any(key in text for text in _texts(resource)):
                    row = by_resource.get(resource.name)
                    if row is None:
                        reads[f"anyone reading {resource.name}"] = Verdict(True, reason="the private key is in it")
                    else:
                        reads.update({k: v for k, v in row.reads.items() if v.allowed is not False})
        rows.append(
            SecretRow(
                name=f"{site}/join-bundle",
                scope=BUNDLE,
                key="join-bundle",
                store=PULUMI_STATE,
                path=f"joinBundles.{site}",
                resource="joinBundles",
                site=site,
                reads=reads,
                writes={OPERATOR: Verdict(True, reason=OPERATOR_WRITES)},
            )
        )
    return rows


# --- the table and the matrix ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """Where the computed access and the matrix differ."""

    secret: str
    principal: str
    problem: str
    """``reads it``, ``writes it``, ``cannot read it``, ``cannot write it`` or ``is not in the access matrix``."""
    statements: tuple[str, ...] = ()
    """The statements that grant it (or refuse it)."""

    def __str__(self) -> str:
        how = f": {'; '.join(self.statements)}" if self.statements else ""
        return f"{self.secret}: {self.principal} {self.problem}{how}"


@dataclass(frozen=True)
class AccessTable:
    principals: tuple[Principal, ...]
    rows: tuple[SecretRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {row.name: row.to_json() for row in self.rows}

    @property
    def disagreements(self) -> list[Disagreement]:
        by_label = {p.label: p for p in self.principals}
        found: list[Disagreement] = []
        for row in self.rows:
            line = intended(row.scope, row.key)
            if line is None:
                found.append(Disagreement(row.name, "the secret", "is not in the access matrix"))
                continue
            for kind, roles in (("read", line.readers), ("write", line.writers)):
                found += _disagreements(row, kind, roles, by_label)
        return found


def _roles(label: str, by_label: Mapping[str, Principal]) -> frozenset[str]:
    if label == OPERATOR:
        return frozenset({OPERATOR})
    principal = by_label.get(label)
    return principal.roles if principal is not None else frozenset()


def _in_scope(principal: Principal, row: SecretRow) -> bool:
    """Whether the matrix's roles bind this machine for this secret (same cloud's store, same site)."""
    if row.scope == SITE:
        return principal.site == row.site and principal.cloud == row.cloud
    return row.scope == MESH and principal.cloud == row.cloud and principal.site is None


def _disagreements(
    row: SecretRow, kind: str, roles: frozenset[str], by_label: Mapping[str, Principal]
) -> list[Disagreement]:
    verdicts = row.reads if kind == "read" else row.writes
    found = []
    for label, verdict in sorted(verdicts.items()):
        if label == UNDECIDED:
            continue
        expected = bool(_roles(label, by_label) & roles)
        principal = by_label.get(label)
        if principal is not None and not _in_scope(principal, row):
            expected = False
        if verdict.allowed and not expected:
            found.append(Disagreement(row.name, label, f"{kind}s it", verdict.labels))
        elif verdict.allowed is False and expected:
            why = verdict.labels or (verdict.reason,)
            found.append(Disagreement(row.name, label, f"cannot {kind} it", why))
    return found


def access_table(snapshot: Snapshot) -> AccessTable:
    """Every principal and every secret of the snapshot, with who can read and write it."""
    principals: list[Principal] = []
    rows: list[SecretRow] = []
    for model in access_models():
        cloud = model(snapshot)
        principals += cloud.principals
        rows += cloud.rows()
    rows += bundle_rows(snapshot, rows)
    return AccessTable(tuple(principals), tuple(sorted(rows, key=lambda r: (r.scope != MESH, r.name))))


def markdown(table: AccessTable) -> str:
    """The table as Markdown (the README's "who can read what", generated from ``global``'s plan)."""
    lines = ["| secret | holds | store | read by | written by |", "|---|---|---|---|---|"]
    for row in table.rows:
        line = intended(row.scope, row.key)
        listed = row.to_json()
        lines.append(
            f"| `{row.name}` | {line.holds if line else '(not in the matrix)'} | {row.store} | "
            f"{', '.join(listed['readers'])} | {', '.join(listed['writers'])} |"
        )
    return "\n".join(lines) + "\n"


class AccessMismatchError(LmrunError):
    """The computed access to some secret differs from the intended matrix (a grant too broad or missing).

    Not a config error: the program declared resources that grant what the mesh promises they do not (or refuse
    what a machine needs). ``lmrun plan`` and ``lmrun check`` report it and exit 1.
    """

    label = "error: secret access mismatch"

    def __init__(self, stack: str, disagreements: Sequence[Disagreement]) -> None:
        self.disagreements = tuple(disagreements)
        super().__init__(
            f"stack {stack}: {len(self.disagreements)} disagreement(s) with the access matrix "
            "(lmrun.domain.access):\n" + "\n".join(str(d) for d in self.disagreements)
        )
