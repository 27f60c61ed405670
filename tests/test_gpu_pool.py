"""The GPU pool (``lmrun:gpuPool``): placed like replica groups, its nodes boot the NVIDIA runtime and join K3s with
SkyPilot's GPU label and a GPU taint, the server applies the pool's objects and publishes SkyPilot's scoped
kubeconfig; every object validated by ``kubernetes-validate --strict``, every user data by ``cloud-init schema``
and shellcheck, and SkyPilot's own code reads the label as the declared GPU."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.domain.versions import KUBERNETES_VERSION, NVIDIA_CONTAINER_TOOLKIT_VERSION
from lmrun.render import gpu_pool
from lmrun.render.cloudinit import gzip_base64_user_data, runcmd_argvs, shell_scripts, written_files
from lmrun.render.k3s import K3sAgentConfig, agent_flags
from lmrun.spec.config import parse_spec
from lmrun.spec.errors import ConfigError
from lmrun.verify.checks import run_checks
from lmrun.verify.contracts import ContractError
from lmrun.verify.cost import estimate_cost
from lmrun.verify.kubernetes_objects import kubernetes_objects
from lmrun.verify.resources import Resource, Snapshot
from lmrun.verify.user_data import user_data_text
from tests.conftest import ROOT, plan, stack_config
from tests.validators import assert_cloud_init_valid, assert_kubernetes_valid, assert_shellcheck_clean

POOL_NODE = "l4-pool-use1-0"
POOL_TEMPLATE = f"mesh-cluster-node-{POOL_NODE}-lt"
SERVER = "mesh-cluster-k3s-instance"


def _user_data(name: str) -> str:
    resource = next(r for r in plan("global").snapshot.resources if r.name == name)
    text = user_data_text(resource)
    assert text is not None
    return text


def _agent(**overrides: Any) -> K3sAgentConfig:
    values: dict[str, Any] = {
        "server_ip": "10.64.16.10",
        "store": SsmParameterStore("us-east-1"),
        "token_parameter": "/lmrun/global/k3s/agent-token",
        "node_name": POOL_NODE,
        "region": "us-east-1",
        "gpu": "L4",
    }
    return K3sAgentConfig(**{**values, **overrides})


def _assert_valid_user_data(text: str, tmp_path: Path) -> None:
    """A valid cloud-config (``cloud-init schema``) whose every script is shellcheck-clean (the toolkit installer
    and the K3s agent bootstrap at least)."""
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    assert_cloud_init_valid(path)
    scripts = []
    for name, content in shell_scripts(text).items():
        scripts.append(tmp_path / Path(name).name)
        scripts[-1].write_text(content)
    assert {"nvidia-toolkit-install.sh", "k3s-agent-bootstrap.sh"} <= {script.name for script in scripts}
    assert_shellcheck_clean(scripts)


def _global_raw(**overrides: Any) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"]
    raw = {key.removeprefix("lmrun:"): value for key, value in config.items() if key.startswith("lmrun:")}
    return {**raw, **overrides}


def _errors(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as raised:
        parse_spec(raw)
    return {issue.path: issue.message for issue in raised.value.issues}


# --- spec and plan --------------------------------------------------------------------------------------------


def test_the_global_pool_is_one_on_demand_l4_in_the_main_region_priced_like_a_node() -> None:
    report = plan("global")
    pool = report.outputs["gpuPool"]["l4-pool"]
    assert pool["policy"] == "priority" and pool["node_port"] is None
    assert [(r["name"], r["location"]) for r in pool["replicas"]] == [(POOL_NODE, "us-east-1")]
    node = report.outputs["nodes"][POOL_NODE]
    assert node["pool"] == "l4-pool" and node["spot"] is False and node["service"] == ""
    assert node["instance_type"] == "g6.xlarge" and node["hourly_usd"] > 0
    # No service, no node port: the pool publishes nothing.
    assert POOL_NODE not in json.dumps(report.node_ports) and "l4-pool" not in report.node_ports
    estimate = estimate_cost(report.snapshot.resources, report.outputs)
    assert estimate.gpu_hourly_usd_on_demand >= node["hourly_usd"]


def test_pool_errors_come_all_at_once_naming_their_fields() -> None:
    raw = _global_raw(
        skypilot={"enabled": False},
        gpuPool=[
            {"name": "qwen", "gpu": "L4", "policy": "priority", "replicas": 1, "regions": ["us-east-1"]},
            {"name": "p2", "gpu": "L4", "policy": "specified", "replicas": 2, "counts": {"nowhere": 1}},
            {"name": "p3", "gpu": "B9000", "policy": "spread", "replicas": 1, "regions": ["us-east-1"]},
            {"name": "p4", "gpu": "L4", "policy": "spread", "replicas": 1, "regions": ["lab-onprem"]},
            {"name": "p5", "gpu": "L4", "policy": "priority", "regions": ["us-east-1"], "gpuCount": 0},
        ],
    )
    errors = _errors(raw)
    assert "set lmrun:skypilot.enabled to true" in errors["lmrun:gpuPool"]
    assert "already" in errors["lmrun:gpuPool[0].name"]  # a pool named like a service of lmrun:nodes
    assert "replicas" in errors["lmrun:gpuPool[1].replicas"] and "counts" in errors["lmrun:gpuPool[1].replicas"]
    assert "unknown GPU 'B9000'" in errors["lmrun:gpuPool[2].gpu"]
    assert "not a location a replica can run in" in errors["lmrun:gpuPool[3].regions[0]"]  # an external site
    assert "lmrun:gpuPool[4].gpuCount" in errors


def test_a_pool_draws_on_the_recorded_quota_like_a_group() -> None:
    """The on-demand G and VT quota of us-east-1 recorded at 2 vCPUs cannot hold a g6.xlarge (4 vCPUs): the
    priority pool places nothing and says why, like a replica group."""
    with pytest.raises(ConfigError) as raised:
        plan("global", quotas={"us-east-1": {"L-DB2E81BA": 2}})
    assert "gpuPool[0].replicas" in str(raised.value) and "l4-pool" in str(raised.value)
    assert "short by 1" in str(raised.value)


def test_adding_the_pool_only_adds_resources() -> None:
    """With lmrun:skypilot on, the server applies the pool's objects and publishes SkyPilot's kubeconfig, pool or
    not: declaring a pool adds its node and nothing else changes."""
    # global's elastic service keeps its on-demand base on the pool: without the pool it would not fit, so both
    # sides run it without a base (the pool is what changes).
    [service] = json.loads(stack_config("global").config["lmrun:elasticServices"])
    no_base = [{**service, "baseOnDemand": 0}]
    before = plan("global", gpuPool=[], elasticServices=no_base)
    after = plan("global", elasticServices=no_base)
    old = {r.urn: r for r in before.recording.resources}
    new = {r.urn: r for r in after.recording.resources}
    assert set(old) <= set(new)
    assert [r.name for r in old.values() if r.inputs != new[r.urn].inputs] == []
    added = sorted(new[urn].name for urn in set(new) - set(old))
    assert added and all(name.startswith(f"mesh-cluster-node-{POOL_NODE}") for name in added), added


# --- the pool node --------------------------------------------------------------------------------------------


def test_the_pool_agent_carries_skypilots_label_the_pool_label_the_taint_and_the_nvidia_runtime() -> None:
    flags = agent_flags(gpu_pool.pool_agent(_agent(), pool="l4-pool"))
    pairs = list(itertools.pairwise(flags))
    for pair in (
        ("--node-label", "skypilot.co/accelerator=l4"),
        ("--node-label", "lmrun.io/gpu-pool=l4-pool"),
        ("--node-taint", "nvidia.com/gpu=present:NoSchedule"),
        ("--default-runtime", "nvidia"),
        ("--token-file", "/etc/rancher/k3s/lmrun-agent-token"),
    ):
        assert pair in pairs, pair
    assert not [f for f in flags if f.startswith("serves.lmrun.io/")]
    with pytest.raises(ValueError, match="serves"):
        gpu_pool.pool_agent(_agent(serves=("qwen",)), pool="l4-pool")
    with pytest.raises(ValueError, match="node_taints"):
        _agent(node_taints=("nvidia.com/gpu:NoSchedule",))


def test_the_pool_node_installs_the_pinned_toolkit_before_joining_and_runs_no_vllm(tmp_path: Path) -> None:
    text = _user_data(POOL_TEMPLATE)
    runcmd = runcmd_argvs(text)
    toolkit = ["/usr/local/lib/lmrun/nvidia-toolkit-install.sh"]
    assert runcmd.index(toolkit) < runcmd.index(["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"])
    files = written_files(text)
    assert f"VERSION={NVIDIA_CONTAINER_TOOLKIT_VERSION}" in files[toolkit[0]]
    bootstrap = files["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]
    for needle in ("skypilot.co/accelerator=l4", "lmrun.io/gpu-pool=l4-pool", "--default-runtime nvidia"):
        assert needle in bootstrap, needle
    assert "vllm" not in text.lower() and "huggingface" not in text and "phoenix" not in text
    _assert_valid_user_data(text, tmp_path)


def test_the_pool_node_reads_the_agent_token_alone() -> None:
    table = plan("global").access
    assert not table.disagreements
    [principal] = [p for p in table.principals if p.label == f"gpu-pool:{POOL_NODE}"]
    assert {row.name for row in table.rows if principal.label in row.allowed("read")} == {"k3s/agent-token"}
    assert not [row.name for row in table.rows if principal.label in row.allowed("write")]


# --- the server's objects -------------------------------------------------------------------------------------


def _server_objects() -> list[Any]:
    server = next(r for r in plan("global").snapshot.resources if r.name == SERVER)
    return [o for o in kubernetes_objects(server.type, server.inputs, server.name) if o.boot_file.endswith("pool.json")]


def test_the_pool_objects_pass_kubernetes_validate_strict(tmp_path: Path) -> None:
    objects = _server_objects()
    assert sorted(o.kind for o in objects) == sorted(
        [
            *["Namespace", "NetworkPolicy", "DaemonSet", "RuntimeClass"],
            *["Namespace", "NetworkPolicy", "NetworkPolicy", "ServiceAccount", "ServiceAccount", "Secret"],
            *["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
        ]
    )
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump_all([dict(o.manifest) for o in objects], sort_keys=False))
    result = assert_kubernetes_valid(path, KUBERNETES_VERSION)
    assert result.stdout.count("passed") == len(objects)


def test_the_device_plugin_is_pinned_sized_on_the_pool_only_and_tolerates_its_taint_only() -> None:
    plugin = gpu_pool.device_plugin_manifest()
    pod = plugin["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].startswith("nvcr.io/nvidia/k8s-device-plugin:v0.17.1@sha256:")
    assert container["resources"]["requests"] == container["resources"]["limits"]
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": "lmrun.io/gpu-pool", "operator": "Exists"}]}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu_pool.runtime_class_manifest()["handler"] == "nvidia"


def test_skypilot_gets_its_documented_minimum_and_a_namespace_open_to_the_mesh_only() -> None:
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in gpu_pool.skypilot_access_manifests()}
    role = manifests[("Role", "lmrun-skypilot")]
    assert role["metadata"]["namespace"] == "skypilot"
    assert [(r["resources"], r["verbs"]) for r in role["rules"]] == [
        (["pods", "pods/status", "pods/exec", "pods/portforward"], ["*"]),
        (["services"], ["*"]),
        (["secrets"], ["*"]),
        (["events"], ["get", "list", "watch"]),
    ]
    cluster_role = manifests[("ClusterRole", "lmrun-skypilot")]
    assert {verb for rule in cluster_role["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}
    assert sorted(r for rule in cluster_role["rules"] for r in rule["resources"]) == [
        "nodes",
        "runtimeclasses",
        "storageclasses",
    ]
    policy = manifests[("NetworkPolicy", "mesh-in-internet-out")]["spec"]
    sources = [peer["ipBlock"]["cidr"] for peer in policy["ingress"][0]["from"]]
    assert "0.0.0.0/0" not in sources and "10.42.0.0/16" in sources
    assert policy["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]}]
    assert ("NetworkPolicy", "default-deny") in manifests


def test_skypilots_pods_run_as_an_account_bound_to_nothing_in_a_namespace_that_refuses_privileged_pods() -> None:
    """SkyPilot's default pod account would make it create RBAC objects the minimum role may not; the named one
    keeps it off that path. SkyPilot uploads the operator's kubeconfig to every cluster it launches, so the
    namespace enforces Pod Security's baseline: that token cannot start a pod that reaches its node."""
    from lmrun.render.skypilot import SkyPilotMesh, sky_config

    manifests = gpu_pool.skypilot_access_manifests()
    pods = next(
        m for m in manifests if m["kind"] == "ServiceAccount" and m["metadata"]["name"] == "lmrun-skypilot-pods"
    )
    assert pods["metadata"]["namespace"] == "skypilot" and pods["automountServiceAccountToken"] is False
    bound = [s["name"] for m in manifests if m["kind"].endswith("Binding") for s in m["subjects"]]
    assert bound and "lmrun-skypilot-pods" not in bound
    mesh = SkyPilotMesh.from_json(plan("global").outputs["skypilot"])
    assert sky_config(mesh)["kubernetes"]["remote_identity"] == "lmrun-skypilot-pods"
    namespace = next(m for m in manifests if m["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


def test_the_server_publishes_skypilots_kubeconfig_and_may_write_it() -> None:
    files = written_files(_user_data(SERVER))
    script = files["/usr/local/lib/lmrun/publish-skypilot-kubeconfig.sh"]
    for needle in (
        "KUBECONFIG_PARAMETER=/lmrun/global/k3s/skypilot-kubeconfig",
        "CONTEXT=lmrun-global",
        "NAMESPACE=skypilot",
        "ACCOUNT=lmrun-skypilot",
        "API_ENDPOINT=https://10.64.16.10:6443",
    ):
        assert needle in script, needle
    assert ["systemctl", "enable", "--now", gpu_pool.PUBLISH_UNIT] in runcmd_argvs(_user_data(SERVER))
    rows = {row.name: row.to_json() for row in plan("global").access.rows}
    assert rows["k3s/skypilot-kubeconfig"] == {
        **rows["k3s/skypilot-kubeconfig"],
        "readers": ["k3s-server"],
        "writers": ["k3s-server"],
    }


def test_the_publisher_script_passes_shellcheck(tmp_path: Path) -> None:
    path = tmp_path / "publish.sh"
    path.write_text(written_files(_user_data(SERVER))["/usr/local/lib/lmrun/publish-skypilot-kubeconfig.sh"])
    assert_shellcheck_clean([path])


def test_a_blanket_toleration_in_the_servers_pool_manifest_fails_the_plan() -> None:
    """The contract reads the objects the server applies at boot too, not only Pulumi's."""
    snapshot = plan("global").snapshot

    def blanket(resource: Resource) -> Resource:
        if resource.name != SERVER:
            return resource
        text = user_data_text(resource) or ""
        old = json.dumps({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, separators=(",", ":"))
        assert old in text
        new_text = text.replace(old, json.dumps({"operator": "Exists"}, separators=(",", ":")))
        return dataclasses.replace(
            resource, inputs={**resource.inputs, "userDataBase64": gzip_base64_user_data(new_text)}
        )

    with pytest.raises(ContractError) as raised:
        run_checks("global", Snapshot([blanket(r) for r in snapshot.resources], snapshot.outputs))
    assert any("no-blanket-toleration" in line and "nvidia-device-plugin" in line for line in raised.value.lines())


# --- SkyPilot reads the pool --------------------------------------------------------------------------------


def test_skypilot_reads_the_pool_label_as_the_declared_gpu_and_tolerates_the_taint(monkeypatch: Any) -> None:
    """SkyPilot's own label detection (sky 0.14.1, offline: the nodes it would list are the pool node's labels)
    picks its SkyPilot formatter and maps the label back to L4, the pool's GPU; the toleration it adds to GPU pods
    (key = its GPU resource key, operator Exists, effect NoSchedule) tolerates the pool's taint."""
    from sky.provision.kubernetes import utils as kubernetes_utils

    labels = dict(gpu_pool.pool_agent(_agent(), pool="l4-pool").labels)
    node = SimpleNamespace(metadata=SimpleNamespace(name=POOL_NODE, labels=labels))
    monkeypatch.setattr(kubernetes_utils, "get_kubernetes_nodes", lambda **_: [node])
    formatter, _ = kubernetes_utils.detect_gpu_label_formatter(None)
    assert isinstance(formatter, kubernetes_utils.SkyPilotLabelFormatter)
    value = labels[formatter.get_label_key()]
    assert formatter.validate_label_value(value)[0]
    assert formatter.get_accelerator_from_label_value(value) == parse_spec(_global_raw()).gpu_pool[0].gpu.upper()

    key, rest = gpu_pool.GPU_TAINT.split("=", 1)
    effect = rest.split(":")[1]
    toleration = {
        "key": kubernetes_utils.SUPPORTED_GPU_RESOURCE_KEYS["nvidia"],
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert (toleration["key"], toleration["effect"]) == (key, effect)  # Exists matches any value of the key


def test_the_global_config_of_the_pool_is_what_the_stack_declares() -> None:
    spec = parse_spec(_global_raw())
    [pool] = spec.gpu_pool
    assert (pool.name, pool.gpu, pool.use_spot, pool.policy, pool.regions) == (
        "l4-pool",
        "L4",
        False,
        "priority",
        ("us-east-1",),
    )
    assert stack_config("global").config["lmrun:gpuPool"]


# --- a pool in a GCP site -------------------------------------------------------------------------------------

GCP_POOL = {"name": "gpool", "gpu": "L4", "policy": "priority", "replicas": 1, "regions": ["gcp-usc1"]}


def test_a_pool_in_a_gcp_site_reads_its_sites_agent_token_alone_and_only_adds_resources(tmp_path: Path) -> None:
    """A site's pool nodes get their own service account, bound to the site's agent-token copy only (the site's
    vLLM nodes' account also reads the Hugging Face token and the ingest key); the site's existing resources keep
    their inputs."""
    global_pools = _global_raw()["gpuPool"]
    before = plan("global")
    after = plan("global", gpuPool=[*global_pools, GCP_POOL])
    table = after.access
    assert not table.disagreements
    node = "gpu-pool:gpool-gcp-usc1-0"
    assert {row.name for row in table.rows if node in row.allowed("read")} == {"gcp-usc1/k3s-agent-token"}
    old = {r.urn: r for r in before.recording.resources}
    new = {r.urn: r for r in after.recording.resources}
    assert set(old) <= set(new)
    assert [r.name for r in old.values() if r.inputs != new[r.urn].inputs] == []
    added = sorted(new[urn].name for urn in set(new) - set(old))
    assert added == [
        "mesh-sites-gcp-usc1-k3s-agent-token-reader-pool",
        "mesh-sites-gcp-usc1-node-gpool-gcp-usc1-0",
        "mesh-sites-gcp-usc1-node-gpool-gcp-usc1-0-template",
        "mesh-sites-gcp-usc1-pool-sa",
    ]
    template = after.recording.named("mesh-sites-gcp-usc1-node-gpool-gcp-usc1-0-template").inputs
    assert template["labels"]["lmrun_role"] == "gpu-pool"
    text = template["metadata"]["user-data"]
    assert "--default-runtime nvidia" in written_files(text)["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]
    assert "vllm" not in text.lower()
    _assert_valid_user_data(text, tmp_path)
