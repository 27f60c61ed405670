"""Config checks of GCP: a GCP site names its project and region; a GCP node lives in a GCP site and its
GPUs map to a GCP machine."""

from __future__ import annotations

from lmrun.domain.names import IMAGE_GATEWAY, IMAGE_GPU
from lmrun.gcp import NAME, catalog
from lmrun.spec.cloud_rules import CloudRules, ConfigLocation, NodeContext
from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.nodes import NodeSpec
from lmrun.spec.sites import SiteSpec


class GcpRules:
    label = "GCP"
    site_fields: tuple[str, ...] = ("project", "region", "zone", "images")

    def node_issues(self, node: NodeSpec, where: ConfigLocation, context: NodeContext) -> list[ConfigIssue]:
        if node.region is not None:
            return [
                ConfigIssue(config_path((*where, "region")), "GCP nodes take their region from their site; remove it")
            ]
        if node.site is None:
            return [ConfigIssue(config_path((*where, "site")), f"is required for a GCP node (a site of kind {NAME})")]
        site = context.sites.get(node.site)
        if site is not None and site.kind != NAME:
            return [
                ConfigIssue(
                    config_path((*where, "site")),
                    f"{node.site!r} is an {site.kind} site: lmrun places GCP nodes in GCP sites only "
                    "(join external machines with `lmrun join-bundle`)",
                )
            ]
        if site is None:
            gcp_sites = sorted(name for name, other in context.sites.items() if other.kind == NAME)
            known = f"; GCP sites: {', '.join(gcp_sites)}" if gcp_sites else "; lmrun:sites declares none"
            return [ConfigIssue(config_path((*where, "site")), f"no GCP site named {node.site!r}{known}")]
        try:
            catalog.machines_for(node.gpu, node.gpu_count)
        except ValueError as exc:
            return [ConfigIssue(config_path((*where, "gpu")), str(exc))]
        return []

    def site_issues(self, site: SiteSpec, where: ConfigLocation) -> list[ConfigIssue]:
        issues = [
            ConfigIssue(config_path((*where, field)), "is required for a GCP site")
            for field in ("project", "region")
            if getattr(site, field) is None
        ]
        for role in (IMAGE_GATEWAY, IMAGE_GPU):
            value = getattr(site.images, role) if site.images is not None else None
            problem = catalog.image_issue(value) if value is not None else None
            if problem is not None:
                issues.append(
                    ConfigIssue(
                        config_path((*where, "images", role)),
                        f"{problem}; the current one: {catalog.IMAGE_FAMILIES[role].describe_command()}",
                    )
                )
        return issues

    def pin_hint(self, role: str, stack: str) -> str:
        return (
            f"pin it by hand (`lmrun images sync` cannot read GCP): {catalog.IMAGE_FAMILIES[role].describe_command()}"
        )


RULES: CloudRules = GcpRules()
