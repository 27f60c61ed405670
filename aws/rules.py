"""Config checks of AWS, the hub cloud: a node lives in one of the mesh's AWS regions, and its GPUs must be
offered there (per the offerings the stack records, else the instance catalog)."""

from __future__ import annotations

from lmrun.aws.images import PUBLIC_IMAGES
from lmrun.aws.instances import catalog
from lmrun.aws.instances.availability import SOURCE_LABELS
from lmrun.spec.cloud_rules import CloudRules, ConfigLocation, NodeContext
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.nodes import NodeSpec
from lmrun.spec.sites import SiteSpec


class AwsRules:
    label = "AWS"
    site_fields: tuple[str, ...] = ()

    def node_issues(self, node: NodeSpec, where: ConfigLocation, context: NodeContext) -> list[ConfigIssue]:
        if node.site is not None:
            return [
                ConfigIssue(
                    config_path((*where, "site")), "AWS nodes live in a region; only site-cloud nodes take a site"
                )
            ]
        if node.region is None:
            return [ConfigIssue(config_path((*where, "region")), "is required for an AWS node")]
        if node.region not in context.mesh_regions:
            return [
                ConfigIssue(
                    config_path((*where, "region")),
                    f"{node.region!r} has no VPC in this mesh; add it to lmrun:regions (or use lmrun:mainRegion)",
                )
            ]
        try:
            candidates = catalog.instance_types_for(node.gpu, node.gpu_count)
        except KeyError:
            return [
                ConfigIssue(
                    config_path((*where, "gpu")),
                    f"unknown GPU {node.gpu!r}; known GPUs: {', '.join(catalog.gpu_names())}",
                )
            ]
        except ValueError as exc:
            return [ConfigIssue(config_path((*where, "gpuCount")), str(exc))]
        offerings = context.offerings
        offered = [t for t in candidates if offerings.offers(t.name, node.region)]
        if offered and node.use_spot and all(t.spot_usd_hour is None for t in offered):
            return [
                ConfigIssue(
                    config_path((*where, "useSpot")),
                    f"{', '.join(t.name for t in offered)} is not sold as spot; set useSpot: false",
                )
            ]
        if not offered:
            sources = {SOURCE_LABELS[offerings.source(t.name, node.region)] for t in candidates}
            offering = offerings.gpu_regions(node.gpu, context.mesh_regions)
            hint = f"; mesh regions offering it: {', '.join(offering)}" if offering else ""
            return [
                ConfigIssue(
                    config_path((*where, "gpu")),
                    f"{node.gpu_count}x {catalog.canonical_gpu(node.gpu)} is not offered in {node.region} "
                    f"per {' and '.join(sorted(sources))}{hint}",
                )
            ]
        return []

    def site_issues(self, site: SiteSpec, where: ConfigLocation) -> list[ConfigIssue]:
        return []  # AWS locations are the mesh's regions, never sites

    def pin_hint(self, role: str, stack: str) -> str:
        return (
            f"run `lmrun images sync --stack {stack}`: it writes the current {PUBLIC_IMAGES[role].description} "
            f"id from {PUBLIC_IMAGES[role].parameter}"
        )


RULES: CloudRules = AwsRules()
