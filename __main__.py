"""The lmrun-mesh Pulumi program: stack config -> spec -> plan -> Mesh component -> exports."""

import pulumi

from lmrun.components import Mesh
from lmrun.plan import plan_mesh
from lmrun.spec import current_pulumi_config, current_secret_keys, spec_from_config

spec = spec_from_config(current_pulumi_config(), current_secret_keys())
plan = plan_mesh(spec, mesh=pulumi.get_stack())
mesh = Mesh("mesh", args={"plan": plan})

pulumi.export("mainRegion", plan.main.name)
pulumi.export("regions", {name: {"cidr": r.cidr, "role": r.role} for name, r in plan.regions.items()})
pulumi.export("vpcIds", mesh.vpc_ids)
pulumi.export("peeringConnectionIds", mesh.peering_connection_ids)
