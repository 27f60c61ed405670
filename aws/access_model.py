"""AWS's part of the access table: who can read and write each SSM SecureString of the stack.

- **Principals**: every instance and launch template is a machine; its ``lmrun:role`` (and ``lmrun:node``,
  ``lmrun:hosts``) tags name it, and its instance profile's role is its identity. A role-tagged instance profile
  no machine uses (SkyPilot's, for VMs launched outside the stack) is a principal of its own. A machine without
  a role tag is ``machine:<resource>``, which the matrix lets read nothing.
- **Policies of a role**: its inline policies (``RolePolicy``, ``inlinePolicies``), and the managed policies
  attached to it (``RolePolicyAttachment``, ``PolicyAttachment``, ``managedPolicyArns``): a customer-managed
  ``Policy`` of the stack by its document, an AWS-managed one by its pinned document
  (:mod:`lmrun.aws.managed_policies`), any other as allowing everything (the check cannot know better: fail closed).
- **Reading a parameter** is any of ``ssm:GetParameter``, ``GetParameters``, ``GetParameterHistory`` on its ARN,
  or ``GetParametersByPath`` on the ARN of a path above it (with ``Recursive`` a path grants every level below it:
  AWS Systems Manager User Guide, "Restricting access to Parameter Store parameters using IAM policies").
  Decryption is not a separate gate: the mesh's SecureStrings use the account's ``aws/ssm`` key, whose key policy
  allows every principal of the account through SSM. **Writing** is ``ssm:PutParameter`` on its ARN; the operator
  writes every value the program sets (a parameter holding :data:`PARAMETER_PLACEHOLDER` is published by a machine).
- **ARNs** come from the parameter's ``arn`` output; before it exists (a preview), from the one exact ARN of that
  region and name the stack's own policies name, else unknown (verdicts that depend on it are *cannot tell*).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lmrun.aws.managed_policies import MANAGED_POLICIES
from lmrun.domain.access import MESH, OPERATOR, intended, principal_label
from lmrun.domain.names import TAG_HOSTS, TAG_NODE, TAG_ROLE
from lmrun.domain.secrets import mesh_secret_key
from lmrun.render.readiness import PARAMETER_PLACEHOLDER
from lmrun.verify import tokens
from lmrun.verify.access import OPERATOR_WRITES, Principal, SecretRow, gather_principals
from lmrun.verify.iam import ALLOW, Policy, Statement, Verdict, evaluate_any
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown, items, plain

CLOUD: Final = "aws"
MACHINE_TYPES = (tokens.INSTANCE, tokens.LAUNCH_TEMPLATE)
READ_ACTIONS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory")
READ_BY_PATH = "ssm:GetParametersByPath"
WRITE_ACTION = "ssm:PutParameter"
MESH_SECRET_TYPE = "SecureString"


def _tag(resource: Resource, key: str) -> str | None:
    value = get(resource.inputs, "tags", key)
    return str(value) if value is not None else None


def _known(value: Any) -> str | None:
    value = plain(value)
    return value if isinstance(value, str) and not is_unknown(value) else None


def _everything(source: str) -> Policy:
    """A managed policy the check cannot read: taken to allow every action on every resource."""
    statement = Statement(source, "not modelled: taken to allow everything", ALLOW, ("*",), None, ("*",), None)
    return Policy(source, (statement,))


@dataclass(frozen=True)
class _Parameter:
    resource: Resource
    name: str
    region: str | None
    arn: str | None


class AwsAccess:
    """The machines, roles, policies and parameters of a snapshot, indexed once."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._policies: dict[str, list[Policy]] = defaultdict(list)
        self._index_policies()
        machines = list(snapshot.of_type(*MACHINE_TYPES))
        used = {profile.urn for machine in machines if (profile := self._profile_of(machine)) is not None}
        # A role-tagged profile no machine of the stack uses is an identity for VMs launched elsewhere
        # (SkyPilot's): its own principal, so what it can read is in the table too.
        launched_elsewhere = [
            profile
            for profile in snapshot.of_type(tokens.IAM_INSTANCE_PROFILE)
            if profile.urn not in used and _tag(profile, TAG_ROLE) is not None
        ]
        self._principals, self._identities = gather_principals(
            [*machines, *launched_elsewhere], self._principal_of, self._role_of
        )

    # --- principals ------------------------------------------------------------------------------------------
    @property
    def principals(self) -> Sequence[Principal]:
        return self._principals

    @staticmethod
    def _principal_of(machine: Resource) -> Principal:
        role = _tag(machine, TAG_ROLE)
        if role is None:
            return Principal(f"machine:{machine.name}", frozenset(), CLOUD, None, (machine.name,))
        hosts = _tag(machine, TAG_HOSTS)
        roles = frozenset({role, *(hosts.split("+") if hosts else ())})
        return Principal(principal_label(role, node=_tag(machine, TAG_NODE)), roles, CLOUD, None, (machine.name,))

    def _profile_of(self, machine: Resource) -> Resource | None:
        """The instance profile a machine runs with (an instance or launch template's reference to it)."""
        profile_types = (tokens.IAM_INSTANCE_PROFILE,)
        if machine.type == tokens.IAM_INSTANCE_PROFILE:
            return machine
        if machine.type == tokens.LAUNCH_TEMPLATE:
            profile = self.snapshot.ref(machine, ("iamInstanceProfile", "arn"), profile_types) or self.snapshot.ref(
                machine, ("iamInstanceProfile", "name"), profile_types
            )
            reference = get(machine.inputs, "iamInstanceProfile", "arn") or get(
                machine.inputs, "iamInstanceProfile", "name"
            )
        else:
            profile = self.snapshot.ref(machine, "iamInstanceProfile", profile_types)
            reference = get(machine.inputs, "iamInstanceProfile")
        return profile or self._by_output(tokens.IAM_INSTANCE_PROFILE, reference)

    def _role_of(self, machine: Resource) -> str | None:
        """The URN of the role a machine runs as (instance or template -> instance profile -> role)."""
        profile = self._profile_of(machine)
        if profile is None:
            return None
        role = self.snapshot.ref(profile, "role", (tokens.IAM_ROLE,))
        role = role or self._by_output(tokens.IAM_ROLE, get(profile.inputs, "role"))
        return role.urn if role is not None else None

    def _by_output(self, type_: str, value: Any) -> Resource | None:
        """The resource of ``type_`` whose name or ARN is ``value`` (a known reference without dependencies)."""
        value = _known(value)
        if value is None:
            return None
        for resource in self.snapshot.of_type(type_):
            if value in (resource.outputs.get("arn"), resource.outputs.get("name"), resource.id):
                return resource
        return None

    # --- policies --------------------------------------------------------------------------------------------
    def _index_policies(self) -> None:
        roles = (tokens.IAM_ROLE,)
        for inline in self.snapshot.of_type(tokens.IAM_ROLE_POLICY):
            role = self.snapshot.ref(inline, "role", roles) or self._by_output(
                tokens.IAM_ROLE, get(inline.inputs, "role")
            )
            if role is not None:
                self._policies[role.urn].append(self._document(inline, inline.name))
        for role in self.snapshot.of_type(tokens.IAM_ROLE):
            for index, inline in enumerate(items(role.inputs.get("inlinePolicies"))):
                source = f"{role.name} inlinePolicies[{index}]"
                self._policies[role.urn].append(Policy.of(get(inline, "policy"), source))
            for index, _ in enumerate(items(role.inputs.get("managedPolicyArns"))):
                self._policies[role.urn].append(self._managed(role, ("managedPolicyArns", index), role.name))
        for attachment in self.snapshot.of_type(tokens.IAM_ROLE_POLICY_ATTACHMENT):
            role = self.snapshot.ref(attachment, "role", roles) or self._by_output(
                tokens.IAM_ROLE, get(attachment.inputs, "role")
            )
            if role is not None:
                self._policies[role.urn].append(self._managed(attachment, ("policyArn",), attachment.name))
        for attachment in self.snapshot.of_type(tokens.IAM_POLICY_ATTACHMENT):
            for role in self.snapshot.refs(attachment, "roles", roles):
                self._policies[role.urn].append(self._managed(attachment, ("policyArn",), attachment.name))

    @staticmethod
    def _document(resource: Resource, source: str) -> Policy:
        document = get(resource.inputs, "policy")
        if document is None:
            return Policy(source, unknown=f"the policy of {source} is not known yet")
        return Policy.of(document, source)

    def _managed(self, owner: Resource, path: tuple[str | int, ...], attachment: str) -> Policy:
        customer = self.snapshot.ref(owner, path, (tokens.IAM_POLICY,))
        arn = _known(get(owner.inputs, *path))
        customer = customer or self._by_output(tokens.IAM_POLICY, arn)
        if customer is not None:
            return self._document(customer, customer.name)
        if arn is None:
            return Policy(attachment, unknown=f"the policy {attachment} attaches is not known yet")
        managed = MANAGED_POLICIES.get(arn)
        if managed is None:
            return _everything(f"{arn} (attached by {attachment})")
        return Policy.of(managed.document, f"{managed.label} (attached by {attachment})")

    def _roles_policies(self, label: str) -> list[list[Policy]]:
        """The policies of each role a principal's machines run as (one role per machine in the mesh)."""
        return [
            self._policies.get(role, [])
            if role is not None
            else [Policy(label, unknown=f"the role {label} runs as is not known")]
            for role in dict.fromkeys(self._identities.get(label, ()))
        ]

    def verdict(self, label: str, action: str, resource: str | None) -> Verdict:
        """May the principal make the request: with any of its machines' roles (one in the mesh)."""
        return self._any_role(label, [(action, resource)])

    def _any_role(self, label: str, requests: Sequence[tuple[str, str | None]]) -> Verdict:
        verdicts = [evaluate_any(policies, requests) for policies in self._roles_policies(label)]
        for verdict in verdicts:
            if verdict.allowed:
                return verdict
        undecided = [v for v in verdicts if v.allowed is None]
        if undecided or not verdicts:
            return undecided[0] if undecided else Verdict(None, reason=f"{label} runs as no role")
        return verdicts[0]

    # --- parameters ------------------------------------------------------------------------------------------
    def _exact_arns(self) -> set[str]:
        return {
            arn
            for policies in self._policies.values()
            for policy in policies
            for statement in policy.statements
            for arn in (*(statement.resources or ()), *(statement.not_resources or ()))
            if "*" not in arn and "?" not in arn
        }

    def _parameters(self) -> list[_Parameter]:
        exact = self._exact_arns()
        found = []
        for resource in self.snapshot.of_type(tokens.SSM_PARAMETER):
            if get(resource.inputs, "type") != MESH_SECRET_TYPE:
                continue
            name = _known(get(resource.inputs, "name")) or resource.name
            provider = self.snapshot.by_urn.get(resource.provider_urn)
            region = _known(get(provider.inputs, "region")) if provider is not None else None
            arn = _known(resource.outputs.get("arn"))
            if arn is None or not arn.startswith("arn:"):
                path = name if name.startswith("/") else f"/{name}"
                named = {a for a in exact if a.endswith(f":parameter{path}") and f":ssm:{region}:" in a}
                arn = named.pop() if len(named) == 1 else None
            found.append(_Parameter(resource, name, region, arn))
        return found

    @staticmethod
    def _read_requests(parameter: _Parameter) -> list[tuple[str, str | None]]:
        requests: list[tuple[str, str | None]] = [(action, parameter.arn) for action in READ_ACTIONS]
        if parameter.arn is None:
            return [*requests, (READ_BY_PATH, None)]
        head, _, path = parameter.arn.partition(":parameter/")
        parts = path.split("/")
        return requests + [(READ_BY_PATH, f"{head}:parameter/{'/'.join(parts[:n])}") for n in range(1, len(parts))]

    @staticmethod
    def _operator(parameter: _Parameter) -> Verdict:
        value = _known(parameter.resource.inputs.get("value"))
        if value is None:
            return Verdict(None, reason="its value is not in the source")
        if value == PARAMETER_PLACEHOLDER:
            return Verdict(False, reason="the program only creates it with a placeholder")
        return Verdict(True, reason=OPERATOR_WRITES)

    def rows(self) -> Iterable[SecretRow]:
        for parameter in self._parameters():
            key = mesh_secret_key(parameter.name) or parameter.name
            requests = self._read_requests(parameter)
            reads = {p.label: self._any_role(p.label, requests) for p in self._principals}
            writes = {p.label: self.verdict(p.label, WRITE_ACTION, parameter.arn) for p in self._principals}
            writes[OPERATOR] = self._operator(parameter)
            yield SecretRow(
                name=key,
                scope=MESH,
                key=key,
                store=f"SSM Parameter Store ({parameter.region or '?'})",
                path=parameter.name,
                resource=parameter.resource.name,
                cloud=CLOUD,
                reads=reads,
                writes=writes,
            )

        yield from self._bound_endpoint_rows()

    def _bound_endpoint_rows(self) -> Iterable[SecretRow]:
        """The String parameter of each elastic service that ``lmrun sky bind`` writes (the ``elasticPaths``
        export's ``endpointParameter``): not a resource of the stack, so its ARN is the main region's parameter ARN
        prefix (the account's, from an ARN the stack's policies name) and the name; the operator writes it."""
        services = plain(self.snapshot.outputs.get("elasticPaths"))
        region = plain(self.snapshot.outputs.get("mainRegion"))
        heads = {arn.partition(":parameter/")[0] for arn in self._exact_arns() if f":ssm:{region}:" in arn}
        head = heads.pop() if len(heads) == 1 else None
        for service, entry in sorted(services.items()) if isinstance(services, dict) else ():
            name = str(get(entry, "endpointParameter") or "")
            if not name:
                continue
            parameter = _Parameter(Resource("", {}, name=f"lmrun sky bind {service}"), name, str(region), None)
            if head is not None:
                parameter = _Parameter(parameter.resource, name, parameter.region, f"{head}:parameter{name}")
            requests = self._read_requests(parameter)
            key = mesh_secret_key(name) or name
            line = intended(MESH, key)
            writes = {p.label: self.verdict(p.label, WRITE_ACTION, parameter.arn) for p in self._principals}
            writes[OPERATOR] = Verdict(True, reason="`lmrun sky bind` writes it")
            yield SecretRow(
                name=key,
                scope=MESH,
                key=line.key if line is not None else key,
                store=f"SSM Parameter Store ({region}, String)",
                path=name,
                resource=parameter.resource.name,
                cloud=CLOUD,
                reads={p.label: self._any_role(p.label, requests) for p in self._principals},
                writes=writes,
            )


MODEL = AwsAccess
"""Builds the AWS part of the access table over a snapshot (:class:`lmrun.verify.access.AccessModel`)."""
