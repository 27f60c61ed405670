"""The cluster's own objects: every image pinned by digest, CPU and memory requests and limits on every
container, a default-deny NetworkPolicy in every namespace the stack creates; proven on the rendered
manifests, on the example stacks' recorded resources (objects Pulumi creates and those the K3s server
applies at boot), and by breaking each rule and watching the plan fail."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.domain.versions import KUBERNETES_VERSION
from lmrun.render import gpu_pool, kubernetes
from lmrun.render.cloudinit import gzip_base64_user_data, written_files
from lmrun.verify.checks import run_checks
from lmrun.verify.contracts import (
    CANNOT_TELL,
    CONTAINER_RESOURCES,
    IMAGE_BY_DIGEST,
    NAMESPACE_DEFAULT_DENY,
    ContractError,
    check_contracts,
)
from lmrun.verify.kubernetes_objects import (
    IMAGE_DIGEST,
    KubeObject,
    containers,
    is_default_deny,
    kubernetes_objects,
    namespace_verdicts,
)
from lmrun.verify.resources import Resource, Snapshot
from lmrun.verify.user_data import user_data_text
from tests.conftest import plan
from tests.validators import assert_kubernetes_valid

QWEN = kubernetes.MeshService(name="qwen", app_port=8000, node_port=30080)
SERVER = "mesh-cluster-k3s-instance"
BOOT_FILE = "/usr/local/lib/lmrun/lmrun-deployer.json"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"


def _objects(snapshot: Snapshot) -> list[KubeObject]:
    return [obj for r in snapshot.resources for obj in kubernetes_objects(r.type, r.inputs, r.name)]


def _as_objects(manifests: list[dict[str, Any]]) -> list[KubeObject]:
    return [KubeObject("rendered", m, m["kind"], "boot.json") for m in manifests]


# --- the rendered manifests -----------------------------------------------------------------------------------


def test_the_readiness_proxy_runs_pause_by_digest_with_guaranteed_resources() -> None:
    """The digest is the multi-arch index of registry.k8s.io/pause:3.10 (amd64 and arm64 nodes each resolve
    their own image from it); requests equal limits, so the proxy is Guaranteed QoS and evicted last."""
    assert kubernetes.PAUSE_IMAGE == (
        "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
    )
    [(_, container)] = containers(_as_objects([kubernetes.readiness_proxy_manifest(QWEN)])[0])
    assert container["image"] == kubernetes.PAUSE_IMAGE and IMAGE_DIGEST.search(container["image"])
    resources = container["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "10m", "memory": "16Mi"}


def test_the_server_creates_the_namespace_with_its_default_deny_before_anything_else() -> None:
    deployer = kubernetes.deployer_manifests()
    assert [m["kind"] for m in deployer[:2]] == ["Namespace", "NetworkPolicy"]
    assert deployer[1] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "lmrun", "labels": {"app.kubernetes.io/managed-by": "lmrun"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    for manifests in (deployer, kubernetes.mesh_manifests([QWEN])):
        [verdict] = namespace_verdicts(_as_objects(manifests))
        assert verdict.namespace == "lmrun" and verdict.policy is not None
    # The deployer cannot lift it: its Role names no NetworkPolicy.
    role = next(m for m in deployer if m["kind"] == "Role")
    assert all("networkpolicies" not in rule["resources"] for rule in role["rules"])


@pytest.mark.parametrize(
    ("change", "deny"),
    [
        (lambda spec: spec, True),
        (lambda spec: {**spec, "policyTypes": ["Ingress"]}, False),  # egress stays open
        (lambda spec: {k: v for k, v in spec.items() if k != "policyTypes"}, False),  # omitted means Ingress only
        (lambda spec: {**spec, "ingress": [{}]}, False),  # an empty rule allows everything
        (lambda spec: {**spec, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}, False),
        (lambda spec: {**spec, "podSelector": {"matchLabels": {"app": "x"}}}, False),  # some pods only
    ],
)
def test_only_an_all_pods_both_ways_ruleless_policy_is_a_default_deny(
    change: Callable[[dict[str, Any]], dict[str, Any]], deny: bool
) -> None:
    manifest = kubernetes.default_deny_manifest()
    changed = {**manifest, "spec": change(dict(manifest["spec"]))}
    assert is_default_deny(_as_objects([changed])[0]) is deny


# --- the example stacks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_every_container_is_pinned_and_sized_and_every_namespace_denies_by_default(stack: str, preview: bool) -> None:
    """The contracts cover every container of every workload the stack creates and the one namespace, whose
    policy they find in the K3s server's boot manifest (not a Pulumi resource: the deployer cannot touch it)."""
    report = plan(stack, preview=preview, **({"phoenix": {"placement": "node"}} if stack == "global" else {}))
    objects = _objects(report.snapshot)
    workload_containers = [(obj.label, c) for obj in objects for _, c in containers(obj)]
    assert len(workload_containers) == len([o for o in objects if o.kind == "DaemonSet"]) > 0
    for contract in (IMAGE_BY_DIGEST, CONTAINER_RESOURCES):
        rows = [c for c in report.contracts if c.contract == contract]
        assert sorted(r.resource for r in rows) == sorted(label for label, _ in workload_containers)
        assert all(r.ok and r.value != CANNOT_TELL for r in rows), rows
    rows = {c.resource: c for c in report.contracts if c.contract == NAMESPACE_DEFAULT_DENY}
    assert rows["namespace/lmrun"].value == f"{SERVER}:{BOOT_FILE}:NetworkPolicy/lmrun/default-deny"
    if stack == "global":  # lmrun:skypilot on: the GPU pool's namespaces, from the server's other boot manifest
        pool_file = gpu_pool.POOL_MANIFEST
        for namespace in (gpu_pool.DEVICE_PLUGIN_NAMESPACE, gpu_pool.SKYPILOT_NAMESPACE):
            assert (
                rows[f"namespace/{namespace}"].value == f"{SERVER}:{pool_file}:NetworkPolicy/{namespace}/default-deny"
            )
    assert sorted(rows) == sorted(
        f"namespace/{ns}"
        for ns in (
            "lmrun",
            *((gpu_pool.DEVICE_PLUGIN_NAMESPACE, gpu_pool.SKYPILOT_NAMESPACE) if stack == "global" else ()),
        )
    )
    assert all(row.ok for row in rows.values())
    assert not [v for v in report.violations if v.policy.startswith(("kubernetes-", "namespaces-"))]


def test_the_mesh_needs_no_allow_because_its_pods_use_the_host_network() -> None:
    """Why the default-deny carries no allow rule: every pod the stack puts in the namespace is a hostNetwork
    pause, which no NetworkPolicy governs (kube-router skips hostNetwork pods), whose probes come from its own
    node (always allowed) and which resolves no name. A pod that is not hostNetwork would start isolated and
    need its own allow: this test then fails and says so. The one other workload, the GPU pool's device plugin
    (namespace ``lmrun-gpu``, default-deny too), needs no network either: it talks to the kubelet over a socket,
    declares no port and no probe."""
    report = plan("global", phoenix={"placement": "node"})
    for obj in _objects(report.snapshot):
        if obj.kind not in ("DaemonSet", "Deployment", "StatefulSet", "Job", "CronJob", "Pod"):
            continue
        pod = obj.manifest["spec"]["template"]["spec"]
        if obj.namespace == gpu_pool.DEVICE_PLUGIN_NAMESPACE:
            [container] = pod["containers"]
            assert not {"ports", "readinessProbe", "livenessProbe"} & set(container), obj.label
            assert "hostNetwork" not in pod and "initContainers" not in pod, obj.label
            continue
        assert obj.namespace == kubernetes.NAMESPACE, obj.label
        assert pod["hostNetwork"] is True, f"{obj.label} is not hostNetwork: give it a NetworkPolicy allow"
        assert [c["image"] for c in pod["containers"]] == [kubernetes.PAUSE_IMAGE], obj.label
        assert "initContainers" not in pod and all("ports" not in c for c in pod["containers"]), obj.label


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_k3s_keeps_its_network_policy_controller(stack: str) -> None:
    """A policy nobody enforces is worse than none: no machine starts K3s with the embedded controller off
    (K3s docs, "Networking Services": ``--disable-network-policy``) or without its CNI (``--flannel-backend=none``
    leaves enforcement to a CNI the mesh does not install)."""
    report = plan(stack)
    server = next(r for r in report.snapshot.resources if r.name == SERVER)
    assert "k3s-install.sh" in (user_data_text(server) or "")
    for text in (user_data_text(r) or "" for r in report.snapshot.resources):
        assert "--disable-network-policy" not in text and "flannel-backend" not in text


def test_every_object_the_stack_creates_passes_kubernetes_validate_strict(tmp_path: Path) -> None:
    """Pulumi's objects and the server's boot manifest alike, against the cluster's Kubernetes version."""
    objects = _objects(plan("global", phoenix={"placement": "node"}).snapshot)
    kinds = {obj.kind for obj in objects}
    assert {"Namespace", "NetworkPolicy", "Role", "Service", "DaemonSet"} <= kinds
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all([dict(obj.manifest) for obj in objects], sort_keys=False))
    result = assert_kubernetes_valid(path, KUBERNETES_VERSION)
    assert result.stdout.count("passed") == len(objects)


# --- breaking each rule fails the plan ------------------------------------------------------------------------


def _broken(mutate: Callable[[Resource], Resource | None]) -> Snapshot:
    """The global plan's resources with ``mutate`` applied to each (None: unchanged)."""
    snapshot = plan("global").snapshot
    return Snapshot([mutate(r) or r for r in snapshot.resources], snapshot.outputs)


def _with_pod(resource: Resource, change: Callable[[dict[str, Any]], None]) -> Resource | None:
    if resource.name != "mesh-cluster-ports-proxy-qwen":
        return None
    inputs = json.loads(json.dumps(dict(resource.inputs)))
    change(inputs["spec"]["template"]["spec"]["containers"][0])
    return dataclasses.replace(resource, inputs=inputs)


def _broken_lines(snapshot: Snapshot) -> list[str]:
    with pytest.raises(ContractError) as raised:
        run_checks("global", snapshot)
    return raised.value.lines()


def test_a_tagged_image_fails_the_plan_naming_the_workload() -> None:
    def tag_only(container: dict[str, Any]) -> None:
        container["image"] = "registry.k8s.io/pause:3.10"

    lines = _broken_lines(_broken(lambda r: _with_pod(r, tag_only)))
    assert lines == [
        "error: contract broken: mesh-cluster-ports-proxy-qwen: container-image-by-digest: "
        "'containers[0] readiness: registry.k8s.io/pause:3.10' is not an image pinned by digest (…@sha256:<64 hex>)"
    ]


def test_a_missing_limit_fails_the_plan_naming_it() -> None:
    def unlimited(container: dict[str, Any]) -> None:
        del container["resources"]["limits"]["cpu"]

    lines = _broken_lines(_broken(lambda r: _with_pod(r, unlimited)))
    assert lines == [
        "error: contract broken: mesh-cluster-ports-proxy-qwen: container-requests-and-limits: "
        "'containers[0] readiness: no limits.cpu' is not requests and limits for cpu and memory"
    ]


def test_a_server_manifest_without_the_default_deny_fails_the_plan() -> None:
    def without_policy(resource: Resource) -> Resource | None:
        if resource.name != SERVER:
            return None
        text = user_data_text(resource) or ""
        listed = json.loads(written_files(text)[BOOT_FILE])
        kept = [item for item in listed["items"] if item["kind"] != "NetworkPolicy"]
        assert len(kept) == len(listed["items"]) - 1
        old = json.dumps(listed, separators=(",", ":"))
        assert old in text
        new_text = text.replace(old, json.dumps({**listed, "items": kept}, separators=(",", ":")))
        return dataclasses.replace(
            resource, inputs={**resource.inputs, "userDataBase64": gzip_base64_user_data(new_text)}
        )

    lines = _broken_lines(_broken(without_policy))
    assert lines == [
        "error: contract broken: namespace/lmrun: namespace-default-deny: "
        f"'no default-deny policy (namespace of {SERVER}:{BOOT_FILE}:Namespace/lmrun)' is not a NetworkPolicy "
        "selecting every pod for Ingress and Egress with no rule"
    ]


def test_what_a_preview_cannot_show_is_cannot_tell_never_a_pass_or_a_failure() -> None:
    """An image not known yet, and a server whose user data is not known yet (it may apply the policy)."""
    proxy = kubernetes.readiness_proxy_manifest(QWEN)
    proxy["spec"]["template"]["spec"]["containers"][0]["image"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    service = kubernetes.service_manifest(QWEN)
    hidden_server = Resource("aws:ec2/instance:Instance", {"userDataBase64": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"})
    resources = [
        Resource(DAEMONSET, proxy, name="proxy"),
        Resource("kubernetes:core/v1:Service", service, name="svc"),
        dataclasses.replace(hidden_server, name="server"),
    ]
    rows = {(c.contract, c.resource): c for c in check_contracts(resources, {})}
    image = rows[(IMAGE_BY_DIGEST, "proxy")]
    namespace = rows[(NAMESPACE_DEFAULT_DENY, "namespace/lmrun")]
    assert (image.value, image.ok) == (CANNOT_TELL, True)
    assert (namespace.value, namespace.ok) == (CANNOT_TELL, True)
    # Once the server's user data is known and holds no policy, the same namespace fails.
    shown = dataclasses.replace(hidden_server, name="server", inputs={"userData": "#cloud-config\n{}\n"})
    verdicts = [c for c in check_contracts([*resources[:2], shown], {}) if c.contract == NAMESPACE_DEFAULT_DENY]
    assert [(c.resource, c.ok) for c in verdicts] == [("namespace/lmrun", False)]
