"""K3sServer: the control plane in the main region, built to survive instance replacement.

- A fixed private IP (agents and kubeconfigs keep pointing at it) — hence ``delete_before_replace``: AWS
  cannot give the new instance the address while the old one holds it.
- Cluster state on its own encrypted EBS volume, protected and retained, attached at a stable device:
  changing the AMI or instance type replaces the instance, never the volume.
- Two generated tokens, each an SSM SecureString the instance reads by name with its role: the *server token*
  (``--token-file``; K3s: "Anyone with access to the server token essentially has full administrator access to
  the cluster", and it encrypts the cluster's bootstrap data on the state volume), read by the server alone, and
  the *agent token* (``--agent-token-file``), which joins agents but never servers: the only token any other VM
  (GPU nodes, Phoenix, a site's nodes through its own store) ever holds.
- Pulumi's credential comes back the same way, so nothing needs SSH, and it never expires silently: the server
  publishes the token of the ``lmrun-deployer`` ServiceAccount (no expiry, allowed only the
  Services and DaemonSets of the mesh's namespace; the admin kubeconfig never leaves the server) to one
  parameter, and a kubeconfig whose exec plugin reads that parameter on every use to another; a readiness
  gate on the operator's machine waits for the kubeconfig. Pulumi's state thus holds no token at all.
- The API (6443) is open to the mesh through the mesh security group, and to ``operator_cidrs`` only
  through a security group of its own (none by default: closed to the internet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_random as random

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.components.instance_role import InstanceRole
from lmrun.components.instances import attach_volume, mesh_instance, stateful_volume
from lmrun.components.naming import slug, with_name
from lmrun.domain.secrets import SecretPaths
from lmrun.render.cloudinit import WriteFile
from lmrun.render.gpu_pool import SkyPilotAccess, skypilot_server_files, skypilot_server_runcmd
from lmrun.render.k3s import API_PORT, K3sServerConfig, render_server_user_data
from lmrun.render.readiness import PARAMETER_PLACEHOLDER, kubeconfig_gate_script

STATE_DEVICE = "/dev/sdf"


class ServerAddon(TypedDict):
    """More for the server to run after K3s (e.g. Phoenix with ``placement: server``) and the access it needs."""

    files: pulumi.Input[Sequence[WriteFile]]
    """Files to write (rendered; may wait on outputs such as a bucket name)."""
    runcmd: Sequence[Sequence[str]]
    """Commands to run after the server bootstrap."""
    reads: Sequence[pulumi.Input[str]]
    """More SSM parameter ARNs the server reads."""
    writes: Sequence[pulumi.Input[str]]
    """More SSM parameter ARNs the server publishes."""
    statements: Sequence[pulumi.Input[Mapping[str, Any]]]
    """More IAM statements."""


class K3sServerArgs(TypedDict):
    """Inputs of :class:`K3sServer`. The main region's AWS provider comes in ``opts.provider``."""

    region: str
    """Main region (where the SSM parameters live too)."""
    private_ip: str
    """Fixed private IP inside ``subnet_id``."""
    instance_type: str
    """Server instance type (2 vCPU / 4 GiB serves ~350 agents)."""
    k3s_version: str
    """Pinned K3s release."""
    ami_id: pulumi.Input[str]
    """Image with the AWS CLI and SSM agent (Amazon Linux 2023)."""
    subnet_id: pulumi.Input[str]
    """Subnet holding ``private_ip``."""
    availability_zone: pulumi.Input[str]
    """AZ name of ``subnet_id``: the state volume must live in the same AZ."""
    vpc_id: pulumi.Input[str]
    """VPC of the subnet (for the operator API security group)."""
    security_group_ids: Sequence[pulumi.Input[str]]
    """Mesh security groups of the main VPC."""
    operator_cidrs: Sequence[str]
    """CIDRs allowed to reach 6443 from outside the mesh; empty = closed."""
    parameter_prefix: str
    """SSM path prefix of the mesh, e.g. ``/lmrun/dev``."""
    state_volume_gb: int
    """Size of the state volume."""
    tags: Mapping[str, str]
    """Tags for every taggable resource."""
    addon: NotRequired[ServerAddon]
    """Optional extra workload on the server."""
    read_names: NotRequired[Sequence[str]]
    """More SSM parameter names (or ``<path>/*`` patterns) the server reads that the stack does not create (an
    elastic service's bound load balancer, written by ``lmrun sky bind``): granted by ARN in the main region's
    account, which the server token parameter's ARN gives (the program makes no lookup)."""
    skypilot_context: NotRequired[str | None]
    """With ``lmrun:skypilot``: the context name (``lmrun-<stack>``) of the kubeconfig the server publishes for
    SkyPilot's scoped ServiceAccount, beside the GPU pool's objects it applies (:mod:`lmrun.render.gpu_pool`)."""


class K3sServer(pulumi.ComponentResource):
    """The K3s server instance, its state volume, server and agent tokens, kubeconfig gate and identity."""

    private_ip: pulumi.Output[str]
    agent_token: pulumi.Output[str]
    """The agent token (a secret), for stores other than SSM (a site's Secret Manager)."""
    agent_token_parameter_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    state_volume_id: pulumi.Output[str]

    def __init__(self, name: str, *, args: K3sServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the server from ``args`` (:class:`K3sServerArgs`); ``opts`` carries the main region's AWS
        provider and the random and command providers."""
        super().__init__("lmrun:index:K3sServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args["tags"]
        paths = SecretPaths(args["parameter_prefix"])

        def token(
            role: str, parameter_name: str, description: str, *, was: str | None = None
        ) -> tuple[random.RandomPassword, aws.ssm.Parameter]:
            """A generated token and the SecureString parameter holding it (``was``: the token's earlier name)."""
            aliases = [pulumi.Alias(name=was)] if was else None
            value = random.RandomPassword(
                f"{name}-{role}",
                length=64,
                special=False,
                opts=pulumi.ResourceOptions(parent=self, aliases=aliases),
            )
            parameter = aws.ssm.Parameter(
                f"{name}-{role}-parameter",
                name=parameter_name,
                type="SecureString",
                value=value.result,
                description=description,
                tags=with_name(tags, f"{name}-{role}"),
                opts=child,
            )
            return value, parameter

        # The server token keeps the logical name of the one join token earlier releases had: its value is the
        # passphrase of the cluster's bootstrap data on the state volume, so it must never change (K3s docs, "k3s
        # token": the server token "cannot be changed" once the cluster exists, short of `k3s token rotate`).
        _, server_token_parameter = token(
            "server-token",
            paths.k3s_server_token,
            "K3s server token (cluster admin; read by the K3s server only)",
            was=f"{name}-token",
        )
        agent_token, agent_token_parameter = token(
            "agent-token",
            paths.k3s_agent_token,
            "K3s agent token (joins agents, never servers; read by the server and the mesh's agents)",
        )

        def published(role: str, parameter_name: str, description: str) -> aws.ssm.Parameter:
            """A parameter the server writes: Pulumi only creates (and deletes) it, with a placeholder."""
            return aws.ssm.Parameter(
                f"{name}-{role}-parameter",
                name=parameter_name,
                type="SecureString",
                tier="Intelligent-Tiering",
                value=PARAMETER_PLACEHOLDER,
                description=description,
                tags=with_name(tags, f"{name}-{role}"),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]),
            )

        kubeconfig_parameter = published(
            "kubeconfig",
            paths.kubeconfig,
            "Pulumi's kubeconfig (the API's address and CA, an exec plugin reading the deployer credential), "
            "published by the K3s server",
        )
        credential_parameter = published(
            "deployer-credential",
            paths.k3s_deployer_credential,
            "Token of the lmrun-deployer ServiceAccount (Services and DaemonSets of namespace lmrun) as an "
            "ExecCredential, published by the K3s server",
        )
        addon = args.get("addon")
        ours = [kubeconfig_parameter.arn, credential_parameter.arn]

        def in_main_account(path: str) -> pulumi.Output[str]:
            return server_token_parameter.arn.apply(lambda arn: f"{arn.partition(':parameter/')[0]}:parameter{path}")

        outside = [in_main_account(path) for path in args.get("read_names", ())]
        skypilot_context = args.get("skypilot_context")
        if skypilot_context:
            ours.append(
                published(
                    "skypilot-kubeconfig",
                    paths.k3s_skypilot_kubeconfig,
                    "Kubeconfig of the lmrun-skypilot ServiceAccount (namespace skypilot), published by the K3s "
                    "server for SkyPilot's API server",
                ).arn
            )
        identity = InstanceRole(
            f"{name}-identity",
            args={
                # The server reads what it publishes to write a new version only when the value changed.
                "reads": [
                    server_token_parameter.arn,
                    agent_token_parameter.arn,
                    *ours,
                    *outside,
                    *(addon["reads"] if addon else []),
                ],
                "writes": [*ours, *(addon["writes"] if addon else [])],
                "statements": list(addon["statements"]) if addon else [],
                "tags": tags,
            },
            opts=child,
        )

        security_group_ids = list(args["security_group_ids"])
        public_ip: pulumi.Output[str] | None = None
        if args["operator_cidrs"]:
            api_group = aws.ec2.SecurityGroup(
                f"{name}-api",
                vpc_id=args["vpc_id"],
                description="K3s API (6443/tcp) for operator networks",
                tags=with_name(tags, f"{name}-api"),
                opts=child,
            )
            for cidr in sorted(args["operator_cidrs"]):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-api-from-{slug(cidr)}",
                    security_group_id=api_group.id,
                    ip_protocol="tcp",
                    from_port=API_PORT,
                    to_port=API_PORT,
                    cidr_ipv4=cidr,
                    description="K3s API for operators",
                    tags=with_name(tags, f"{name}-api-from-{cidr}"),
                    opts=child,
                )
            security_group_ids.append(api_group.id)
            address = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags=with_name(tags, f"{name}-eip"), opts=child)
            public_ip = address.public_ip

        state = stateful_volume(
            f"{name}-state",
            availability_zone=args["availability_zone"],
            size_gb=args["state_volume_gb"],
            tags=tags,
            parent=self,
        )

        def user_data(values: list[Any]) -> str:
            volume_id, tls_san, extra_files = values
            config = K3sServerConfig(
                node_ip=args["private_ip"],
                ssm_region=args["region"],
                server_token_parameter=paths.k3s_server_token,
                agent_token_parameter=paths.k3s_agent_token,
                kubeconfig_parameter=paths.kubeconfig,
                credential_parameter=paths.k3s_deployer_credential,
                credential_exec=tuple(
                    SsmParameterStore(args["region"]).client_read_argv(paths.k3s_deployer_credential)
                ),
                state_device_name=STATE_DEVICE,
                state_volume_id=volume_id,
                tls_sans=(tls_san,) if tls_san else (),
                k3s_version=args["k3s_version"],
            )
            runcmd = list(addon["runcmd"]) if addon else []
            if skypilot_context:
                access = SkyPilotAccess(skypilot_context, paths.k3s_skypilot_kubeconfig)
                extra_files = [
                    *extra_files,
                    *skypilot_server_files(access, node_ip=args["private_ip"], region=args["region"]),
                ]
                runcmd += skypilot_server_runcmd()
            return render_server_user_data(config, extra_files, runcmd)

        instance = mesh_instance(
            f"{name}-instance",
            ami=args["ami_id"],
            instance_type=args["instance_type"],
            subnet_id=args["subnet_id"],
            private_ip=args["private_ip"],
            security_group_ids=security_group_ids,
            instance_profile=identity.instance_profile_name,
            user_data=pulumi.Output.all(state.id, public_ip, addon["files"] if addon else []).apply(user_data),
            root_gb=30,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server_token_parameter, agent_token_parameter]),
        )
        attach_volume(f"{name}-state-attachment", device=STATE_DEVICE, volume=state, instance=instance, parent=self)
        if public_ip is not None:
            aws.ec2.EipAssociation(
                f"{name}-eip-association", allocation_id=address.id, instance_id=instance.id, opts=child
            )

        server_url = None if public_ip is None else public_ip.apply(lambda ip: f"https://{ip}:{API_PORT}")
        gate = command.local.Command(
            f"{name}-kubeconfig-gate",
            create=pulumi.Output.from_input(server_url).apply(
                lambda url: kubeconfig_gate_script(region=args["region"], parameter=paths.kubeconfig, server_url=url)
            ),
            interpreter=["/bin/sh", "-c"],
            logging=command.local.Logging.NONE,
            # A new server instance may publish a new address; the token is not in the kubeconfig (its exec
            # plugin reads the credential parameter on every use), so a rotated token needs no new read.
            triggers=[instance.id],
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["stdout"],
                depends_on=[kubeconfig_parameter, credential_parameter],
            ),
        )

        self.private_ip = pulumi.Output.from_input(args["private_ip"])
        self.agent_token = pulumi.Output.secret(agent_token.result)
        self.agent_token_parameter_arn = agent_token_parameter.arn
        self.kubeconfig = pulumi.Output.secret(gate.stdout)
        self.api_endpoint = (
            server_url
            if server_url is not None
            else pulumi.Output.from_input(f"https://{args['private_ip']}:{API_PORT}")
        )
        self.state_volume_id = state.id
        self.register_outputs(
            {
                "private_ip": self.private_ip,
                "agent_token": self.agent_token,
                "agent_token_parameter_arn": self.agent_token_parameter_arn,
                "kubeconfig": self.kubeconfig,
                "api_endpoint": self.api_endpoint,
                "state_volume_id": self.state_volume_id,
            }
        )
