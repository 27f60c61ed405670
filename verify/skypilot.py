"""The SkyPilot config against the resources: every name it uses exists with exactly that name, and each
security group admits the declared services from the mesh.

SkyPilot looks everything up by name when it launches (the VPC per region by its ``Name`` tag, the security
group by name inside that VPC, the instance profile by name) and quietly falls back when a name is missing: a
region without a match is skipped, a missing group is created with SkyPilot's own rules (SSH from anywhere), a
missing profile fails the launch. So the plan proves, from the stack's ``skypilot`` output (what ``lmrun sky
render`` writes into ``config.yaml``), that each name is there, and that each region's group lets the mesh
reach a SkyPilot replica's node ports and app ports (kube-proxy DNATs a node port to ``<replica>:<app port>``
from whichever node received it). Each group must also hold an all-traffic rule whose source is another group:
without one, SkyPilot's ``open_ports`` adds ``0.0.0.0/0`` rules for a task's ports (sky/provision/aws/instance.py).
Each private subnet the config lists (``aws.subnet_names``) must exist under that ``Name``, assigning no public
address (SkyPilot with ``use_internal_ips`` refuses a named subnet that does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from lmrun.domain.names import TAG_REGION
from lmrun.render.skypilot import SkyPilotMesh
from lmrun.verify import tokens
from lmrun.verify.contracts import CANNOT_TELL, ContractResult, PlannedResource
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown, network

CONTRACT = "skypilot config names a recorded resource"
INGRESS_CONTRACT = "skypilot security group admits the mesh"
OPEN_PORTS_CONTRACT = "skypilot security group stops open_ports"


def _named(resources: Iterable[PlannedResource], type_: str, key: str, value: str) -> list[PlannedResource]:
    return [r for r in resources if r.type == type_ and get(r.inputs, key) == value]


def _result(what: str, name: str, found: bool, limit: str) -> ContractResult:
    return ContractResult(f"skypilot:{what}", CONTRACT, name, limit, found)


def _rules_of(group: PlannedResource, snapshot: Snapshot | None) -> list[Any] | None:
    """The group's inbound rules in the inline shape (``protocol``, ``fromPort``, ``toPort``, ``cidrBlocks``):
    its inline ones plus the standalone ``SecurityGroupIngressRule`` resources referring to it (the main
    region's group has only those); None when the inline list is unknown."""
    inline = get(group.inputs, "ingress")
    if is_unknown(inline):
        return None
    rules: list[Any] = list(inline) if isinstance(inline, list) else []
    if snapshot is not None and isinstance(group, Resource):
        for rule in snapshot.of_type(tokens.SG_INGRESS_RULE):
            if snapshot.ref(rule, ("securityGroupId",), (tokens.SECURITY_GROUP,)) is group:
                cidr = get(rule.inputs, "cidrIpv4")
                # A group's id is unknown in a first preview: the input is there, naming a group all the same.
                source_group = rule.inputs.get("referencedSecurityGroupId")
                rules.append(
                    {
                        "protocol": get(rule.inputs, "ipProtocol"),
                        "fromPort": get(rule.inputs, "fromPort"),
                        "toPort": get(rule.inputs, "toPort"),
                        "cidrBlocks": [cidr] if cidr is not None else [],
                        "securityGroups": [source_group] if source_group is not None else [],
                    }
                )
    return rules


def _admits(rules: list[Any] | None, port: int, source: ipaddress.IPv4Network) -> bool | None:
    """Whether one of ``rules`` admits TCP ``port`` from all of ``source``; None when unknown."""
    if rules is None:
        return None
    for rule in rules:
        protocol = str(get(rule, "protocol"))
        low, high = get(rule, "fromPort"), get(rule, "toPort")
        if protocol in ("-1", "all"):
            ports_ok = True
        elif protocol in ("tcp", "6") and isinstance(low, int) and isinstance(high, int):
            ports_ok = low <= port <= high
        else:
            ports_ok = False
        cidrs = [network(c) for c in get(rule, "cidrBlocks") or []]
        if ports_ok and any(c is not None and c.version == 4 and source.subnet_of(c) for c in cidrs):
            return True
    return False


def _stops_open_ports(rules: list[Any] | None) -> bool | None:
    """Whether an all-traffic rule names a source group (SkyPilot then opens no port); None when unknown. The
    group's own id is never among the sources here (the stack never makes a group refer to itself)."""
    if rules is None:
        return None
    return any(str(get(rule, "protocol")) in ("-1", "all") and get(rule, "securityGroups") for rule in rules)


def _mesh_sources(region: str, outputs: Mapping[str, Any]) -> list[ipaddress.IPv4Network]:
    """The ranges that reach SkyPilot VMs in ``region``: its own VPC and the main region's (peering is
    hub-and-spoke), and in the main region every region and site."""
    regions = outputs.get("regions") or {}
    main = next((name for name, info in regions.items() if info.get("role") == "main"), None)
    if region == main:
        cidrs = [info["cidr"] for info in regions.values()] + [s["cidr"] for s in (outputs.get("sites") or {}).values()]
    else:
        cidrs = [regions[region]["cidr"]] + ([regions[main]["cidr"]] if main else [])
    return [ipaddress.IPv4Network(c) for c in cidrs]


def skypilot_names_exist(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """One row per name of the SkyPilot config, and one per region and service port."""
    exported = outputs.get("skypilot")
    if not exported:
        return []
    if is_unknown(exported) or not isinstance(exported, Mapping):
        return [ContractResult("skypilot", CONTRACT, CANNOT_TELL, "the stack's skypilot output", True)]
    mesh = SkyPilotMesh.from_json(exported)
    listed = list(resources)
    # Standalone rules refer to their group by id or dependency: only the reader's records carry those.
    snapshot = Snapshot([r for r in listed if isinstance(r, Resource)]) if listed else None
    results = [
        _result(
            "instance-profile",
            mesh.name,
            bool(_named(listed, tokens.IAM_INSTANCE_PROFILE, "name", mesh.name)),
            "an IAM instance profile of that name (aws.remote_identity)",
        ),
        _result(
            "role", mesh.name, bool(_named(listed, tokens.IAM_ROLE, "name", mesh.name)), "an IAM role of that name"
        ),
        _result(
            "bucket",
            mesh.bucket,
            any(_named(listed, t, "bucket", mesh.bucket) for t in tokens.S3_BUCKETS),
            "an S3 bucket of that name",
        ),
    ]
    if mesh.controller_profile is not None:
        results.append(
            _result(
                "controller-instance-profile",
                mesh.controller_profile,
                bool(_named(listed, tokens.IAM_INSTANCE_PROFILE, "name", mesh.controller_profile)),
                "an IAM instance profile of that name (aws.remote_identity of sky-serve-controller-*)",
            )
        )
    for subnet_name in mesh.private_subnet_names:
        subnets = [s for s in listed if s.type == tokens.SUBNET and get(s.inputs, "tags", "Name") == subnet_name]
        results.append(
            _result(
                f"subnet:{subnet_name}",
                subnet_name,
                bool(subnets) and all(get(s.inputs, "mapPublicIpOnLaunch") is False for s in subnets),
                "a subnet of that Name assigning no public address (aws.subnet_names with use_internal_ips)",
            )
        )
    ports = sorted({port for s in mesh.services for port in (s.node_port, s.app_port)})
    groups = _named(listed, tokens.SECURITY_GROUP, "name", mesh.name)
    for region, vpc_name in mesh.vpc_names.items():
        vpcs = [v for v in listed if v.type == tokens.VPC and get(v.inputs, "tags", "Name") == vpc_name]
        in_region = [v for v in vpcs if get(v.inputs, "tags", TAG_REGION) == region]
        results.append(_result(f"vpc:{region}", vpc_name, bool(in_region), f"a VPC in {region} tagged Name={vpc_name}"))
        here = [g for g in groups if get(g.inputs, "tags", TAG_REGION) == region]
        results.append(
            _result(f"security-group:{region}", mesh.name, bool(here), f"a security group of that name in {region}")
        )
        for group in here:
            sources = _mesh_sources(region, outputs)
            rules = _rules_of(group, snapshot)
            verdicts = {(port, source): _admits(rules, port, source) for source in sources for port in ports}
            refused = [f"tcp/{port} from {source}" for (port, source), ok in verdicts.items() if ok is False]
            unknown = any(ok is None for ok in verdicts.values())
            value = (
                f"refuses {', '.join(refused)}"
                if refused
                else CANNOT_TELL
                if unknown
                else f"admits tcp/{','.join(map(str, ports))} from {len(sources)} mesh ranges"
            )
            stops = _stops_open_ports(rules)
            results.append(
                ContractResult(
                    f"skypilot:security-group:{region}",
                    OPEN_PORTS_CONTRACT,
                    CANNOT_TELL if stops is None else "all traffic from another group" if stops else "no such rule",
                    "an all-traffic rule from another group, or open_ports adds 0.0.0.0/0 rules for a task's ports",
                    stops is not False,
                )
            )
            results.append(
                ContractResult(
                    f"skypilot:security-group:{region}",
                    INGRESS_CONTRACT,
                    value,
                    "every declared service's node port and app port admitted from the mesh ranges of its region",
                    not refused,
                )
            )
    return results
