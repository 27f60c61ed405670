"""The lmrun-mesh Pulumi program: stack config -> spec -> plan -> Mesh component -> exports."""

import pulumi

from lmrun.components import Mesh
from lmrun.plan import plan_mesh
from lmrun.spec import current_pulumi_config, current_secret_keys, spec_from_config

spec = spec_from_config(current_pulumi_config(), current_secret_keys())
plan = plan_mesh(spec, mesh=pulumi.get_stack())
token = spec.hugging_face_token
mesh = Mesh(
    "mesh",
    args={"plan": plan, "hugging_face_token": pulumi.Output.secret(token.get_secret_value()) if token else None},
)

pulumi.export("mainRegion", plan.main.name)
pulumi.export("regions", {name: {"cidr": r.cidr, "role": r.role} for name, r in plan.regions.items()})
pulumi.export("nodePorts", plan.cluster.node_ports)
pulumi.export(
    "nodes",
    {
        n.name: {
            "region": n.region,
            "instance_type": n.instance_type,
            "spot": n.spot,
            "hourly_usd": n.hourly_usd,
            "cloud": n.cloud,
            "site": n.site,
        }
        for n in plan.cluster.nodes.values()
    },
)
pulumi.export("vpcIds", mesh.vpc_ids)
pulumi.export("peeringConnectionIds", mesh.peering_connection_ids)
pulumi.export("k3sApiEndpoint", mesh.api_endpoint)
pulumi.export("kubeconfig", mesh.kubeconfig)
pulumi.export("phoenix", mesh.cluster.phoenix)
pulumi.export("sites", mesh.sites.summary if mesh.sites else {})
pulumi.export(
    "reachability",
    [{"from": p.source, "to": p.target, "port": p.port, "ok": p.ok, "reason": p.reason} for p in plan.reachability],
)
pulumi.export("joinBundles", mesh.join_bundles)
