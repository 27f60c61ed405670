"""The lmrun-mesh Pulumi program: stack config -> spec -> plan -> Mesh component -> exports."""

import os

import pulumi

from lmrun.components import Mesh
from lmrun.plan.exports import plan_exports
from lmrun.plan.validate import checked_plan
from lmrun.spec import current_pulumi_config, current_secret_keys
from lmrun.spec.operator import k3s_api_server

# Every problem of the config at once (spec and plan), each with its config path.
spec, plan = checked_plan(current_pulumi_config(), current_secret_keys(), mesh=pulumi.get_stack())
token = spec.hugging_face_token
mesh = Mesh(
    "mesh",
    args={
        "plan": plan,
        "hugging_face_token": pulumi.Output.secret(token.get_secret_value()) if token else None,
        # How this machine reaches the K3s API (LMRUN_K3S_API_SERVER, e.g. an SSM port forward); None: as published.
        "k3s_api_server": k3s_api_server(os.environ),
    },
)

for name, value in plan_exports(plan).items():
    pulumi.export(name, value)
pulumi.export("vpcIds", mesh.vpc_ids)
pulumi.export("peeringConnectionIds", mesh.peering_connection_ids)
pulumi.export("k3sApiEndpoint", mesh.api_endpoint)
pulumi.export("kubeconfig", mesh.kubeconfig)
pulumi.export("phoenix", mesh.cluster.phoenix)
pulumi.export("joinBundles", mesh.join_bundles)
pulumi.export("skypilot", mesh.skypilot)
