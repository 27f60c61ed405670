"""GCP's part of the access table: who can read and write each Secret Manager secret of the stack's sites.

- **Principals**: every instance and instance template is a machine; its ``lmrun_role``, ``lmrun_node`` and
  ``lmrun_site`` labels name it, and its ``serviceAccount.email`` is its identity (a ``serviceaccount.Account`` of
  the stack, or the email itself).
- **Grants**: Secret Manager IAM on the secret (``SecretIamMember``, ``SecretIamBinding``, ``SecretIamPolicy``) and
  on its project (``projects.IAMMember``, ``IAMBinding``, ``IAMPolicy``: a project-level role reaches every secret
  of the project). Reading is ``secretmanager.versions.access``, writing ``secretmanager.versions.add`` ("Secret
  Manager roles and permissions", IAM docs): :data:`READ_ROLES` and :data:`WRITE_ROLES` hold the predefined roles
  that carry them (the basic Owner and Editor roles counted as both, to err towards more access); a custom role
  (``projects/.../roles/...``) is taken to carry both; other predefined roles carry no Secret Manager permission.
  ``allUsers`` and ``allAuthenticatedUsers`` reach every identity. IAM conditions are not evaluated (a conditional
  binding counts as granting). The operator writes every secret the program gives a ``SecretVersion``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lmrun.domain.access import OPERATOR, SITE, principal_label
from lmrun.domain.secrets import site_secret_kind
from lmrun.verify import tokens
from lmrun.verify.access import OPERATOR_WRITES, Principal, SecretRow, gather_principals
from lmrun.verify.iam import ALLOW, Statement, Verdict
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown, items, plain

CLOUD: Final = "gcp"
MACHINE_TYPES = (tokens.GCP_INSTANCE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE)
READ_ROLES: Final = frozenset(
    {"roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner", "roles/editor"}
)
WRITE_ROLES: Final = frozenset(
    {
        "roles/secretmanager.secretVersionAdder",
        "roles/secretmanager.secretVersionManager",
        "roles/secretmanager.admin",
        "roles/owner",
        "roles/editor",
    }
)
EVERYONE = frozenset({"allUsers", "allAuthenticatedUsers"})
ANYONE = "anyone"
"""The principal of a binding to ``allUsers``/``allAuthenticatedUsers`` (besides every machine)."""
ROLE_LABEL, NODE_LABEL, SITE_LABEL = "lmrun_role", "lmrun_node", "lmrun_site"


def _known(value: Any) -> str | None:
    value = plain(value)
    return value if isinstance(value, str) and not is_unknown(value) else None


def _grants(role: str | None) -> tuple[bool | None, bool | None]:
    """(reads, writes) a role carries; None when the role is not known."""
    if role is None:
        return None, None
    if not role.startswith("roles/"):
        return True, True  # a custom role: not modelled, taken to carry both
    return role in READ_ROLES, role in WRITE_ROLES


@dataclass(frozen=True)
class _Binding:
    """One role granted to some members, on one secret (``secret``) or a whole project (``project``)."""

    resource: Resource
    role: str | None
    members: frozenset[str]
    """Identity keys: an Account's URN, ``serviceAccount:<email>``, ``allUsers``..."""
    unknown_members: bool
    secret: str | None = None
    project: str | None = None
    unresolved: bool = False
    """The secret (or project) it is on is not known: it may be on any."""

    @property
    def label(self) -> str:
        return f"{self.resource.name} ({self.role or '?'})"

    def statement(self) -> Statement:
        return Statement(self.resource.name, self.role or "?", ALLOW, ("*",), None, ("*",), None)


class GcpAccess:
    """The machines, service accounts, secrets and Secret Manager bindings of a snapshot, indexed once."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._emails = {
            email: account.urn
            for account in snapshot.of_type(tokens.GCP_SERVICE_ACCOUNT)
            if (email := _known(account.outputs.get("email")))
        }
        self._principals, self._identities = gather_principals(
            snapshot.of_type(*MACHINE_TYPES),
            self._principal_of,
            lambda m: self._identity(m, ("serviceAccount", "email")),
        )
        self._secrets = {secret.urn: secret for secret in snapshot.of_type(tokens.GCP_SECRET)}
        self._bindings = self._index_bindings()

    @property
    def principals(self) -> Sequence[Principal]:
        return self._principals

    @staticmethod
    def _principal_of(machine: Resource) -> Principal:
        labels = get(machine.inputs, "labels")
        labels = labels if isinstance(labels, Mapping) else {}
        role, site = _known(labels.get(ROLE_LABEL)), _known(labels.get(SITE_LABEL))
        if role is None:
            return Principal(f"machine:{machine.name}", frozenset(), CLOUD, site, (machine.name,))
        label = principal_label(role, node=_known(labels.get(NODE_LABEL)), site=site)
        return Principal(label, frozenset({role}), CLOUD, site, (machine.name,))

    def _identity(self, resource: Resource, path: tuple[str | int, ...]) -> str | None:
        """The identity key of a machine's service account: its Account's URN, else ``serviceAccount:<email>``;
        None when not known."""
        value = _known(get(resource.inputs, *path))
        if value is not None:
            return self._identity_of_value(value if value.startswith("serviceAccount:") else f"serviceAccount:{value}")
        account = self.snapshot.ref(resource, path, (tokens.GCP_SERVICE_ACCOUNT,))
        return account.urn if account is not None else None

    # --- bindings --------------------------------------------------------------------------------------------
    def _members(self, resource: Resource, key: str) -> tuple[frozenset[str], bool]:
        """The identity keys of a member (or members) input, and whether some of them are not known."""
        raw = plain(resource.inputs.get(key))
        values = items(raw) if key == "members" else [raw]
        known = {self._identity_of_value(v) for v in values if _known(v) is not None}
        unknown = is_unknown(raw) or any(_known(v) is None for v in values)
        if unknown:
            accounts = self.snapshot.refs(resource, key, (tokens.GCP_SERVICE_ACCOUNT,))
            known |= {a.urn for a in accounts}
            unknown = not accounts
        return frozenset(known), unknown

    def _identity_of_value(self, value: Any) -> str:
        member = str(plain(value))
        if member.startswith("serviceAccount:"):
            return self._emails.get(member.removeprefix("serviceAccount:"), member)
        return member

    def _secret_of(self, binding: Resource) -> str | None:
        secret = self.snapshot.ref(binding, "secretId", (tokens.GCP_SECRET,))
        if secret is not None:
            return secret.urn
        value = _known(get(binding.inputs, "secretId"))
        for candidate in self._secrets.values():
            if value is not None and value in (get(candidate.inputs, "secretId"), candidate.id):
                return candidate.urn
        return None

    def _policy_bindings(self, resource: Resource) -> list[tuple[str | None, frozenset[str], bool]] | None:
        data = _known(get(resource.inputs, "policyData"))
        if data is None:
            return None
        try:
            document = json.loads(data)
        except json.JSONDecodeError:
            return None
        return [
            (str(b.get("role")), frozenset(self._identity_of_value(m) for m in b.get("members") or []), False)
            for b in document.get("bindings") or []
            if isinstance(b, Mapping)
        ]

    def _index_bindings(self) -> list[_Binding]:
        bindings: list[_Binding] = []
        secret_types = (tokens.GCP_SECRET_IAM_MEMBER, tokens.GCP_SECRET_IAM_BINDING, tokens.GCP_SECRET_IAM_POLICY)
        project_types = (tokens.GCP_PROJECT_IAM_MEMBER, tokens.GCP_PROJECT_IAM_BINDING, tokens.GCP_PROJECT_IAM_POLICY)
        listed = (tokens.GCP_SECRET_IAM_BINDING, tokens.GCP_PROJECT_IAM_BINDING)
        documents = (tokens.GCP_SECRET_IAM_POLICY, tokens.GCP_PROJECT_IAM_POLICY)
        for resource in self.snapshot.of_type(*secret_types, *project_types):
            on_secret = resource.type in secret_types
            secret = self._secret_of(resource) if on_secret else None
            project = None if on_secret else _known(get(resource.inputs, "project"))
            grants: list[tuple[str | None, frozenset[str], bool]]
            if resource.type in documents:
                grants = self._policy_bindings(resource) or [(None, frozenset(), True)]
            else:
                members, unknown = self._members(resource, "members" if resource.type in listed else "member")
                grants = [(_known(get(resource.inputs, "role")), members, unknown)]
            unresolved = secret is None and project is None
            bindings += [_Binding(resource, r, m, u, secret, project, unresolved) for r, m, u in grants]
        return bindings

    # --- secrets ---------------------------------------------------------------------------------------------
    def _project_of(self, secret: Resource) -> str | None:
        provider = self.snapshot.by_urn.get(secret.provider_urn)
        return _known(get(secret.inputs, "project")) or (
            _known(get(provider.inputs, "project")) if provider is not None else None
        )

    def _verdict(self, label: str, secret: Resource, project: str | None, kind: int) -> Verdict:
        """May a principal read (``kind`` 0) or write (1) a secret, and by which bindings."""
        identities = set(self._identities.get(label, [None]))
        granting, doubts = [], []
        for binding in self._bindings:
            on_it = binding.secret == secret.urn or (binding.project is not None and binding.project == project)
            carries = _grants(binding.role)[kind]
            if not (on_it or binding.unresolved) or carries is False:
                continue
            reaches: bool | None
            if binding.members & EVERYONE or binding.members & identities:
                reaches = True
            elif None in identities or binding.unknown_members:
                reaches = None
            else:
                continue
            if reaches and carries and not binding.unresolved:
                granting.append(binding.statement())
            else:
                doubts.append(f"{binding.label} may grant it")
        if granting:
            return Verdict(True, tuple(granting), "granted")
        if doubts:
            return Verdict(None, (), "; ".join(doubts))
        return Verdict(False, (), "no binding grants it")

    def _everyone(self, secret: Resource, project: str | None, kind: int) -> Verdict | None:
        for binding in self._bindings:
            on_it = binding.secret == secret.urn or (binding.project is not None and binding.project == project)
            if on_it and binding.members & EVERYONE and _grants(binding.role)[kind]:
                return Verdict(True, (binding.statement(),), "granted to everyone")
        return None

    def _operator(self, secret: Resource) -> Verdict:
        for version in self.snapshot.dependents(secret, tokens.GCP_SECRET_VERSION):
            if "secretData" in version.inputs:
                return Verdict(True, reason=OPERATOR_WRITES)
        return Verdict(False, reason="the program gives it no version")

    def rows(self) -> Iterable[SecretRow]:
        for secret in self._secrets.values():
            secret_id = _known(get(secret.inputs, "secretId")) or secret.name
            labels = get(secret.inputs, "labels")
            site = _known(labels.get(SITE_LABEL)) if isinstance(labels, Mapping) else None
            kind = site_secret_kind(secret_id) or secret_id
            project = self._project_of(secret)
            reads = {p.label: self._verdict(p.label, secret, project, 0) for p in self._principals}
            writes = {p.label: self._verdict(p.label, secret, project, 1) for p in self._principals}
            for index, verdicts in ((0, reads), (1, writes)):
                everyone = self._everyone(secret, project, index)
                if everyone is not None:
                    verdicts[ANYONE] = everyone
            writes[OPERATOR] = self._operator(secret)
            yield SecretRow(
                name=f"{site or '?'}/{kind}",
                scope=SITE,
                key=kind,
                store=f"Secret Manager ({project or '?'})",
                path=f"projects/{project or '?'}/secrets/{secret_id}",
                resource=secret.name,
                cloud=CLOUD,
                site=site,
                reads=reads,
                writes=writes,
            )


MODEL = GcpAccess
"""Builds the GCP part of the access table over a snapshot (:class:`lmrun.verify.access.AccessModel`)."""
