"""The plain (known before any resource exists) stack outputs of a plan: what `lmrun plan --json` and
`pulumi stack output` show about regions, node ports, nodes, sites, pinned images and reachability."""

from __future__ import annotations

from typing import Any

from lmrun.domain.ports import WIREGUARD_PORT
from lmrun.domain.secrets import SecretPaths
from lmrun.plan.mesh import MeshPlan


def policy_settings(plan: MeshPlan) -> dict[str, Any]:
    """The values of this stack that policy rules check, by the name of the rule property that holds them: the
    pack takes them as its defaults (lmrun.policy.stack_settings), so no valid config fails a mandatory rule
    (a hub on another UDP port, a raised peering quota)."""
    hub = plan.wireguard.hub
    elastic = plan.skypilot.elastic if plan.skypilot is not None else ()
    return {
        "wireguardPort": hub.port if hub is not None else WIREGUARD_PORT,
        "maxPeerings": plan.max_peerings,
        # The serve controller runs in the main region; each service's spot regions and the offerings record.
        "elasticServices": {
            "controllerRegion": plan.main.name,
            "services": [service.policy_settings() for service in elastic],
        },
    }


def elastic_paths(plan: MeshPlan) -> dict[str, Any]:
    """What the reachability walk checks of each elastic service's node-port path (lmrun.verify.elastic_paths):
    its node port, its bound load balancer's parameter, its app port on the spot replicas and its spot regions (the GPU
    pool's nodes are the ``nodes`` export's entries with a ``pool``)."""
    elastic = plan.skypilot.elastic if plan.skypilot is not None else ()
    paths = SecretPaths.for_mesh(plan.mesh)
    return {
        service.name: {
            "nodePort": service.node_port,
            # Where `lmrun sky bind` records its load balancer (the K3s server reads it; the access table lists it).
            "endpointParameter": paths.serve_endpoint(service.name),
            "appPort": service.app_port,
            "spotRegions": list(service.spot_regions),
        }
        for service in sorted(elastic, key=lambda s: s.name)
    }


def plan_exports(plan: MeshPlan) -> dict[str, Any]:
    """Stack output name -> plain value."""
    phoenix = plan.cluster.phoenix
    return {
        "mainRegion": plan.main.name,
        # What the cost estimate prices the backups' S3 storage from (lmrun.plan.backup); plain, so `lmrun
        # check` on a first preview re-plans it from the config like the other plain exports.
        "phoenixBackup": (
            {
                "backup_interval_minutes": phoenix.backup_interval_minutes,
                "backup_retention_days": phoenix.backup_retention_days,
                "volume_gb": phoenix.volume_gb,
            }
            if phoenix is not None
            else None
        ),
        # The flow logs' settings and the volume the cost estimate assumes (lmrun:flowLogs.monthlyGbPerVm).
        "flowLogs": plan.flow_logs.export() if plan.flow_logs is not None else None,
        "regions": {name: {"cidr": r.cidr, "role": r.role} for name, r in plan.regions.items()},
        "nodePorts": plan.cluster.node_ports,
        "nodes": {
            n.name: {
                "region": n.region,
                "instance_type": n.instance_type,
                "spot": n.spot,
                "hourly_usd": n.hourly_usd,
                "cloud": n.cloud,
                "site": n.site,
                "service": n.service,
                "pool": n.pool,
                "offerings": n.offering_source,
            }
            for n in plan.cluster.nodes.values()
        },
        "sites": {
            s.name: {"cidr": s.cidr, "kind": s.kind, "mtu": s.mtu, "tunnel_address": s.tunnel_address}
            for s in plan.wireguard.sites.values()
        },
        "images": plan.images.export(),
        # Replica groups: each replica's location and why the group's policy put it there.
        "groups": {group.name: group.export() for group in plan.groups},
        # GPU pools (GPUs offered to SkyPilot through Kubernetes): each node's location and why.
        "gpuPool": {pool.name: pool.export() for pool in plan.pools},
        # Elastic services: spot regions in policy order, each replica's price there, $/h at baseline and at
        # maxReplicas (plain, so `pulumi preview` and its PR comment show the worst case).
        "elasticServices": {e.name: e.export() for e in (plan.skypilot.elastic if plan.skypilot else ())},
        "policySettings": policy_settings(plan),
        "elasticPaths": elastic_paths(plan),
        "reachability": [
            {"from": p.source, "to": p.target, "port": p.port, "ok": p.ok, "reason": p.reason}
            for p in plan.reachability
        ],
    }
