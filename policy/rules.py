"""The lmrun-mesh policy rules, as plain functions over plain data.

Every rule is one function registered with its name, description, remediation hint, default enforcement
level and config defaults (:data:`RULES`). Rules never touch the CrossGuard runtime: a **resource rule**
takes ``(resource_type, props, name, config)`` with ``props`` as CrossGuard passes them (camelCase input
keys, secrets already unwrapped) and returns violation messages; a **stack rule** takes the stack's
resources as records of the one reader (:class:`lmrun.verify.resources.Resource`, re-exported here) and
returns :class:`Finding` s. So they run in unit tests, in the offline plan and ``lmrun check`` (on a mock
recording, a preview or a state export, all read by :mod:`lmrun.verify.sources`) and, through
:func:`build_policies` (CrossGuard's ``PolicyResource`` adapted to the same record), inside
``pulumi preview --policy-pack policy``.

Configuration uses the shape of ``pulumi preview --policy-pack-config FILE`` (see ``policy/README.md``)::

    {"all": "advisory",
     "no-ssh": {"enforcementLevel": "mandatory", "allowSsh": true},
     "gpu-instance-allow-list": {"allowedFamilies": ["g6", "g6e"]},
     "required-tags": "disabled"}

A rule's own entry beats ``all``, which beats the rule's default level. Properties other than
``enforcementLevel`` override the rule's config defaults (:func:`rule_config`).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from lmrun.aws.instances import catalog
from lmrun.aws.instances.availability import CATALOG_ONLY, recorded_availability
from lmrun.domain.addresses import PRIVATE_RANGES
from lmrun.domain.errors import InputError
from lmrun.domain.names import TAG_REGION
from lmrun.domain.ports import NODE_PORT_MAX, NODE_PORT_MIN
from lmrun.policy.aws_taggable import AWS_TAGGABLE_TYPES
from lmrun.policy.stack_settings import STACK_DECIDED, current_stack_settings, stack_defaults
from lmrun.verify import tokens
from lmrun.verify.kubernetes_objects import (
    containers,
    image_pinned,
    kubernetes_objects,
    missing_resources,
    namespace_verdicts,
    user_data_hidden,
)
from lmrun.verify.resources import UNKNOWN as UNKNOWN  # re-exported: rule tests and authors spell unknowns
from lmrun.verify.resources import Resource, Snapshot, flag, get, integer, is_unknown, items, network
from lmrun.verify.sources import from_policy_resource

PACK_NAME = "lmrun-mesh"
"""The policy pack's name (``PulumiPolicy.yaml`` lives beside this module)."""

ADVISORY: Final = "advisory"
MANDATORY: Final = "mandatory"
DISABLED: Final = "disabled"
LEVELS = (ADVISORY, MANDATORY, DISABLED, "remediate")
"""Accepted enforcement levels. No rule remediates, so ``remediate`` acts as ``mandatory`` (as CrossGuard does
for stack policies)."""

Level = Literal["advisory", "mandatory", "disabled"]

WIREGUARD_PORT = 51820
MESH_INTERNAL_CIDRS = tuple(str(private) for private in PRIVATE_RANGES)
"""The sources an all-traffic rule may come from: the private ranges, which hold the mesh's VPCs and tunnels and
every site's own network (a site may use any private range, so the pack cannot list the sites' CIDRs: the
stack decides them, and a preview run with ``--policy-pack`` has no stack config)."""
NODE_PORT_RANGE = (NODE_PORT_MIN, NODE_PORT_MAX)
DEFAULT_MAX_PEERINGS = 50
REQUIRED_TAGS = ("lmrun:mesh", "lmrun:managed-by")
STATEFUL_TAG = "lmrun:stateful"


class PolicyConfigError(InputError):
    """The policy pack config names an unknown rule property or level (the message names which)."""

    label = "error: policy config"


# --------------------------------------------------------------------------------------------------------------
# Plain data: the reader's record and accessors (lmrun.verify.resources), shared with cost and reachability


@dataclass(frozen=True)
class Finding:
    """A stack rule's violation, tied to the resource it is about."""

    resource: str
    message: str


@dataclass(frozen=True)
class Violation:
    """One violation of one rule at its resolved enforcement level (what the offline plan prints)."""

    policy: str
    level: str
    resource: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "level": self.level, "resource": self.resource, "message": self.message}


# --------------------------------------------------------------------------------------------------------------
# Registry

RawResourceCheck = Callable[[str, Mapping[str, Any], str, Mapping[str, Any]], list[str]]
RawStackCheck = Callable[[Sequence[Resource], Mapping[str, Any]], list[Finding]]


class ResourceCheck(Protocol):
    def __call__(
        self, resource_type: str, props: Mapping[str, Any], name: str = "", config: Mapping[str, Any] | None = None
    ) -> list[str]: ...


class StackCheck(Protocol):
    def __call__(self, resources: Sequence[Resource], config: Mapping[str, Any] | None = None) -> list[Finding]: ...


@dataclass(frozen=True)
class Rule:
    """A rule's metadata and its check (called with config defaults already merged in)."""

    name: str
    kind: Literal["resource", "stack"]
    description: str
    remediation: str
    level: Level
    defaults: Mapping[str, Any]
    """Config properties with their defaults (each overridable in the pack config)."""
    schema: Mapping[str, Mapping[str, Any]]
    """JSON schema of each config property (handed to CrossGuard)."""
    check: Callable[..., Any]


RULES: dict[str, Rule] = {}
"""Every rule by name, in registration order."""


def _register(rule: Rule) -> None:
    if rule.name in RULES:
        raise ValueError(f"duplicate rule name {rule.name!r}")
    RULES[rule.name] = rule


def _merged(name: str, defaults: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in (config or {}).items():
        if key == "enforcementLevel":
            continue
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise PolicyConfigError(f"{name}.{key}: unknown config property (known: {known})")
        merged[key] = value
    return merged


def _schema(config: Mapping[str, tuple[Any, Mapping[str, Any]]] | None) -> dict[str, dict[str, Any]]:
    """Each property's JSON schema with its default, except where the stack decides the value."""
    return {
        key: {**spec, **({} if key in STACK_DECIDED else {"default": default})}
        for key, (default, spec) in (config or {}).items()
    }


def resource_rule(
    *,
    name: str,
    description: str,
    remediation: str,
    level: Level,
    config: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None,
) -> Callable[[RawResourceCheck], ResourceCheck]:
    """Register a resource rule; ``config`` maps property -> (default, JSON schema)."""
    defaults = {key: default for key, (default, _) in (config or {}).items()}
    schema = _schema(config)

    rule_name = name

    def decorate(function: RawResourceCheck) -> ResourceCheck:
        def check(
            resource_type: str, props: Mapping[str, Any], name: str = "", config: Mapping[str, Any] | None = None
        ) -> list[str]:
            return function(resource_type, props, name, _merged(rule_name, defaults, config))

        check.__doc__ = function.__doc__
        check.__name__ = function.__name__
        _register(Rule(name, "resource", description, remediation, level, defaults, schema, check))
        return check

    return decorate


def stack_rule(
    *,
    name: str,
    description: str,
    remediation: str,
    level: Level,
    config: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None,
) -> Callable[[RawStackCheck], StackCheck]:
    """Register a stack rule; ``config`` maps property -> (default, JSON schema)."""
    defaults = {key: default for key, (default, _) in (config or {}).items()}
    schema = _schema(config)

    rule_name = name

    def decorate(function: RawStackCheck) -> StackCheck:
        def check(resources: Sequence[Resource], config: Mapping[str, Any] | None = None) -> list[Finding]:
            return function(resources, _merged(rule_name, defaults, config))

        check.__doc__ = function.__doc__
        check.__name__ = function.__name__
        _register(Rule(name, "stack", description, remediation, level, defaults, schema, check))
        return check

    return decorate


def enforcement_level(rule: Rule, pack_config: Mapping[str, Any] | None = None) -> str:
    """The rule's level under ``pack_config``: its own entry, else ``all``, else its default."""
    for key in (rule.name, "all"):
        entry = (pack_config or {}).get(key)
        level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        if level is None:
            continue
        if level not in LEVELS:
            raise PolicyConfigError(f"{key}.enforcementLevel: {level!r} is not one of {', '.join(LEVELS)}")
        return MANDATORY if level == "remediate" else str(level)
    return rule.level


def rule_config(
    rule: Rule, pack_config: Mapping[str, Any] | None = None, stack_settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The rule's config properties: its defaults, the stack's values of those it decides (``stack_settings``,
    the plan's ``policySettings``), overridden by its entry in ``pack_config``."""
    entry = (pack_config or {}).get(rule.name)
    unknown_rules = sorted(set(pack_config or {}) - set(RULES) - {"all"})
    if unknown_rules:
        raise PolicyConfigError(f"{unknown_rules[0]}: no such rule (rules: {', '.join(RULES)})")
    defaults = stack_defaults(rule.defaults, stack_settings)
    return _merged(rule.name, defaults, entry if isinstance(entry, Mapping) else None)


def evaluate(
    resources: Sequence[Resource],
    pack_config: Mapping[str, Any] | None = None,
    stack_settings: Mapping[str, Any] | None = None,
) -> list[Violation]:
    """Every violation of every enabled rule over ``resources``, with its resolved level (``stack_settings``:
    the values the stack decides, :mod:`lmrun.policy.stack_settings`)."""
    violations: list[Violation] = []
    resources = _snapshot(resources)
    for rule in RULES.values():
        level = enforcement_level(rule, pack_config)
        if level == DISABLED:
            continue
        config = rule_config(rule, pack_config, stack_settings)
        if rule.kind == "resource":
            for resource in resources:
                for message in rule.check(resource.type, resource.props, resource.name, config):
                    violations.append(Violation(rule.name, level, resource.label, message))
        else:
            for finding in rule.check(resources, config):
                violations.append(Violation(rule.name, level, finding.resource, finding.message))
    return violations


# --------------------------------------------------------------------------------------------------------------
# Helpers over props


def _truthy(value: Any) -> bool:
    return flag(value) is True


def _tags(props: Mapping[str, Any]) -> dict[str, Any] | None:
    """Tags as a map: ``tags`` is a map on most types and a list of {key, value} on auto scaling groups."""
    raw = props.get("tags")
    if raw is None:
        return {}
    if is_unknown(raw):
        return None
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    tags: dict[str, Any] = {}
    for item in items(raw):
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            tags[item["key"]] = item.get("value")
    return tags


@dataclass(frozen=True)
class _Ingress:
    """One inbound permission, whatever resource type declared it."""

    what: str
    protocol: str
    """``all``, ``tcp``, ``udp``, ``icmp`` or another protocol name/number."""
    ports: tuple[int, int] | None
    """Inclusive port range; None: every port."""
    sources: tuple[str, ...]
    """CIDRs; security-group, tag and prefix-list sources are summarized as ``group:...``."""


_PROTOCOLS = {"-1": "all", "all": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


def _protocol(value: Any) -> str:
    text = str(value).strip().lower() if value is not None else "all"
    return _PROTOCOLS.get(text, text)


def _aws_ports(protocol: str, from_port: Any, to_port: Any) -> tuple[int, int] | None:
    if protocol not in ("tcp", "udp"):
        return None
    low, high = integer(from_port), integer(to_port)
    if low is None or high is None or (low <= 0 and high >= 65535) or low < 0:
        return None
    return (low, high)


def _ingress_rules(resource_type: str, props: Mapping[str, Any]) -> list[_Ingress]:
    rules: list[_Ingress] = []
    if resource_type in (tokens.SECURITY_GROUP, tokens.DEFAULT_SECURITY_GROUP):
        for index, item in enumerate(items(props.get("ingress"))):
            if not isinstance(item, Mapping):
                continue
            protocol = _protocol(item.get("protocol"))
            sources = [*items(item.get("cidrBlocks")), *items(item.get("ipv6CidrBlocks"))]
            if items(item.get("securityGroups")) or _truthy(item.get("self")) or items(item.get("prefixListIds")):
                sources.append("group:")
            ports = _aws_ports(protocol, item.get("fromPort"), item.get("toPort"))
            rules.append(_Ingress(f"ingress[{index}]", protocol, ports, tuple(map(str, sources))))
    elif resource_type == tokens.SECURITY_GROUP_RULE:
        if str(props.get("type", "")).lower() == "ingress":
            protocol = _protocol(props.get("protocol"))
            sources = [*items(props.get("cidrBlocks")), *items(props.get("ipv6CidrBlocks"))]
            if props.get("sourceSecurityGroupId") or _truthy(props.get("self")) or items(props.get("prefixListIds")):
                sources.append("group:")
            ports = _aws_ports(protocol, props.get("fromPort"), props.get("toPort"))
            rules.append(_Ingress("rule", protocol, ports, tuple(map(str, sources))))
    elif resource_type == tokens.SG_INGRESS_RULE:
        protocol = _protocol(props.get("ipProtocol"))
        sources = [str(cidr) for cidr in (props.get("cidrIpv4"), props.get("cidrIpv6")) if isinstance(cidr, str)]
        if props.get("referencedSecurityGroupId") or props.get("prefixListId"):
            sources.append("group:")
        ports = _aws_ports(protocol, props.get("fromPort"), props.get("toPort"))
        rules.append(_Ingress("rule", protocol, ports, tuple(sources)))
    elif resource_type == tokens.GCP_FIREWALL:
        if str(props.get("direction") or "INGRESS").upper() != "INGRESS" or _truthy(props.get("disabled")):
            return []
        sources = [str(cidr) for cidr in items(props.get("sourceRanges"))]
        if items(props.get("sourceTags")) or items(props.get("sourceServiceAccounts")):
            sources.append("group:")
        if not sources and "sourceRanges" not in props:
            sources = ["0.0.0.0/0"]  # GCP: an ingress rule with no source applies to 0.0.0.0/0
        for index, allow in enumerate(items(props.get("allows"))):
            if not isinstance(allow, Mapping):
                continue
            protocol = _protocol(allow.get("protocol"))
            port_specs = [str(p) for p in items(allow.get("ports"))]
            if not port_specs or protocol not in ("tcp", "udp"):
                rules.append(_Ingress(f"allows[{index}]", protocol, None, tuple(sources)))
            for spec in port_specs:
                low, _, high = spec.partition("-")
                start, end = integer(low), integer(high or low)
                if start is None or end is None:
                    continue
                ports = None if start <= 0 and end >= 65535 else (start, end)
                rules.append(_Ingress(f"allows[{index}] ports {spec}", protocol, ports, tuple(sources)))
    return rules


def _is_everywhere(cidr: str) -> bool:
    found = network(cidr)
    return found is not None and found.prefixlen == 0


def _describe(rule: _Ingress) -> str:
    ports = "all ports" if rule.ports is None else f"ports {rule.ports[0]}-{rule.ports[1]}"
    return f"{rule.what} ({rule.protocol}, {ports})"


# --------------------------------------------------------------------------------------------------------------
# Resource rules

_INGRESS_TYPES = (
    "aws:ec2/securityGroup:SecurityGroup (and defaultSecurityGroup), aws:ec2/securityGroupRule:SecurityGroupRule, "
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule, gcp:compute/firewall:Firewall"
)


@resource_rule(
    name="no-public-ingress",
    description=f"No inbound traffic from 0.0.0.0/0 or ::/0, except the WireGuard UDP port ({_INGRESS_TYPES}).",
    remediation="Allow inbound traffic from the mesh CIDRs or named operator CIDRs only; the hub gateway's "
    "WireGuard UDP port is the one port open to the internet.",
    level=MANDATORY,
    config={"wireguardPort": (WIREGUARD_PORT, {"type": "integer", "minimum": 1, "maximum": 65535})},
)
def no_public_ingress(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    wireguard = int(config["wireguardPort"])
    messages = []
    for rule in _ingress_rules(resource_type, props):
        public = [cidr for cidr in rule.sources if _is_everywhere(cidr)]
        if not public:
            continue
        if rule.protocol == "udp" and rule.ports == (wireguard, wireguard):
            continue
        messages.append(f"{_describe(rule)} is open to {', '.join(public)}; only UDP {wireguard} (WireGuard) may be")
    return messages


@resource_rule(
    name="no-ssh",
    description=f"Port 22 is not opened at all ({_INGRESS_TYPES}); operators use SSM Session Manager.",
    remediation="Remove the rule that opens port 22 and reach VMs with `aws ssm start-session`; if SSH is "
    "really needed, set allowSsh in this rule's policy config.",
    level=MANDATORY,
    config={
        "allowSsh": (False, {"type": "boolean"}),
        "internalCidrs": (list(MESH_INTERNAL_CIDRS), {"type": "array", "items": {"type": "string"}}),
    },
)
def no_ssh(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    """A rule that names a port range covering 22 fires wherever it comes from. An all-ports rule (the mesh's
    "all traffic from the mesh" rules) fires only when some source lies outside ``internalCidrs``."""
    if _truthy(config["allowSsh"]):
        return []
    internal = [net for net in map(network, config["internalCidrs"]) if net is not None]
    messages = []
    for rule in _ingress_rules(resource_type, props):
        if rule.protocol not in ("all", "tcp") or not rule.sources:
            continue
        if rule.ports is not None:
            if rule.ports[0] <= 22 <= rule.ports[1]:
                messages.append(f"{_describe(rule)} opens port 22 (SSH) to {', '.join(rule.sources)}")
            continue
        outside = [
            cidr
            for cidr in rule.sources
            if not cidr.startswith("group:")
            and not any((net := network(cidr)) is not None and _within(net, i) for i in internal)
        ]
        if outside:
            messages.append(f"{_describe(rule)} opens port 22 (SSH) to {', '.join(outside)}")
    return messages


def _within(net: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: Any) -> bool:
    return net.version == outer.version and net.subnet_of(outer)


_VM_TYPES = (tokens.INSTANCE, tokens.SPOT_INSTANCE_REQUEST)
_LAUNCH_TEMPLATE = tokens.LAUNCH_TEMPLATE


@resource_rule(
    name="imdsv2-required",
    description="EC2 instances and launch templates require IMDSv2 (metadataOptions.httpTokens = required).",
    remediation='Set metadata_options={"http_tokens": "required", "http_endpoint": "enabled"} on the instance '
    "or launch template.",
    level=MANDATORY,
)
def imdsv2_required(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    if resource_type not in (*_VM_TYPES, _LAUNCH_TEMPLATE):
        return []
    options = props.get("metadataOptions")
    tokens = _get_raw(options, "httpTokens")
    if is_unknown(options) or is_unknown(tokens) or tokens == "required" or get(options, "httpEndpoint") == "disabled":
        return []
    return [f"metadataOptions.httpTokens is {tokens or 'not set'} (IMDSv1 allowed); it must be 'required'"]


def _get_raw(props: Any, key: str) -> Any:
    return props.get(key) if isinstance(props, Mapping) else None


@resource_rule(
    name="encrypted-volumes",
    description="Every EBS volume is encrypted: aws:ebs/volume:Volume, instance root and EBS block devices, "
    "launch template block device mappings.",
    remediation="Set encrypted=True on the volume, on root_block_device/ebs_block_devices, or on each launch "
    "template block_device_mappings[].ebs (declare the root device so its encryption is not left to the AMI).",
    level=MANDATORY,
)
def encrypted_volumes(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    messages: list[str] = []

    def require(value: Any, what: str) -> None:
        if not is_unknown(value) and not _truthy(value):
            messages.append(f"{what} is not encrypted (encrypted: {value!r})")

    if resource_type == tokens.EBS_VOLUME:
        require(props.get("encrypted"), "the volume")
    elif resource_type in _VM_TYPES:
        root = props.get("rootBlockDevice")
        if root is None:
            messages.append("rootBlockDevice is not declared, so the root volume's encryption is left to the AMI")
        elif isinstance(root, Mapping):
            require(root.get("encrypted"), "rootBlockDevice")
        for index, device in enumerate(items(props.get("ebsBlockDevices"))):
            if isinstance(device, Mapping):
                require(device.get("encrypted"), f"ebsBlockDevices[{index}] ({device.get('deviceName')})")
    elif resource_type == _LAUNCH_TEMPLATE:
        mappings = props.get("blockDeviceMappings")
        if is_unknown(mappings):
            return []
        ebs_mappings = [(i, m) for i, m in enumerate(items(mappings)) if isinstance(m, Mapping) and "ebs" in m]
        if not ebs_mappings:
            messages.append("no blockDeviceMappings[].ebs: the root volume's encryption is left to the AMI")
        for index, mapping in ebs_mappings:
            require(
                _get_raw(mapping.get("ebs"), "encrypted"), f"blockDeviceMappings[{index}] ({mapping.get('deviceName')})"
            )
    return messages


_IAM_POLICY_TYPES = tokens.IAM_POLICIES
_READ_VERBS = ("Get", "List", "Describe", "Head", "Lookup", "Search", "Query", "Scan", "BatchGet", "Select", "View")


def _is_write(action: str) -> bool:
    _, _, verb = action.partition(":")
    return not verb or verb == "*" or not verb.startswith(_READ_VERBS)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else items(value)


@resource_rule(
    name="iam-no-wildcards",
    description="IAM policies grant no `*` action (nor Allow + NotAction) and no `*` resource for write actions.",
    remediation="Name the actions (service:Verb) and the resource ARNs the role needs; read-only actions "
    "(Get/List/Describe...) may use Resource '*'. Actions that AWS only grants on '*' go in "
    "allowedWildcardResourceActions of this rule's config.",
    level=MANDATORY,
    config={"allowedWildcardResourceActions": ([], {"type": "array", "items": {"type": "string"}})},
)
def iam_no_wildcards(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    if resource_type not in _IAM_POLICY_TYPES:
        return []
    document = props.get("policy")
    if document is None or is_unknown(document):
        return []
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            return [f"policy is not valid JSON ({exc.msg}), so it cannot be checked"]
    if not isinstance(document, Mapping):
        return ["policy is not a JSON object"]
    allowed = set(config["allowedWildcardResourceActions"])
    statements = document.get("Statement")
    statements = [statements] if isinstance(statements, Mapping) else items(statements)
    messages = []
    for index, statement in enumerate(statements):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        label = f"Statement[{index}]" + (f" ({statement['Sid']})" if statement.get("Sid") else "")
        if "NotAction" in statement:
            messages.append(f"{label} allows NotAction: that grants every action but the listed ones")
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        if any(action in ("*", "*:*") for action in actions):
            messages.append(f"{label} grants Action '*'")
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        if "*" in resources or "NotResource" in statement:
            writes = sorted({a for a in actions if _is_write(a) and a not in allowed and a not in ("*", "*:*")})
            if writes:
                messages.append(f"{label} grants write actions on every resource ('*'): {', '.join(writes)}")
    return messages


_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a K3s token (K3S_TOKEN=...)", re.compile(r"\bK3S_(?:AGENT_)?TOKEN\s*[=:]\s*['\"]?(?P<value>[^\s'\"]+)")),
    ("a K3s token (--token ...)", re.compile(r"(?<![\w-])--(?:agent-)?token(?:=|[ \t]+)['\"]?(?P<value>[^\s'\"]+)")),
    ("a WireGuard private key", re.compile(r"PrivateKey\s*=\s*(?P<value>[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)")),
    ("a Phoenix secret", re.compile(r"\bPHOENIX_(?:ADMIN_)?SECRET\s*[=:]\s*['\"]?(?P<value>[^\s'\"]+)")),
)


def _decoded_texts(value: str) -> Iterator[str]:
    """The text itself and, when it is base64 (EC2 launch templates) and/or gzip, what it decodes to."""
    yield value
    compact = "".join(value.split())
    if len(compact) < 8 or len(compact) % 4:
        return
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return
    try:
        yield data.decode("utf-8")
    except UnicodeDecodeError:
        return


def _literal(value: str) -> bool:
    """A literal secret rather than a reference ($VAR, $(cmd), a flag, a file path)."""
    return bool(value) and not value.startswith(("$", "-", "/", "<", "{")) and not is_unknown(value)


def _scripts(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    scripts: list[tuple[str, str]] = []
    if resource_type in (*_VM_TYPES, _LAUNCH_TEMPLATE):
        for key in ("userData", "userDataBase64"):
            if isinstance(props.get(key), str):
                scripts.append((key, props[key]))
    elif resource_type in (
        tokens.GCP_INSTANCE,
        tokens.GCP_INSTANCE_TEMPLATE,
        tokens.GCP_REGION_INSTANCE_TEMPLATE,
    ):
        if isinstance(props.get("metadataStartupScript"), str):
            scripts.append(("metadataStartupScript", props["metadataStartupScript"]))
        metadata = props.get("metadata")
        if isinstance(metadata, Mapping):
            scripts.extend((f"metadata.{k}", v) for k, v in metadata.items() if isinstance(v, str))
    return scripts


@resource_rule(
    name="no-secrets-in-user-data",
    description="No K3s token, WireGuard private key or Phoenix secret in plain EC2 user_data or GCP startup "
    "scripts/metadata (base64 and gzip are decoded first).",
    remediation="Keep the secret in SSM Parameter Store (GCP Secret Manager) and have the boot script fetch it "
    "with the instance role (e.g. `--token-file` after ssm-get); never render the value into user_data.",
    level=MANDATORY,
)
def no_secrets_in_user_data(
    resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]
) -> list[str]:
    messages: list[str] = []
    for key, script in _scripts(resource_type, props):
        found = {
            what
            for text in _decoded_texts(script)
            for what, pattern in _SECRET_PATTERNS
            for match in pattern.finditer(text)
            if _literal(match.group("value"))
        }
        messages.extend(f"{key} contains {what} in plain text" for what in sorted(found))
    return messages


@resource_rule(
    name="required-tags",
    description="Every taggable AWS resource carries the mesh's tags (default lmrun:mesh and lmrun:managed-by).",
    remediation="Pass the mesh's tags (lmrun.components naming helpers) to the resource's `tags` argument; "
    "provider default_tags are not visible to this check.",
    level=MANDATORY,
    config={"requiredTags": (list(REQUIRED_TAGS), {"type": "array", "items": {"type": "string"}})},
)
def required_tags(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    if resource_type not in AWS_TAGGABLE_TYPES:
        return []
    tags = _tags(props)
    if tags is None:
        return []
    missing = [key for key in config["requiredTags"] if not tags.get(key)]
    return [f"missing tag(s): {', '.join(missing)}"] if missing else []


_GPU_FAMILY = re.compile(r"(?:g|gr|p)\d[a-z0-9-]*")


def _instance_types(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if resource_type in (*_VM_TYPES, _LAUNCH_TEMPLATE) and isinstance(props.get("instanceType"), str):
        found.append(("instanceType", props["instanceType"]))
    if resource_type == tokens.AUTOSCALING_GROUP:
        overrides = get(props, "mixedInstancesPolicy", "launchTemplate", "overrides")
        for index, override in enumerate(items(overrides)):
            if isinstance(override, Mapping) and isinstance(override.get("instanceType"), str):
                found.append((f"mixedInstancesPolicy overrides[{index}]", override["instanceType"]))
    return [(where, t) for where, t in found if not is_unknown(t)]


@resource_rule(
    name="gpu-instance-allow-list",
    description="GPU instances (g*, gr*, p* families) come from an allow-list (default: the families of "
    "lmrun.aws.instances.catalog).",
    remediation="Use an instance type of an allowed family (the node's gpu picks one), or add the family to "
    "allowedFamilies in this rule's config.",
    level=MANDATORY,
    config={
        "allowedFamilies": (sorted(catalog.FAMILY_REGIONS), {"type": "array", "items": {"type": "string"}}),
    },
)
def gpu_instance_allow_list(
    resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]
) -> list[str]:
    allowed = set(config["allowedFamilies"])
    messages = []
    for where, instance_type in _instance_types(resource_type, props):
        family = instance_type.split(".", 1)[0]
        if _GPU_FAMILY.fullmatch(family) and family not in allowed:
            messages.append(
                f"{where} {instance_type}: GPU family {family} is not allowed ({', '.join(sorted(allowed))})"
            )
    return messages


def _on_demand_price(instance_type: str, overrides: Mapping[str, Any]) -> float | None:
    if instance_type in overrides:
        return float(overrides[instance_type])
    known = catalog.INSTANCE_TYPES.get(instance_type)
    return None if known is None else known.on_demand_usd_hour


def _price(value: Any) -> float | None:
    if value is None or is_unknown(value) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@resource_rule(
    name="spot-max-price",
    description="A spot max price is not above the on-demand price (launch template / instance "
    "instanceMarketOptions.spotOptions.maxPrice, spot request spotPrice, ASG spotMaxPrice vs. each override).",
    remediation="Leave the spot max price empty (AWS then caps it at the on-demand price) or set it at most "
    "to the on-demand price. Prices are the catalog's us-east-1 estimates; put other figures in onDemandPrices.",
    level=ADVISORY,
    config={"onDemandPrices": ({}, {"type": "object", "additionalProperties": {"type": "number"}})},
)
def spot_max_price(resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]) -> list[str]:
    prices: Mapping[str, Any] = config["onDemandPrices"]
    checks: list[tuple[str, float, list[tuple[str, str]]]] = []
    if resource_type in (*_VM_TYPES, _LAUNCH_TEMPLATE):
        cap = _price(get(props, "instanceMarketOptions", "spotOptions", "maxPrice"))
        if cap is None and resource_type == tokens.SPOT_INSTANCE_REQUEST:
            cap = _price(props.get("spotPrice"))
        if cap is not None:
            checks.append(("spot max price", cap, _instance_types(resource_type, props)))
    elif resource_type == tokens.AUTOSCALING_GROUP:
        cap = _price(get(props, "mixedInstancesPolicy", "instancesDistribution", "spotMaxPrice"))
        if cap is not None:
            checks.append(("spotMaxPrice", cap, _instance_types(resource_type, props)))
    messages = []
    for what, cap, types in checks:
        for where, instance_type in types:
            on_demand = _on_demand_price(instance_type, prices)
            if on_demand is not None and cap > on_demand + 1e-9:
                messages.append(
                    f"{what} ${cap:.4f}/h is above the on-demand price of {instance_type} (${on_demand:.4f}/h, {where})"
                )
    return messages


# --------------------------------------------------------------------------------------------------------------
# Stack rules


def _bucket_check(
    resources: Sequence[Resource], types: Sequence[str], ok: Callable[[Resource], bool], missing: str, weak: str
) -> list[Finding]:
    """A bucket's sub-resources of ``types`` are those whose ``bucket`` input depends on the bucket's URN (known
    at preview) or names the bucket; indexed once, by URN and by name."""
    snapshot = _snapshot(resources)
    by_urn: dict[str, list[Resource]] = defaultdict(list)
    by_name: dict[str, list[Resource]] = defaultdict(list)
    for child in snapshot.of_type(*types):
        for urn in dict.fromkeys((*child.property_dependencies.get("bucket", ()), *child.dependencies)):
            by_urn[urn].append(child)
        target = child.props.get("bucket")
        if isinstance(target, str) and not is_unknown(target):
            by_name[target].append(child)
    findings = []
    for bucket in snapshot.of_type(*tokens.S3_BUCKETS):
        names = {str(n) for n in (bucket.props.get("bucket"), bucket.name) if isinstance(n, str) and n}
        mine = [*(by_urn.get(bucket.urn, []) if bucket.urn else []), *(c for n in names for c in by_name.get(n, []))]
        if not mine:
            findings.append(Finding(bucket.label, missing))
        elif not any(ok(child) for child in mine):
            findings.append(Finding(bucket.label, weak))
    return findings


def _snapshot(resources: Sequence[Resource]) -> Snapshot:
    """The stack's resources indexed (``evaluate`` hands stack rules a :class:`Snapshot` already)."""
    return resources if isinstance(resources, Snapshot) else Snapshot(resources)


@stack_rule(
    name="s3-public-access-blocked",
    description="Every S3 bucket has a BucketPublicAccessBlock with all four settings true.",
    remediation="Add aws.s3.BucketPublicAccessBlock(bucket=..., block_public_acls=True, block_public_policy=True, "
    "ignore_public_acls=True, restrict_public_buckets=True).",
    level=MANDATORY,
)
def s3_public_access_blocked(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return _bucket_check(
        resources,
        tokens.S3_PUBLIC_ACCESS_BLOCKS,
        lambda child: all(_truthy(child.props.get(key)) or is_unknown(child.props.get(key)) for key in flags),
        "bucket has no BucketPublicAccessBlock",
        f"bucket's BucketPublicAccessBlock does not set all of {', '.join(flags)} to true",
    )


@stack_rule(
    name="s3-versioned",
    description="Every S3 bucket has versioning enabled (a BucketVersioning/BucketVersioningV2 with status Enabled).",
    remediation='Add aws.s3.BucketVersioning(bucket=..., versioning_configuration={"status": "Enabled"}).',
    level=MANDATORY,
)
def s3_versioned(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    def enabled(child: Resource) -> bool:
        status = get(child.props, "versioningConfiguration", "status")
        return status == "Enabled" or is_unknown(_get_raw(child.props.get("versioningConfiguration"), "status"))

    return _bucket_check(
        resources,
        tokens.S3_VERSIONINGS,
        enabled,
        "bucket has no BucketVersioning",
        "bucket's versioning status is not Enabled",
    )


@stack_rule(
    name="s3-encrypted",
    description="Every S3 bucket has a default-encryption configuration "
    "(BucketServerSideEncryptionConfiguration or its V2 type) with an SSE algorithm.",
    remediation="Add aws.s3.BucketServerSideEncryptionConfiguration(bucket=..., rules=[{"
    '"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}}]).',
    level=MANDATORY,
)
def s3_encrypted(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    def encrypts(child: Resource) -> bool:
        rules = child.props.get("rules")
        if is_unknown(rules):
            return True
        return any(get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in items(rules))

    return _bucket_check(
        resources,
        tokens.S3_ENCRYPTIONS,
        encrypts,
        "bucket has no BucketServerSideEncryptionConfiguration",
        "bucket's encryption configuration names no sseAlgorithm",
    )


def _denies_plain_http(policy: Any) -> bool:
    """Whether a bucket policy (JSON text or a parsed document) denies every request without TLS, on the bucket
    and its objects; an unknown policy (a preview) passes."""
    if is_unknown(policy):
        return True
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return False
    for statement in items(get(policy, "Statement")):
        condition = get(statement, "Condition", "Bool", "aws:SecureTransport")
        actions = {str(a) for a in items(get(statement, "Action"))} or {str(get(statement, "Action"))}
        resources = [str(r) for r in items(get(statement, "Resource"))] or [str(get(statement, "Resource"))]
        if (
            get(statement, "Effect") == "Deny"
            and str(condition).lower() == "false"
            and actions & {"s3:*", "*"}
            and any(r.endswith("/*") for r in resources)
            and any(not r.endswith("*") for r in resources)
        ):
            return True
    return False


@stack_rule(
    name="s3-tls-only",
    description="Every S3 bucket's policy denies every request made without TLS, on the bucket and its objects "
    "(AWS Foundational Security Best Practices S3.5).",
    remediation="Add an aws.s3.BucketPolicy with the statement of lmrun.components.buckets."
    "deny_insecure_transport (Effect Deny, Principal *, Action s3:*, Condition Bool aws:SecureTransport false).",
    level=MANDATORY,
)
def s3_tls_only(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    return _bucket_check(
        resources,
        (tokens.S3_BUCKET_POLICY,),
        lambda child: _denies_plain_http(child.props.get("policy")),
        "bucket has no BucketPolicy (plain HTTP requests are not refused)",
        "bucket's policy does not deny requests without TLS (aws:SecureTransport false) on the bucket and objects",
    )


@stack_rule(
    name="default-security-group-closed",
    description="Every VPC's default security group is adopted (aws.ec2.DefaultSecurityGroup) with no inbound "
    "and no outbound rule (AWS Foundational Security Best Practices EC2.2).",
    remediation="Adopt the VPC's default group with aws.ec2.DefaultSecurityGroup(vpc_id=..., ingress=[], "
    "egress=[]) and put the rules the VPC needs on a security group of its own.",
    level=MANDATORY,
)
def default_security_group_closed(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    """A VPC without an adopted default group keeps AWS's (all traffic within the group, all egress): whatever
    is launched into the VPC without naming a group gets it."""
    snapshot = _snapshot(resources)
    adopted: dict[str, list[Resource]] = defaultdict(list)
    for group in snapshot.of_type(tokens.DEFAULT_SECURITY_GROUP):
        vpc = snapshot.ref(group, "vpcId", (tokens.VPC,))
        if vpc is not None:
            adopted[vpc.urn].append(group)
    findings = [
        Finding(vpc.label, "the VPC's default security group is not adopted: it keeps AWS's default rules")
        for vpc in snapshot.of_type(tokens.VPC)
        if not adopted.get(vpc.urn)
    ]
    for group in snapshot.of_type(tokens.DEFAULT_SECURITY_GROUP):
        rules = {key: len(items(group.props.get(key))) for key in ("ingress", "egress")}
        if any(rules.values()):
            counts = ", ".join(f"{count} {key}" for key, count in rules.items() if count)
            findings.append(Finding(group.label, f"default security group has rules ({counts}); it must have none"))
    return findings


def _logged_networks(snapshot: Snapshot) -> tuple[dict[str, list[Resource]], list[Resource]]:
    """VPC URN -> its flow logs, and the GCP subnetworks that log their flows."""
    by_vpc: dict[str, list[Resource]] = defaultdict(list)
    for flow_log in snapshot.of_type(tokens.FLOW_LOG):
        vpc = snapshot.ref(flow_log, "vpcId", (tokens.VPC,))
        if vpc is not None:
            by_vpc[vpc.urn].append(flow_log)
    subnets = [s for s in snapshot.of_type(tokens.GCP_SUBNETWORK) if isinstance(s.props.get("logConfig"), Mapping)]
    return by_vpc, subnets


@stack_rule(
    name="flow-logs-cover-every-network",
    description="When the stack logs network flows anywhere, it logs them everywhere: every VPC has a flow log of "
    "all traffic and every GCP subnetwork a logConfig (AWS FSBP EC2.6, CIS GCP 3.8). A partial trail is the gap "
    "an investigation falls into.",
    remediation="Turn lmrun:flowLogs on for the whole mesh (or off); a VPC of your own needs an aws.ec2.FlowLog "
    "with traffic_type ALL, a GCP subnetwork a log_config. requireFlowLogs demands them even when none exists.",
    level=MANDATORY,
    config={"requireFlowLogs": (False, {"type": "boolean"})},
)
def flow_logs_cover_every_network(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    snapshot = _snapshot(resources)
    by_vpc, logged_subnets = _logged_networks(snapshot)
    if not (by_vpc or logged_subnets or _truthy(config["requireFlowLogs"])):
        return []
    logged = {subnet.urn for subnet in logged_subnets}
    findings = [
        Finding(vpc.label, "VPC has no flow log") for vpc in snapshot.of_type(tokens.VPC) if vpc.urn not in by_vpc
    ]
    findings += [
        Finding(subnet.label, "subnetwork has no logConfig (no flow logs)")
        for subnet in snapshot.of_type(tokens.GCP_SUBNETWORK)
        if subnet.urn not in logged
    ]
    for flow_log in snapshot.of_type(tokens.FLOW_LOG):
        traffic = flow_log.props.get("trafficType")
        if isinstance(traffic, str) and not is_unknown(traffic) and traffic != "ALL":
            findings.append(Finding(flow_log.label, f"flow log records {traffic} traffic only; it must record ALL"))
    return findings


_SERVICE = tokens.K8S_SERVICE


def _node_ports(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str, int, str]]:
    """(service resource, service name, node port, protocol) of every declared nodePort."""
    for resource in resources:
        if resource.type != _SERVICE:
            continue
        metadata = resource.props.get("metadata")
        service = f"{get(metadata, 'namespace') or 'default'}/{get(metadata, 'name') or resource.name}"
        for port in items(get(resource.props, "spec", "ports")):
            number = integer(get(port, "nodePort"))
            if number is not None:
                yield resource, service, number, str(get(port, "protocol") or "TCP")


@stack_rule(
    name="node-ports-in-range",
    description="Every Kubernetes Service nodePort lies in the mesh's node-port range (default 30000-32767).",
    remediation="Choose node ports inside the range (the spec's node_port fields); K3s refuses others.",
    level=MANDATORY,
    config={
        "nodePortMin": (NODE_PORT_RANGE[0], {"type": "integer"}),
        "nodePortMax": (NODE_PORT_RANGE[1], {"type": "integer"}),
    },
)
def node_ports_in_range(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    low, high = int(config["nodePortMin"]), int(config["nodePortMax"])
    return [
        Finding(resource.label, f"service {service} uses nodePort {port}, outside {low}-{high}")
        for resource, service, port, _ in _node_ports(resources)
        if not low <= port <= high
    ]


@stack_rule(
    name="node-ports-unique",
    description="No nodePort is used twice across the mesh's Kubernetes Services (one Service may repeat a "
    "port for TCP and UDP).",
    remediation="Give every service its own node port (the spec's node_port fields are mesh-wide).",
    level=MANDATORY,
)
def node_ports_unique(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    users: dict[int, list[tuple[Resource, str, str]]] = defaultdict(list)
    for resource, service, port, protocol in _node_ports(resources):
        users[port].append((resource, service, protocol))
    findings = []
    for port, entries in sorted(users.items()):
        services = sorted({service for _, service, _ in entries})
        pairs = [(service, protocol) for _, service, protocol in entries]
        if len(services) > 1:
            findings.append(Finding(entries[1][0].label, f"nodePort {port} is used by {', '.join(services)}"))
        elif len(pairs) != len(set(pairs)):
            findings.append(Finding(entries[0][0].label, f"service {services[0]} lists nodePort {port} twice"))
    return findings


def _containers(resource_type: str, props: Mapping[str, Any], name: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(what, container)`` of every container of the Kubernetes objects a resource creates: itself, or those
    its user data applies at boot (:mod:`lmrun.verify.kubernetes_objects`)."""
    for obj in kubernetes_objects(resource_type, props, name):
        where = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
        for container, spec in containers(obj):
            yield f"{obj.kind} {where} {container}", spec


@resource_rule(
    name="kubernetes-images-by-digest",
    description="Every container image of a Kubernetes workload the stack creates (through Pulumi, or applied "
    "at boot from a VM's user data) is pinned by digest (…@sha256:<64 hex>).",
    remediation="Pin the image as name:tag@sha256:<digest of its multi-arch index> (e.g. `crane digest IMAGE`).",
    level=MANDATORY,
)
def kubernetes_images_by_digest(
    resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]
) -> list[str]:
    return [
        f"{what} runs image {spec.get('image')!r}, not pinned by digest"
        for what, spec in _containers(resource_type, props, name)
        if image_pinned(spec.get("image")) is False
    ]


@resource_rule(
    name="kubernetes-container-resources",
    description="Every container of a Kubernetes workload the stack creates sets CPU and memory requests and limits.",
    remediation="Set resources.requests and resources.limits (cpu and memory) on every container.",
    level=MANDATORY,
)
def kubernetes_container_resources(
    resource_type: str, props: Mapping[str, Any], name: str, config: Mapping[str, Any]
) -> list[str]:
    return [
        f"{what} sets no {', '.join(missing)}"
        for what, spec in _containers(resource_type, props, name)
        if (missing := missing_resources(spec))
    ]


@stack_rule(
    name="namespaces-deny-by-default",
    description="Every Kubernetes namespace the stack creates or puts objects in holds a NetworkPolicy "
    "denying all ingress and egress to all its pods (empty podSelector, both policyTypes, no rule).",
    remediation="Create the namespace with a default-deny NetworkPolicy "
    "(lmrun.render.kubernetes.default_deny_manifest) and allow only what its pods need.",
    level=MANDATORY,
)
def namespaces_deny_by_default(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    if any(user_data_hidden(resource.type, resource.props) for resource in resources):
        return []  # a VM whose user data is not shown may apply the policy at boot: cannot tell
    labels = {resource.name: resource.label for resource in resources}
    objects = [obj for r in resources for obj in kubernetes_objects(r.type, r.props, r.name)]
    return [
        Finding(
            labels.get(verdict.creator.creator, verdict.creator.creator),
            f"namespace {verdict.namespace} (of {verdict.creator.label}) has no default-deny NetworkPolicy",
        )
        for verdict in namespace_verdicts(objects)
        if verdict.policy is None
    ]


_CIDR_SOURCES = {
    tokens.VPC: "cidrBlock",
    tokens.VPC_CIDR_ASSOCIATION: "cidrBlock",
    tokens.GCP_SUBNETWORK: "ipCidrRange",
}


@stack_rule(
    name="cidrs-disjoint",
    description="VPC CIDRs (aws:ec2/vpc:Vpc cidrBlock) and site CIDRs (gcp:compute/subnetwork:Subnetwork "
    "ipCidrRange) do not overlap.",
    remediation="Let the plan assign the VPC CIDRs (/16s in 10.64.0.0/10) and give every site a private range "
    "of its own (lmrun:sites[].cidr; the spec refuses overlaps).",
    level=MANDATORY,
)
def cidrs_disjoint(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    """Each overlap is reported on the later resource and names the earlier one. Found by one sweep over the
    ranges sorted by start (n log n plus the overlaps), not by comparing every pair."""
    declared: list[tuple[Resource, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    found: list[tuple[int, int, Finding]] = []
    for resource in resources:
        key = _CIDR_SOURCES.get(resource.type)
        if key is None or resource.props.get(key) is None or is_unknown(resource.props.get(key)):
            continue
        cidr = network(resource.props[key])
        if cidr is None:
            found.append((len(declared), -1, Finding(resource.label, f"{key} {resource.props[key]!r} is not a CIDR")))
            continue
        declared.append((resource, key, cidr))
    for earlier, later in _overlapping([cidr for _, _, cidr in declared]):
        (resource, key, cidr), (other, _, other_cidr) = declared[later], declared[earlier]
        message = f"{key} {cidr} overlaps {other_cidr} of {other.name or other.urn}"
        found.append((later, earlier, Finding(resource.label, message)))
    return [finding for _, _, finding in sorted(found, key=lambda f: (f[0], f[1]))]


def _overlapping(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> Iterator[tuple[int, int]]:
    """Every pair (earlier index, later index) of overlapping networks of one IP version."""
    for version in (4, 6):
        ranges = sorted(
            (int(n.network_address), int(n.broadcast_address), index)
            for index, n in enumerate(networks)
            if n.version == version
        )
        active: list[tuple[int, int]] = []  # (last address, index) of ranges that may still overlap
        for first, last, index in ranges:
            active = [(end, other) for end, other in active if end >= first]
            for _, other in active:
                yield min(other, index), max(other, index)
            active.append((last, index))


@stack_rule(
    name="peerings-within-limit",
    description="No VPC takes part in more VPC peering connections than the limit (AWS: 50 active by default, "
    "125 at most).",
    remediation="Drop spoke regions (lmrun:regions) or raise the account's 'Active VPC peering connections per "
    "VPC' quota and set maxPeerings (stack lmrun:maxPeerings and this rule's config) to match.",
    level=MANDATORY,
    config={"maxPeerings": (DEFAULT_MAX_PEERINGS, {"type": "integer", "minimum": 1, "maximum": 125})},
)
def peerings_within_limit(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    """Each side of a peering resolves to its VPC by id, or (an id a preview cannot know) through the
    ``vpcId``/``peerVpcId`` property dependencies; an id of a VPC outside the stack counts as itself."""
    limit = int(config["maxPeerings"])
    snapshot = _snapshot(resources)
    counts: dict[str, int] = defaultdict(int)
    for peering in snapshot.of_type(tokens.PEERING):
        for prop in ("vpcId", "peerVpcId"):
            key = snapshot.ref_key(peering, prop, (tokens.VPC,))
            if key is not None:
                counts[key] += 1
    return [
        Finding(
            snapshot.by_urn[key].label if key in snapshot.by_urn else key,
            f"VPC {key} has {count} peering connections (limit {limit})",
        )
        for key, count in sorted(counts.items())
        if count > limit
    ]


def _region_vpcs(snapshot: Snapshot) -> dict[str, str]:
    """AWS region -> the URN of the stack's VPC there, by the VPC's provider (its ``region``), else its
    ``lmrun:region`` tag."""
    provider_region = {r.urn: str(r.get("region") or "") for r in snapshot.resources if r.is_provider}
    found: dict[str, str] = {}
    for vpc in snapshot.of_type(tokens.VPC):
        region = provider_region.get(vpc.provider_urn) or str((_tags(vpc.props) or {}).get(TAG_REGION) or "")
        if region:
            found.setdefault(region, vpc.urn)
    return found


def _peered(snapshot: Snapshot) -> set[frozenset[str]]:
    """Pairs of VPC URNs joined by a peering connection of the stack."""
    pairs: set[frozenset[str]] = set()
    for peering in snapshot.of_type(tokens.PEERING):
        ends = [snapshot.ref_key(peering, prop, (tokens.VPC,)) for prop in ("vpcId", "peerVpcId")]
        if all(ends):
            pairs.add(frozenset(str(end) for end in ends))
    return pairs


def _spot_offered(gpu: str, count: int, region: str, offerings: Mapping[str, Any]) -> str | None:
    """Why ``region`` cannot run a spot replica with ``count`` x ``gpu`` (None when it can): the catalog's types
    with those GPUs, offered there per the stack's record (``lmrun:offerings``) or the catalog, sold as spot."""
    try:
        types = catalog.instance_types_for(gpu, count)
    except (KeyError, ValueError) as exc:
        return str(exc.args[0] if exc.args else exc)
    record = offerings if isinstance(offerings, Mapping) else {}
    asked = tuple(str(t) for t in record.get("instanceTypes") or ())
    regions = {str(r): tuple(str(t) for t in ts or ()) for r, ts in (record.get("regions") or {}).items()}
    availability = recorded_availability(asked, regions) if regions else CATALOG_ONLY
    offered = [t for t in types if availability.offers(t.name, region)]
    if not offered:
        return f"{count}x {gpu} is not offered in {region}"
    if all(t.spot_usd_hour is None for t in offered):
        return f"{', '.join(t.name for t in offered)} is not sold as spot in {region}"
    return None


@stack_rule(
    name="elastic-spot-regions",
    description="Every spot region of an elastic service has a mesh VPC, offers the service's GPU as spot and is "
    "reached from the SkyServe controller (the main region) by a peering.",
    remediation="List only regions of the mesh (lmrun:mainRegion, lmrun:regions) that offer the GPU as spot in the "
    "service's regions (lmrun:elasticServices[].regions); `lmrun regions sync` records what each region offers.",
    level=MANDATORY,
    config={"elasticServices": ({}, {"type": "object"})},
)
def elastic_spot_regions(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    """Re-checks the exported plan (``policySettings.elasticServices``) against the resources: the plan refuses
    these already; a hand-edited or foreign stack is caught here. The reachability model: the main region reaches
    a region through the peering of their VPCs; a region without a VPC is reached by nothing."""
    settings = config.get("elasticServices") or {}
    if not isinstance(settings, Mapping) or not settings.get("services"):
        return []
    snapshot = _snapshot(resources)
    vpcs = _region_vpcs(snapshot)
    peered = _peered(snapshot)
    controller = str(settings.get("controllerRegion") or "")
    findings: list[Finding] = []
    for service in settings.get("services") or ():
        if not isinstance(service, Mapping):
            continue
        name = str(service.get("name"))
        for region in service.get("spotRegions") or ():
            region = str(region)
            problems = []
            vpc = vpcs.get(region)
            if vpc is None:
                problems.append("no mesh VPC there (SkyPilot launches only into the mesh's VPCs)")
            elif region != controller and frozenset((vpc, vpcs.get(controller, ""))) not in peered:
                problems.append(f"no peering with the controller's region {controller or '(unknown)'}")
            offer = _spot_offered(
                str(service.get("gpu")), integer(service.get("gpuCount")) or 1, region, service.get("offerings") or {}
            )
            if offer is not None:
                problems.append(offer)
            if problems:
                where = snapshot.by_urn[vpc].label if vpc in snapshot.by_urn else region
                findings.append(Finding(where, f"elastic service {name}: spot region {region}: {'; '.join(problems)}"))
    return findings


@stack_rule(
    name="stateful-volumes-protected",
    description=f"EBS volumes tagged {STATEFUL_TAG}=true are protected and retained on delete.",
    remediation="Create the volume with pulumi.ResourceOptions(protect=True, retain_on_delete=True). "
    "CrossGuard exposes `protect` only; retainOnDelete is checked by the offline plan (lmrun plan).",
    level=MANDATORY,
    config={"statefulTag": (STATEFUL_TAG, {"type": "string"})},
)
def stateful_volumes_protected(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for resource in resources:
        if resource.type != tokens.EBS_VOLUME:
            continue
        tags = _tags(resource.props) or {}
        if str(tags.get(config["statefulTag"], "")).lower() != "true":
            continue
        missing = [] if resource.protect else ["protect"]
        if resource.retain_on_delete is False:
            missing.append("retainOnDelete")
        if missing:
            findings.append(Finding(resource.label, f"stateful volume lacks {' and '.join(missing)}"))
    return findings


# --------------------------------------------------------------------------------------------------------------
# CrossGuard adapters


def build_policy(rule: Rule) -> Any:
    """The rule as a ``pulumi_policy.ResourceValidationPolicy`` or ``StackValidationPolicy`` (no server starts)."""
    import pulumi_policy

    schema = pulumi_policy.PolicyConfigSchema(properties={k: dict(v) for k, v in rule.schema.items()})
    common: dict[str, Any] = {
        "name": rule.name,
        "description": rule.description,
        "enforcement_level": pulumi_policy.EnforcementLevel(rule.level),
        "config_schema": schema if rule.schema else None,
        "remediation_steps": rule.remediation,
    }

    def own_config(args: Any) -> dict[str, Any]:
        given = {k: v for k, v in dict(args.get_config() or {}).items() if k in rule.defaults}
        return {**stack_defaults(rule.defaults, current_stack_settings()), **given}

    if rule.kind == "resource":

        def validate_resource(args: Any, report_violation: Any) -> None:
            resource = from_policy_resource(args)
            for message in rule.check(resource.type, resource.props, resource.name, own_config(args)):
                report_violation(message, None)

        return pulumi_policy.ResourceValidationPolicy(validate=validate_resource, **common)

    def validate_stack(args: Any, report_violation: Any) -> None:
        resources = Snapshot(from_policy_resource(r) for r in args.resources)
        for finding in rule.check(resources, own_config(args)):
            report_violation(finding.message, finding.resource if finding.resource.startswith("urn:") else None)

    return pulumi_policy.StackValidationPolicy(validate=validate_stack, **common)


def build_policies() -> list[Any]:
    """Every rule as a CrossGuard policy, in registration order."""
    return [build_policy(rule) for rule in RULES.values()]
