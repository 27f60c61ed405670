"""The mesh spec: what a stack declares, validated before any resource exists.

Field names are snake_case in Python and camelCase in stack config (``lmrun:mainRegion``). Per-field
rules live on the fields; rules that relate fields live in :func:`cross_field_issues`, which works on the
raw config so it still reports when another field has the wrong type (every error at once).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from lmrun.aws.network.cidr_blocks import MAX_AZ_NUMBER
from lmrun.aws.region.catalog import REGIONS, az_number
from lmrun.aws.region.selection import ROGUE_REGIONS
from lmrun.domain.addresses import RESERVED_BLOCKS
from lmrun.domain.versions import K3S_VERSION
from lmrun.spec.capacity import OfferingsSpec, RegionQuotas, capacity_issues
from lmrun.spec.elastic import ElasticServiceSpec, elastic_issues
from lmrun.spec.errors import ConfigIssue, config_path, echo
from lmrun.spec.flow_logs import FlowLogsSpec
from lmrun.spec.gpu_pool import PoolSpec, pool_issues
from lmrun.spec.groups import GroupSpec, Labels, group_issues
from lmrun.spec.images import RegionImages
from lmrun.spec.model_base import SpecModel
from lmrun.spec.nodes import Name, NodeSpec, ServiceSpec, node_issues
from lmrun.spec.paths import PathSpec
from lmrun.spec.phoenix import PhoenixSpec, phoenix_issues, reserved_node_ports
from lmrun.spec.sites import SiteSpec, WireGuardSpec, site_issues, site_names, unsettled_sites
from lmrun.spec.skypilot import SkyPilotSpec, skypilot_issues
from lmrun.spec.values import InstanceType, NetworkText

DEFAULT_GPU_INSTANCE_TYPES: tuple[str, ...] = ("g6.xlarge", "g6.2xlarge", "g6.12xlarge")
DEFAULT_MAX_PEERINGS = 50
DEFAULT_SERVER_INSTANCE_TYPE = "t3.medium"
MAX_PEERINGS_CEILING = 125  # the highest AWS raises "active VPC peering connections per VPC" to

_TAG_KEY = re.compile(r"^(?!aws:)[\w.:/=+\-@ ]{1,128}$")
_K3S_VERSION = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")


def _known_region(region: str) -> str:
    if region in ROGUE_REGIONS:
        raise ValueError(f"{region!r} is skipped by this mesh: {ROGUE_REGIONS[region]}")
    if region not in REGIONS:
        raise ValueError(
            f"{region!r} is not an AWS region this mesh knows; known regions: "
            f"{', '.join(sorted(set(REGIONS) - set(ROGUE_REGIONS)))}"
        )
    return region


def _az_id(value: str) -> str:
    number = az_number(value)  # raises ValueError with the expected shape
    if not 1 <= number <= MAX_AZ_NUMBER:
        raise ValueError(
            f"{value!r}: zone number {number} is outside 1..{MAX_AZ_NUMBER} (one /20 of the region's /16 per zone)"
        )
    return value


def _empty_is_none(value: Any) -> Any:
    """Pulumi.yaml defaults optional strings to "" (a key without default is required there)."""
    return None if value == "" else value


def _operator_cidr(value: IPv4Network) -> IPv4Network:
    if value.prefixlen == 0:
        raise ValueError("0.0.0.0/0 would open the K3s API to the whole internet; list your own CIDRs")
    for name, block in RESERVED_BLOCKS.items():
        if value.overlaps(block):
            raise ValueError(
                f"{value} overlaps the mesh's {name} range {block}: operator CIDRs are the networks outside the mesh "
                "that reach the K3s API over the internet (inside the mesh, the private address is already routed)"
            )
    return value


def _k3s_version(value: str) -> str:
    if not _K3S_VERSION.match(value):
        raise ValueError(f"{echo(value)} is not a K3s release like {K3S_VERSION!r}")
    return value


def _tag_key(value: str) -> str:
    if not _TAG_KEY.match(value):
        raise ValueError(f"{value!r} is not a valid AWS tag key (1-128 chars, no 'aws:' prefix)")
    return value


Region = Annotated[str, AfterValidator(_known_region)]
AzId = Annotated[str, AfterValidator(_az_id)]
TagKey = Annotated[str, AfterValidator(_tag_key)]
TagValue = Annotated[str, Field(max_length=256)]
K3sVersion = Annotated[str, AfterValidator(_k3s_version)]
OperatorCidr = Annotated[IPv4Network, NetworkText, AfterValidator(_operator_cidr)]


class MeshSpec(SpecModel):
    """Everything under the ``lmrun:`` namespace of a stack's config."""

    main_region: Region = Field(description="AWS region of the hub: K3s server, gateway, Phoenix.")
    regions: tuple[Region, ...] = Field(
        default=(),
        description="Spoke regions, each peered with the main region. Written by `lmrun regions sync`.",
    )
    gpu_instance_types: tuple[InstanceType, ...] = Field(
        default=DEFAULT_GPU_INSTANCE_TYPES,
        min_length=1,
        description="Instance types `lmrun regions sync` looks for when choosing spoke regions.",
    )
    max_peerings: int = Field(
        default=DEFAULT_MAX_PEERINGS,
        ge=1,
        le=MAX_PEERINGS_CEILING,
        description="Active VPC peerings the main VPC may hold (AWS default 50, raisable to 125).",
    )
    availability_zones: dict[Region, tuple[AzId, ...]] = Field(
        default_factory=dict,
        description="AZ ids per region, overriding the built-in catalog. Written by `lmrun regions sync`.",
    )
    offerings: OfferingsSpec = Field(
        default_factory=OfferingsSpec,
        description="The GPU instance types each region offers this account, recorded by `lmrun regions sync`: they "
        "decide where a GPU is offered (the built-in catalog decides what they do not cover); the plan says which "
        "source decided each node.",
    )
    quotas: dict[Region, RegionQuotas] = Field(
        default_factory=dict,
        description="EC2 vCPU quotas per region, by Service Quotas code (`L-DB2E81BA` on-demand and `L-3819A6DF` "
        "spot G and VT instances), recorded by `lmrun quotas --write`: a replica group's room in a region.",
    )
    images: dict[Region, RegionImages] = Field(
        default_factory=dict,
        description="Pinned AMI ids per AWS region and VM role, e.g. `us-east-1: {server: ami-..., gpu: ami-...}`: "
        "the program looks no image up, so `pulumi preview` is deterministic and an image upgrade is a reviewed "
        "config change. Written by `lmrun images sync`; the plan refuses a mesh missing a pin it needs and "
        "ignores pins it does not use.",
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Extra tags put on every taggable resource.",
    )
    k3s_version: K3sVersion = Field(
        default=K3S_VERSION,
        alias="k3sVersion",
        description="Pinned K3s release of server and agents, like `v1.33.6+k3s1`.",
    )
    server_instance_type: InstanceType = Field(
        default=DEFAULT_SERVER_INSTANCE_TYPE,
        description="Instance type of the K3s server (2 vCPU / 4 GiB serves ~350 agents).",
    )
    operator_cidrs: tuple[OperatorCidr, ...] = Field(
        default=(),
        description="CIDRs allowed to reach the K3s API (6443) from outside the mesh. Default: none. The mesh's own "
        "ranges (K3s pods and services, regions, sites, tunnels) and the sites' networks are refused.",
    )
    hugging_face_token: Annotated[SecretStr | None, BeforeValidator(_empty_is_none)] = Field(
        default=None,
        description="Hugging Face token for gated models (set it with `pulumi config set --secret`).",
    )
    nodes: tuple[NodeSpec, ...] = Field(default=(), description="GPU nodes running vLLM, one VM each.")
    services: tuple[ServiceSpec, ...] = Field(
        default=(), description="Generic VM processes published on mesh-wide node ports."
    )
    groups: tuple[GroupSpec, ...] = Field(
        default=(),
        description="Replica groups: N GPU nodes of one model behind one node port, placed over the mesh's regions "
        "and sites by a policy at plan time.",
    )
    gpu_pool: tuple[PoolSpec, ...] = Field(
        default=(),
        description="GPU pools: declared GPU nodes whose GPUs are offered to Kubernetes (SkyPilot's pods) instead of "
        "a vLLM on the VM, placed over the mesh's regions and sites by a policy like replica groups; needs "
        "lmrun:skypilot.",
    )
    elastic_services: tuple[ElasticServiceSpec, ...] = Field(
        default=(),
        description="Elastic services: one model behind one node port, scaled by SkyServe on the request rate, with an "
        "on-demand base on the K3s GPU pool and spot replicas over AWS regions chosen by a policy (needs "
        "lmrun:skypilot.enabled).",
    )
    labels: dict[Name, Labels] = Field(
        default_factory=dict,
        description="Labels of the mesh's locations (AWS regions and sites), e.g. `eu-west-2: {class: prod}`, "
        "for groups that select locations by label.",
    )
    phoenix: PhoenixSpec = Field(
        default_factory=PhoenixSpec, description="Phoenix observability node (traces from every vLLM node)."
    )
    sites: tuple[SiteSpec, ...] = Field(
        default=(), description="Non-AWS sites joined through WireGuard tunnels to the hub gateway."
    )
    wireguard: WireGuardSpec = Field(
        default_factory=WireGuardSpec,
        description="The WireGuard hub gateway in the main region (used when sites exist).",
    )
    paths: tuple[PathSpec, ...] = Field(
        default=(), description="Client-to-service paths the mesh must carry, checked against the topology."
    )
    flow_logs: FlowLogsSpec = Field(
        default_factory=FlowLogsSpec,
        description="Flow logs of every AWS VPC and GCP site subnet (the network audit trail); off unless enabled.",
    )
    skypilot: SkyPilotSpec = Field(
        default_factory=SkyPilotSpec, description="The mesh as SkyPilot infrastructure (off unless `enabled`)."
    )


def _as_int(value: Any) -> int | None:
    """An integer config value as Pulumi delivers it (``"50"``) or as Python code passes it; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _is_az_id(value: Any) -> bool:
    try:
        az_number(value)
    except (TypeError, ValueError):
        return False
    return True


def cross_field_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules between fields, checked on the raw (camelCase) config and tolerant of wrong types."""
    issues: list[ConfigIssue] = []
    main = raw.get("mainRegion") if isinstance(raw.get("mainRegion"), str) else None
    regions = raw.get("regions")
    if isinstance(regions, list):
        counts = Counter(r for r in regions if isinstance(r, str))
        for index, region in enumerate(regions):
            if not isinstance(region, str):
                continue
            if region == main:
                issues.append(
                    ConfigIssue(
                        config_path(("regions", index)),
                        f"{region!r} is the main region (lmrun:mainRegion); the hub is implied, do not list it",
                    )
                )
            elif counts[region] > 1 and regions.index(region) != index:
                issues.append(ConfigIssue(config_path(("regions", index)), f"{region!r} is listed more than once"))
        # Pulumi hands every scalar over as a string: "3" must count as 3 here too.
        max_peerings = _as_int(raw.get("maxPeerings", DEFAULT_MAX_PEERINGS))
        spokes = {r for r in counts if r != main}
        if max_peerings is not None and len(spokes) > max_peerings:
            issues.append(
                ConfigIssue(
                    config_path(("regions",)),
                    f"{len(spokes)} spoke regions need {len(spokes)} peerings with the main VPC, more than "
                    f"lmrun:maxPeerings={max_peerings} (AWS default 50; raise the quota, up to "
                    f"{MAX_PEERINGS_CEILING}, and lmrun:maxPeerings with it)",
                )
            )
    azs = raw.get("availabilityZones")
    if isinstance(azs, dict):
        declared = {main, *(r for r in (regions if isinstance(regions, list) else []) if isinstance(r, str))}
        for region, zones in azs.items():
            if region in REGIONS and region not in declared:
                issues.append(
                    ConfigIssue(
                        config_path(("availabilityZones", region)),
                        f"{region!r} is neither lmrun:mainRegion nor in lmrun:regions",
                    )
                )
            if region in REGIONS and isinstance(zones, list):
                prefix = REGIONS[region].az_ids[0].rpartition("-az")[0]
                for index, zone in enumerate(zones):
                    # A malformed id is reported once, by the field validator; here only other regions' ids.
                    if isinstance(zone, str) and _is_az_id(zone) and not zone.startswith(prefix + "-az"):
                        issues.append(
                            ConfigIssue(
                                config_path(("availabilityZones", region, index)),
                                f"{zone!r} is not an AZ id of {region} (they look like '{prefix}-az1')",
                            )
                        )
                if isinstance(zones, list) and not zones:
                    issues.append(ConfigIssue(config_path(("availabilityZones", region)), "needs at least one AZ id"))
    issues.extend(_operator_cidr_issues(raw))
    issues.extend(phoenix_issues(raw))
    issues.extend(site_issues(raw))
    issues.extend(skypilot_issues(raw))
    issues.extend(
        node_issues(
            raw, reserved_ports=reserved_node_ports(raw), sites=site_names(raw), unsettled_sites=unsettled_sites(raw)
        )
    )
    issues.extend(capacity_issues(raw))
    issues.extend(group_issues(raw, reserved_ports=reserved_node_ports(raw), sites=site_names(raw)))
    issues.extend(pool_issues(raw, reserved_ports=reserved_node_ports(raw), sites=site_names(raw)))
    issues.extend(elastic_issues(raw, reserved_ports=reserved_node_ports(raw), sites=site_names(raw)))
    return issues


def _operator_cidr_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """An operator CIDR is outside the mesh: never one of its sites' networks."""
    cidrs = raw.get("operatorCidrs")
    sites = site_names(raw)
    issues: list[ConfigIssue] = []
    for index, value in enumerate(cidrs if isinstance(cidrs, list) else []):
        if not isinstance(value, str):
            continue  # reported by the field's validator
        try:
            network = IPv4Network(value)
        except (TypeError, ValueError):
            continue  # reported by the field's validator
        for site in sites.values():
            if network.overlaps(site.cidr):
                issues.append(
                    ConfigIssue(
                        config_path(("operatorCidrs", index)),
                        f"{network} overlaps site {site.name}'s network {site.cidr}: operator CIDRs are outside "
                        "the mesh (the site reaches the K3s API through its tunnel already)",
                    )
                )
                break
    return issues
