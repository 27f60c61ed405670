"""Spec -> SkyPilot plan: the fixed names SkyPilot's config refers to and what the mesh admits from its VMs.

SkyPilot finds the mesh's resources **by name**: the instance profile (``aws.remote_identity``), the security
group (``aws.security_group_name``, looked up in the VPC it launches into) and the VPCs (``aws.vpc_names``, by
their ``Name`` tag). So these names are decided here, from the stack's name, and the plan's contract
(:mod:`lmrun.verify.skypilot`) proves each one exists among the resources with exactly that name.

SkyPilot's VMs run in **private subnets** (``aws.use_internal_ips``: no public address, egress through a NAT
gateway) in the regions :func:`private_regions` lists; their CIDRs come from the region's reserved slot
(:func:`lmrun.aws.network.cidr_blocks.private_subnet_cidr`), so adding them never moves a public subnet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lmrun.aws.network.cidr_blocks import private_subnet_cidr
from lmrun.domain.addresses import TUNNEL_POOL
from lmrun.domain.secrets import SecretPaths
from lmrun.domain.skypilot import SKYSERVE_CONTROLLER_ROLE, skypilot_role_reads
from lmrun.plan.elastic import ElasticServicePlan, plan_elastic
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model import MeshSpec

if TYPE_CHECKING:
    from lmrun.plan.mesh import MeshPlan

IAM_ROLE_NAME_MAX = 64
"""IAM role names: at most 64 characters of ``[\\w+=,.@-]`` (IAM User Guide, "IAM object quotas"); the
instance profile (128) and the security group (255) share the role's name."""
BUCKET_NAME_MAX = 63
_NAME_CHARACTERS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ServeControllerPlan:
    """SkyServe's controller VM: an identity of its own (it launches and terminates the replicas), found by name."""

    name: str
    """The IAM role and instance profile: ``lmrun-<stack>-skyserve`` (``aws.remote_identity`` for
    ``sky-serve-controller-*``)."""
    reads: tuple[str, ...]
    """SSM parameters it may read: the joining credential only (it joins K3s to reach the GPU pool's pods)."""


@dataclass(frozen=True)
class SkyPilotPlan:
    """What the stack creates for SkyPilot, by the names SkyPilot's config uses."""

    name: str
    """The IAM role, its instance profile and the security group in every mesh VPC: ``lmrun-<stack>-skypilot``."""
    bucket: str
    """The checkpoint bucket (an explicit name: the tasks and the config refer to it)."""
    checkpoint_retention_days: int
    use_ssm: bool
    """SkyPilot reaches its VMs through Session Manager: no SSH ingress, the role gets Session Manager."""
    ssh_cidrs: tuple[str, ...]
    """Where SSH (22) is admitted from: lmrun:operatorCidrs when ``use_ssm`` is false, else nothing."""
    ingress: dict[str, dict[str, str]]
    """Region -> {what ("region NAME", "site NAME", "tunnels"): range} its SkyPilot group admits (all traffic,
    like the mesh's own groups): the main region admits every region, site and the tunnel range; a spoke admits
    itself and the main region (peering is hub-and-spoke only)."""
    reads: tuple[str, ...]
    """SSM parameters the role may read (:func:`lmrun.domain.skypilot.skypilot_role_reads`)."""
    elastic: tuple[ElasticServicePlan, ...] = ()
    """The elastic services SkyServe runs (``lmrun:elasticServices``), in name order."""
    private_regions: tuple[str, ...] = ()
    """Regions whose VPC gets private subnets and a NAT gateway (:func:`private_regions`): the main region (the serve
    controller) first, then every elastic service's spot regions, each once; empty without elastic services."""
    private_subnets: dict[str, dict[str, str]] = field(default_factory=dict)
    """Region -> AZ id -> the private subnet's CIDR, for every region of ``private_regions``."""
    controller: ServeControllerPlan | None = None
    """SkyServe's controller identity, when the stack has elastic services."""


def private_regions(main: str, spot_regions: Iterable[str]) -> tuple[str, ...]:
    """Where SkyPilot's private VMs run: the main region (the SkyServe controller) first, then each spot region
    in the order given (an elastic service's placement order), each once."""
    return tuple(dict.fromkeys((main, *spot_regions)))


def _stack_slug(mesh: str) -> str:
    return _NAME_CHARACTERS.sub("-", mesh.lower()).strip("-") or "mesh"


def plan_skypilot(spec: MeshSpec, plan: MeshPlan) -> tuple[SkyPilotPlan | None, list[ConfigIssue]]:
    """The SkyPilot plan when ``lmrun:skypilot.enabled`` (with SkyServe's controller identity when the stack has
    elastic services); issues when a derived name breaks a limit."""
    sky = spec.skypilot
    if not sky.enabled:
        return None, []
    issues: list[ConfigIssue] = []
    name = f"lmrun-{_stack_slug(plan.mesh)}-skypilot"
    if len(name) > IAM_ROLE_NAME_MAX:
        issues.append(
            ConfigIssue(
                config_path(("skypilot",)),
                f"the role name {name!r} derived from the stack name is longer than IAM's {IAM_ROLE_NAME_MAX} "
                "characters; use a shorter stack name",
            )
        )
    # As long as the VMs' role name, so within IAM's limit whenever that one is.
    controller_name = f"lmrun-{_stack_slug(plan.mesh)}-skyserve"
    bucket = sky.bucket or name
    if len(bucket) > BUCKET_NAME_MAX:
        issues.append(
            ConfigIssue(
                config_path(("skypilot", "bucket")),
                f"the default bucket name {bucket!r} is longer than S3's {BUCKET_NAME_MAX} characters; set one",
            )
        )
    sites = {f"site {name}": site.cidr for name, site in sorted(plan.wireguard.sites.items())}
    main_ingress = {
        f"region {plan.main.name}": plan.main.cidr,
        **{f"region {spoke.name}": spoke.cidr for spoke in plan.spokes},
        **sites,
        **({"tunnels": str(TUNNEL_POOL)} if sites else {}),
    }
    ingress = {
        plan.main.name: main_ingress,
        **{s.name: {f"region {s.name}": s.cidr, f"region {plan.main.name}": plan.main.cidr} for s in plan.spokes},
    }
    elastic = plan_elastic(spec)
    # Only elastic services need private VMs (SkyServe's load balancer reaches replicas at private addresses).
    private = private_regions(plan.main.name, (r for svc in elastic for r in svc.spot_regions)) if elastic else ()
    regions = plan.regions
    outside = [region for region in private if region not in regions]
    if outside:
        issues.append(
            ConfigIssue(
                config_path(("skypilot",)),
                f"SkyPilot's private subnets need a mesh VPC in {', '.join(outside)}; add them to lmrun:regions",
            )
        )
    private_subnets = {
        region: {s.az_id: str(private_subnet_cidr(region, s.az_id)) for s in regions[region].subnets}
        for region in private
        if region in regions
    }
    result = SkyPilotPlan(
        name=name,
        bucket=bucket,
        checkpoint_retention_days=sky.checkpoint_retention_days,
        use_ssm=sky.use_ssm,
        ssh_cidrs=() if sky.use_ssm else tuple(str(cidr) for cidr in spec.operator_cidrs),
        ingress=ingress,
        reads=skypilot_role_reads(SecretPaths.for_mesh(plan.mesh), phoenix=plan.cluster.phoenix is not None),
        elastic=elastic,
        private_regions=tuple(region for region in private if region in regions),
        private_subnets=private_subnets,
        controller=ServeControllerPlan(
            name=controller_name,
            reads=skypilot_role_reads(SecretPaths.for_mesh(plan.mesh), phoenix=False, role=SKYSERVE_CONTROLLER_ROLE),
        )
        if elastic
        else None,
    )
    return result, issues
