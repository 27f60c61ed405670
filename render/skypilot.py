"""What a SkyPilot user needs to launch into the mesh, rendered from the stack's ``skypilot`` output.

- ``config.yaml`` for ``~/.sky/config.yaml``: the mesh VPCs by ``Name`` (``aws.vpc_names``, tried in
  turn per region; a region without one is skipped), the stack's security group and instance profile by name,
  encrypted disks, the mesh's tags, Session Manager (``aws.use_ssm``) unless the stack opens SSH; with elastic
  services the private subnets by ``Name`` with internal addresses (``aws.subnet_names``,
  ``aws.use_internal_ips``) and SkyServe's controller (:mod:`lmrun.render.skyserve`: its identity, the Session
  Manager proxy per region, its boot-time join); and the managed
  jobs controller inside the API server (``jobs.controller.consolidation_mode``): SkyPilot reaches every VM
  from where its API server runs, through Session Manager or from ``lmrun:operatorCidrs``; a controller VM would
  reach them from an address no rule admits (public-IP mode: a security-group reference never matches
  traffic sent to a public IP).
- ``lmrun/``: the join script and the mesh's own VM scripts it installs (``ssm-get.sh``, ``k3s-install.sh``,
  ``uv-venv.sh``, ``phoenix-client-env.sh``, ``checkpoint.sh``, the batch job). A VM joins with the **agent**
  credential only; it becomes a replica of a declared service by the label it registers with.
- Service files: ``service-<name>.yaml`` per elastic service (``lmrun:elasticServices``), for ``sky serve up``:
  the vLLM replica, SkyServe's replica policy (the on-demand base on the K3s GPU pool, spot replicas over the
  spot regions in the placement policy's order, the SpotHedge placer), and ``config.yaml`` gains the serve
  controller in the main region, internal addresses and the K3s cluster as Kubernetes infra (``podip``).
- Task templates: ``serve-<service>.yaml`` (a vLLM replica of a declared service), ``client.yaml`` (calls a
  service at ``localhost:<node port>``) and ``job.yaml`` (a managed job checkpointing to the stack's bucket
  every minute and resuming after a preemption, its spans sent to Phoenix's gRPC node port with the ingest key).

Run the templates from the rendered directory (SkyPilot resolves a relative ``file_mounts`` source from the
current directory).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from lmrun.clouds import HUB_CLOUD
from lmrun.domain.names import LABEL_NODE, LABEL_REGION, SERVES_LABEL_PREFIX
from lmrun.domain.ports import K3S_API_PORT
from lmrun.domain.skypilot import CHECKPOINT_PREFIX, LABEL_LAUNCHER, SKY_NODE_PREFIX, SKYPILOT_ROLE

# cloud-init's dumper: multi-line strings (setup, run) as literal blocks, the way task files are written.
from lmrun.plan.elastic import CONTROLLER_CPUS, ElasticServicePlan
from lmrun.render.cloudinit import SCRIPT_DIR
from lmrun.render.cloudinit import _Dumper as LiteralDumper
from lmrun.render.gpu_pool import SKYPILOT_POD_ACCOUNT
from lmrun.render.k3s import AGENT_TOKEN_FILE, K3S_INSTALL_SCRIPT, SSM_GET_SCRIPT
from lmrun.render.phoenix import CLIENT_ENV_FILE, otlp_endpoint
from lmrun.render.runtime import UV_VENV_SCRIPT
from lmrun.render.script_files import render_script, script_text
from lmrun.render.skyserve import (
    ControllerJoin,
    post_provision_runcmd,
    private_access,
    remote_identity,
)
from lmrun.render.vllm import VllmConfig, serve_args

RENDERED_NOTE = "Rendered by `lmrun sky render`; render again when the stack changes."
KUBERNETES_CLOUD = "kubernetes"
"""SkyPilot's name of the Kubernetes cloud in ``allowed_clouds`` and the config's section."""
KUBERNETES_INFRA = "k8s"
"""The ``infra`` prefix of a Kubernetes context (``k8s/<context>``)."""
SPOT_PLACER = "dynamic_fallback"
"""SkyServe's SpotHedge placer (``sky/serve/spot_placer.py`` ``SPOT_HEDGE_PLACER``)."""
LOAD_BALANCING_POLICY = "least_load"
BUNDLE = "lmrun"
"""The folder of the rendered directory the tasks mount at ``~/lmrun``."""
CHECKPOINT_EVERY_SECONDS = 60
"""How often a managed job syncs its checkpoint folder to the bucket."""
VLLM_VENV = "/opt/lmrun/vllm"
JOB_VENV = "/opt/lmrun/job"
JOB_REQUIREMENTS = ("opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-grpc==1.45.2")
"""What the batch job's spans need (the versions the tests run against a real exporter)."""


@dataclass(frozen=True)
class SkyService:
    """A declared vLLM service a SkyPilot VM may serve as a replica: the same model, revision and ports."""

    name: str
    node_port: int
    app_port: int
    model: str
    revision: str
    gpu: str
    gpu_count: int
    disk_size_gb: int
    vllm_args: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SkyElasticService(SkyService):
    """An elastic service (:class:`lmrun.plan.elastic.ElasticServicePlan`) as its service file needs it."""

    min_replicas: int
    max_replicas: int
    target_qps_per_replica: float | None
    base_on_demand: int
    dynamic_ondemand_fallback: bool
    readiness_initial_delay_seconds: int
    spot_regions: tuple[str, ...]
    """AWS regions of the spot replicas, in the placement policy's order."""


def sky_elastic(service: ElasticServicePlan) -> SkyElasticService:
    """What the service file of a planned elastic service is made of."""
    return SkyElasticService(
        name=service.name,
        node_port=service.node_port,
        app_port=service.app_port,
        model=service.model,
        revision=service.revision,
        gpu=service.gpu,
        gpu_count=service.gpu_count,
        disk_size_gb=service.disk_size_gb,
        vllm_args=service.vllm_args,
        min_replicas=service.min_replicas,
        max_replicas=service.max_replicas,
        target_qps_per_replica=service.target_qps_per_replica,
        base_on_demand=service.base_on_demand,
        dynamic_ondemand_fallback=service.dynamic_ondemand_fallback,
        readiness_initial_delay_seconds=service.readiness_initial_delay_seconds,
        spot_regions=service.spot_regions,
    )


K3S_CONTEXT = "lmrun-{stack}"
"""The kubeconfig context of the mesh's K3s cluster as SkyPilot Kubernetes infra (the GPU pool publishes a
kubeconfig with it); :func:`k3s_context` fills in the stack."""


def k3s_context(stack: str) -> str:
    return K3S_CONTEXT.format(stack=stack)


@dataclass(frozen=True)
class SkyPilotMesh:
    """The stack's ``skypilot`` output: every fact the config, the join script and the tasks are made of."""

    stack: str
    main_region: str
    vpc_names: dict[str, str]
    """Region -> the ``Name`` tag of the mesh VPC there (main region first)."""
    name: str
    """The instance profile, its role and the security group in every mesh VPC."""
    bucket: str
    use_ssm: bool
    server_ip: str
    k3s_version: str
    token_parameter: str
    ingest_key_parameter: str | None
    phoenix_grpc_node_port: int | None
    services: tuple[SkyService, ...]
    node_ports: dict[str, int]
    """Every declared service's node port (the client calls any of them)."""
    tags: dict[str, str] = field(default_factory=dict)
    checkpoint_prefix: str = CHECKPOINT_PREFIX
    elastic: tuple[SkyElasticService, ...] = ()
    """The elastic services SkyServe runs (``service-<name>.yaml``)."""
    controller_profile: str | None = None
    """SkyServe's controller's instance profile, when the stack has elastic services (its VMs are then private)."""
    private_regions: tuple[str, ...] = ()
    """Where SkyPilot's VMs run with private addresses (main region first), with elastic services."""
    private_subnet_names: list[str] = field(default_factory=list)
    """``Name`` tags of the private subnets (every region of the plan's ``private_regions``): SkyPilot launches
    only there, on internal addresses, its egress through each region's NAT gateway."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SkyPilotMesh:
        data = dict(value)
        data["private_regions"] = tuple(data.get("private_regions") or ())
        data["services"] = tuple(
            SkyService(**{**s, "vllm_args": tuple(s.get("vllm_args") or ())}) for s in data.get("services") or ()
        )
        data["elastic"] = tuple(
            SkyElasticService(
                **{**e, "vllm_args": tuple(e.get("vllm_args") or ()), "spot_regions": tuple(e["spot_regions"])}
            )
            for e in data.get("elastic") or ()
        )
        return cls(**data)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)


def sky_config(mesh: SkyPilotMesh) -> dict[str, Any]:
    """``~/.sky/config.yaml`` (validated by SkyPilot's own schema in the tests)."""
    aws: dict[str, Any] = {
        "vpc_names": list(mesh.vpc_names.values()),
        "security_group_name": mesh.name,
        "remote_identity": mesh.name,
        "disk_encrypted": True,
        "labels": dict(mesh.tags),
    }
    if mesh.private_subnet_names:
        # With elastic services: SkyServe's load balancer proxies to each replica at the address SkyPilot reports,
        # which must be the private one, inside the mesh. Named private subnets need internal addresses (SkyPilot
        # refuses them otherwise); the API server then reaches VMs through the Session Manager proxy per region,
        # or over SSH from inside the mesh (use_ssm said false: SkyPilot would fall back to Session Manager).
        aws["subnet_names"] = list(mesh.private_subnet_names)
        aws.update(
            private_access(mesh.private_regions) if mesh.use_ssm else {"use_internal_ips": True, "use_ssm": False}
        )
    elif mesh.use_ssm:
        aws["use_ssm"] = True
    config: dict[str, Any] = {
        "allowed_clouds": [HUB_CLOUD],
        HUB_CLOUD: aws,
        "jobs": {"controller": {"consolidation_mode": True}},
    }
    if mesh.elastic:
        config["allowed_clouds"].append(KUBERNETES_CLOUD)
        # podip: a pool replica's endpoint is its pod IP, which the controller (a K3s agent) reaches over flannel.
        # The pods run as an account bound to nothing, which SkyPilot then leaves as it is (render/gpu_pool.py).
        config[KUBERNETES_CLOUD] = {
            "allowed_contexts": [k3s_context(mesh.stack)],
            "ports": "podip",
            "remote_identity": SKYPILOT_POD_ACCOUNT,
        }
        config["serve"] = {
            "controller": {"resources": {"infra": f"{HUB_CLOUD}/{mesh.main_region}", "cpus": CONTROLLER_CPUS}}
        }
    if mesh.controller_profile is not None:
        aws["remote_identity"] = remote_identity(mesh.controller_profile, mesh.name)
        aws["post_provision_runcmd"] = post_provision_runcmd(
            ControllerJoin(
                controller_profile=mesh.controller_profile,
                main_region=mesh.main_region,
                token_parameter=mesh.token_parameter,
                k3s_version=mesh.k3s_version,
                server_ip=mesh.server_ip,
            )
        )
    return config


@dataclass(frozen=True)
class BundlePaths:
    """Where the join script puts things on the VM (the tests point them into a scratch folder)."""

    script_dir: str = SCRIPT_DIR
    token_file: str = AGENT_TOKEN_FILE
    phoenix_env_file: str = CLIENT_ENV_FILE


def _phoenix_env_argv(mesh: SkyPilotMesh, paths: BundlePaths) -> list[str]:
    if mesh.phoenix_grpc_node_port is None:
        return []
    return [f"{paths.script_dir}/phoenix-client-env.sh", paths.phoenix_env_file, _otlp(mesh)]


def _otlp(mesh: SkyPilotMesh) -> str:
    return otlp_endpoint(mesh.phoenix_grpc_node_port) if mesh.phoenix_grpc_node_port else ""


def bundle(mesh: SkyPilotMesh, paths: BundlePaths = BundlePaths()) -> dict[str, str]:
    """File name -> text of the ``lmrun/`` folder the tasks mount: the join script and what it installs."""
    note = f"{RENDERED_NOTE} Stack: {mesh.stack}."
    join = render_script(
        "skypilot-join.sh",
        {
            "SCRIPT_DIR": paths.script_dir,
            "SSM_REGION": mesh.main_region,
            "TOKEN_PARAMETER": mesh.token_parameter,
            "TOKEN_FILE": paths.token_file,
            "K3S_VERSION": mesh.k3s_version,
            "SERVER_URL": f"https://{mesh.server_ip}:{K3S_API_PORT}",
            "SERVICES": list(mesh.service_names),
            "NODE_PREFIX": SKY_NODE_PREFIX,
            "LABEL_NODE": LABEL_NODE,
            "LABEL_REGION": LABEL_REGION,
            "LAUNCHER_LABEL": f"{LABEL_LAUNCHER}={SKYPILOT_ROLE}",
            "SERVES_PREFIX": SERVES_LABEL_PREFIX,
            "PHOENIX_ENV": _phoenix_env_argv(mesh, paths),
        },
        note=note,
    )
    files = {
        "join.sh": join,
        "ssm-get.sh": SSM_GET_SCRIPT.content,
        "k3s-install.sh": K3S_INSTALL_SCRIPT.content,
        "uv-venv.sh": UV_VENV_SCRIPT.content,
        "checkpoint.sh": render_script(
            "skypilot-checkpoint.sh",
            {
                "BUCKET": mesh.bucket,
                "PREFIX": mesh.checkpoint_prefix,
                "REGION": mesh.main_region,
            },
            note=note,
        ),
        "batch_job.py": script_text("skypilot_batch.py"),
    }
    if mesh.ingest_key_parameter is not None:
        key_file = f"{paths.phoenix_env_file}.key"
        fetch = [f"{paths.script_dir}/ssm-get.sh", mesh.main_region, mesh.ingest_key_parameter, key_file]
        files["phoenix-client-env.sh"] = render_script(
            "phoenix-client-env.sh", {"FETCH_KEY": fetch, "KEY_FILE": key_file}, note=note
        )
    return files


_JOIN = f"sudo -E bash ~/{BUNDLE}/join.sh"
_MOUNTS = {f"~/{BUNDLE}": f"./{BUNDLE}"}


def _tracing_lines(mesh: SkyPilotMesh) -> list[str]:
    """Shell lines exporting the OTLP settings the join script wrote (root-only) into the task's environment."""
    if mesh.phoenix_grpc_node_port is None:
        return []
    return ["set -a", f'eval "$(sudo cat {CLIENT_ENV_FILE})"', "set +a"]


def serve_task(mesh: SkyPilotMesh, service: SkyService) -> dict[str, Any]:
    """A vLLM replica of ``service``: the same model, revision, arguments and ports as the stack's replicas; it
    joins labelled ``serves.lmrun.io/<service>`` and its readiness proxy admits it once ``/v1/models`` answers."""
    vllm = _vllm(mesh, service, traced=True)
    install = f"sudo {SCRIPT_DIR}/uv-venv.sh {VLLM_VENV} vllm=={vllm.vllm_version}"
    serve = shlex.join([f"{VLLM_VENV}/bin/vllm", *serve_args(vllm)])
    return {
        "name": f"{service.name}-replica",
        "resources": {
            "infra": HUB_CLOUD,
            "accelerators": f"{service.gpu}:{service.gpu_count}",
            "use_spot": True,
            "disk_size": service.disk_size_gb,
        },
        "envs": {"SERVICE": service.name, "NODE_PORT": str(service.node_port)},
        "file_mounts": dict(_MOUNTS),
        "setup": "\n".join(["set -euo pipefail", f'{_JOIN} "$SERVICE"', install]) + "\n",
        "run": "\n".join(["set -euo pipefail", *_tracing_lines(mesh), f"exec {serve}"]) + "\n",
    }


def _default_service(mesh: SkyPilotMesh) -> tuple[str, int]:
    if mesh.services:
        return mesh.services[0].name, mesh.services[0].node_port
    name, port = next(iter(sorted(mesh.node_ports.items())), ("", 0))
    return name, port


def client_task(mesh: SkyPilotMesh) -> dict[str, Any]:
    """A CPU VM in the main region (it reaches every location) calling a service at ``localhost:<node port>``."""
    model, port = _default_service(mesh)
    return {
        "name": "mesh-client",
        "resources": {"infra": f"{HUB_CLOUD}/{mesh.main_region}", "cpus": "2+"},
        "envs": {"MODEL": model, "NODE_PORT": str(port)},
        "file_mounts": dict(_MOUNTS),
        "setup": "\n".join(["set -euo pipefail", _JOIN]) + "\n",
        "run": "\n".join(
            [
                "set -euo pipefail",
                'until curl -sf "localhost:$NODE_PORT/v1/models"; do echo "waiting for $MODEL"; sleep 10; done',
                'curl -sf "localhost:$NODE_PORT/v1/completions" -H "Content-Type: application/json" '
                '-d "{\\"model\\": \\"$MODEL\\", \\"prompt\\": \\"The mesh is\\", \\"max_tokens\\": 32}"',
            ]
        )
        + "\n",
    }


def job_run_lines(
    mesh: SkyPilotMesh, script_dir: str = SCRIPT_DIR, python: str = f"{JOB_VENV}/bin/python"
) -> list[str]:
    """The managed job's ``run``: restore the checkpoint folder, sync it every minute while the batch runs
    (resuming after the last step it finds), sync once more at the end."""
    checkpoint = f"{script_dir}/checkpoint.sh"
    return [
        "set -euo pipefail",
        # The same across a managed job's recoveries: the checkpoint's key in the bucket.
        'job="${SKYPILOT_TASK_ID:?}"',
        'dir="$HOME/lmrun-checkpoint"',
        f'{checkpoint} restore "$job" "$dir"',
        f'{checkpoint} every "$CHECKPOINT_EVERY" "$job" "$dir" &',
        "syncer=$!",
        """trap 'kill "$syncer" 2>/dev/null || true' EXIT""",
        *_tracing_lines(mesh),
        f'{python} ~/{BUNDLE}/batch_job.py --dir "$dir" --steps "$STEPS" --port "$NODE_PORT" --model "$MODEL"'
        ' --step-seconds "$STEP_SECONDS"',
        'kill "$syncer" && wait "$syncer" || true',
        f'{checkpoint} sync "$job" "$dir"',
    ]


def job_task(mesh: SkyPilotMesh) -> dict[str, Any]:
    """A managed spot job (``sky jobs launch``) in the main region: a batch of completions against a service,
    one result per step, checkpointed to the stack's bucket every minute and resumed after a preemption."""
    model, port = _default_service(mesh)
    install = f"sudo {SCRIPT_DIR}/uv-venv.sh {JOB_VENV} {' '.join(JOB_REQUIREMENTS)}"
    return {
        "name": "mesh-batch",
        "resources": {"infra": f"{HUB_CLOUD}/{mesh.main_region}", "cpus": "2+", "use_spot": True},
        "envs": {
            "MODEL": model,
            "NODE_PORT": str(port),
            "STEPS": "200",
            "STEP_SECONDS": "0",
            "CHECKPOINT_EVERY": str(CHECKPOINT_EVERY_SECONDS),
            "OTEL_SERVICE_NAME": "mesh-batch",
        },
        "file_mounts": dict(_MOUNTS),
        "setup": "\n".join(["set -euo pipefail", _JOIN, install]) + "\n",
        "run": "\n".join(job_run_lines(mesh)) + "\n",
    }


READINESS_PATH = "/v1/models"
"""What SkyServe probes on a replica: vLLM answers it once the model is loaded."""
_IN_POD = '[ -n "${KUBERNETES_SERVICE_HOST:-}" ]'
"""True in a pod of the K3s pool (Kubernetes sets it in every container), false on a spot VM."""


def service_task(mesh: SkyPilotMesh, service: SkyElasticService) -> dict[str, Any]:
    """``sky serve up`` file of an elastic service: the vLLM replica of :func:`serve_task` (same model, revision,
    arguments), SkyServe's replica policy and ``resources.any_of``: the spot regions in policy order, then the
    K3s pool. SkyServe treats Kubernetes as on-demand: the pool cannot take a spot replica (its nodes carry no
    spot label), so spot replicas go to the AWS regions (SpotHedge spreads them and moves off a preempted one) and
    the ``base_ondemand_fallback_replicas`` (and any dynamic fallback) to the cheapest on-demand entry, the pool
    ($0 to SkyPilot's optimizer), then on-demand VMs in the spot regions."""
    replica = serve_task(mesh, service)
    serve = shlex.join([f"{VLLM_VENV}/bin/vllm", *serve_args(_vllm(mesh, service, traced=True))])
    untraced = shlex.join([f"{VLLM_VENV}/bin/vllm", *serve_args(_vllm(mesh, service, traced=False))])
    install = f"sudo bash ~/{BUNDLE}/uv-venv.sh {VLLM_VENV} vllm=={_vllm(mesh, service, traced=False).vllm_version}"
    on_vm = [*_tracing_lines(mesh), f"exec {serve}"]
    policy: dict[str, Any] = {"min_replicas": service.min_replicas, "max_replicas": service.max_replicas}
    if service.target_qps_per_replica is not None:
        policy["target_qps_per_replica"] = service.target_qps_per_replica
    policy.update(
        {
            "base_ondemand_fallback_replicas": service.base_on_demand,
            "dynamic_ondemand_fallback": service.dynamic_ondemand_fallback,
            "spot_placer": SPOT_PLACER,
        }
    )
    return {
        "name": service.name,
        "service": {
            "readiness_probe": {
                "path": READINESS_PATH,
                "initial_delay_seconds": service.readiness_initial_delay_seconds,
            },
            "replica_policy": policy,
            "ports": service.app_port,
            "load_balancing_policy": LOAD_BALANCING_POLICY,
        },
        "resources": {
            "accelerators": replica["resources"]["accelerators"],
            "use_spot": True,
            "disk_size": service.disk_size_gb,
            "ports": service.app_port,
            "any_of": [
                *({"infra": f"{HUB_CLOUD}/{region}"} for region in service.spot_regions),
                {"infra": f"{KUBERNETES_INFRA}/{k3s_context(mesh.stack)}"},
            ],
        },
        "envs": {"SERVICE": service.name},
        "file_mounts": dict(_MOUNTS),
        # A spot VM joins K3s as an agent (no service label: the load balancer reaches it by address) so it
        # reaches Phoenix's node port; a pool pod is already inside the cluster and installs only vLLM.
        "setup": "\n".join(["set -euo pipefail", f"{_IN_POD} || {_JOIN}", install]) + "\n",
        "run": "\n".join(["set -euo pipefail", f"if {_IN_POD}; then", f"    exec {untraced}", "fi", *on_vm]) + "\n",
    }


def _vllm(mesh: SkyPilotMesh, service: SkyService, *, traced: bool) -> VllmConfig:
    return VllmConfig(
        model=service.model,
        revision=service.revision,
        served_model_name=service.name,
        app_port=service.app_port,
        extra_args=service.vllm_args,
        tensor_parallel_size=service.gpu_count,
        otlp_traces_endpoint=(_otlp(mesh) or None) if traced else None,
    )


def tasks(mesh: SkyPilotMesh) -> dict[str, dict[str, Any]]:
    """File name -> task of every template."""
    out = {f"serve-{service.name}.yaml": serve_task(mesh, service) for service in mesh.services}
    out.update({f"service-{service.name}.yaml": service_task(mesh, service) for service in mesh.elastic})
    out["client.yaml"] = client_task(mesh)
    out["job.yaml"] = job_task(mesh)
    return out


def to_yaml(document: Mapping[str, Any]) -> str:
    return yaml.dump(dict(document), Dumper=LiteralDumper, sort_keys=False, default_flow_style=False, width=120)


def rendered_files(mesh: SkyPilotMesh) -> dict[str, str]:
    """Relative path -> text of everything ``lmrun sky render`` writes."""
    files = {"config.yaml": to_yaml(sky_config(mesh))}
    files.update({name: to_yaml(task) for name, task in tasks(mesh).items()})
    files.update({f"{BUNDLE}/{name}": text for name, text in bundle(mesh).items()})
    return files


def executable(path: str) -> bool:
    """Whether a rendered file is a script (mode 0755)."""
    return path.startswith(f"{BUNDLE}/") and path.endswith((".sh", ".py"))
