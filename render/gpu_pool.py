"""The GPU pool on K3s (``lmrun:gpuPool``): how a pool node boots, and the cluster objects the K3s server applies
so SkyPilot can schedule GPU pods on the pool with a scoped credential.

**A pool node** runs no vLLM. Its user data installs the pinned NVIDIA Container Toolkit (the GPU image has the
driver), then joins K3s as an agent with the agent token only, and:

- ``--default-runtime nvidia``: K3s finds ``nvidia-container-runtime`` when its containerd starts and adds an
  ``nvidia`` runtime (K3s docs, "Advanced Options", NVIDIA Container Runtime Support); made the default, every
  pod on the node sees its GPUs through the runtime, as SkyPilot requires ("nvidia must also be set as the
  default runtime", skypilot-org/skypilot#2957), without a ``runtimeClassName`` in SkyPilot's pods;
- the label ``skypilot.co/accelerator=<gpu, lowercase>`` SkyPilot reads as the node's GPU (sky 0.14.1,
  ``sky/provision/kubernetes/utils.py`` ``SkyPilotLabelFormatter``: key ``skypilot.co/accelerator``, values
  lowercase, ``get_accelerator_from_label_value`` upper-cases them back), and ``lmrun.io/gpu-pool=<pool>``;
- the taint ``nvidia.com/gpu=present:NoSchedule``, so only GPU work lands: SkyPilot adds the matching toleration
  to every pod that requests GPUs (sky 0.14.1, ``sky/provision/kubernetes/instance.py`` line 2454, ``gpu_toleration =``:
  ``{'key': get_gpu_resource_key(context), 'operator': 'Exists', 'effect': 'NoSchedule'}``, the key
  ``nvidia.com/gpu``), and the device plugin below tolerates exactly this taint.

**The cluster objects** (:func:`pool_manifests`, applied by the server with the admin credential at every boot,
pool or not, so adding a pool adds nodes only):

- namespace ``lmrun-gpu`` (default-deny: the plugin needs no network, it talks to the kubelet over a socket) with
  the NVIDIA device plugin DaemonSet: image pinned by digest, requests equal to limits, on the nodes labelled
  ``lmrun.io/gpu-pool`` only, tolerating only the pool's taint;
- the RuntimeClass ``nvidia`` (handler ``nvidia``), which SkyPilot detects (it lists RuntimeClasses);
- namespace ``skypilot`` for SkyPilot's pods: default-deny, plus a policy admitting ingress from the mesh's own
  ranges only and egress to anywhere but link-local (models and packages from the internet; never the instance
  metadata service, whose credentials are the node's);
- the ServiceAccount ``lmrun-skypilot`` with SkyPilot's documented minimum RBAC for a namespaced deployment
  (SkyPilot docs, "Kubernetes" cloud permissions, "Minimum permissions required for SkyPilot": a Role on pods,
  pods/status, pods/exec, pods/portforward, services and secrets, events read-only; a ClusterRole reading nodes,
  runtimeclasses and storageclasses), and its long-lived token Secret; the server publishes a kubeconfig of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmrun.domain.addresses import K3S_POD_CIDR, REGION_POOL, SITE_POOL, TUNNEL_POOL
from lmrun.domain.names import LABEL_GPU_POOL
from lmrun.domain.versions import NVIDIA_CONTAINER_TOOLKIT_VERSION
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, cloud_config, systemd_unit, vm_script
from lmrun.render.k3s import (
    API_PORT,
    SERVER_KUBECTL,
    K3sAgentConfig,
    agent_files,
    agent_runcmd,
    check_label_value,
    check_ssm_parameter_name,
)
from lmrun.render.kubernetes import MANAGED_BY, default_deny_manifest, to_json_list
from lmrun.render.routes import RouteMtu, route_mtu_files, route_mtu_runcmd

SKYPILOT_ACCELERATOR_LABEL = "skypilot.co/accelerator"
"""The node label SkyPilot's own formatter reads as the node's GPU (``SkyPilotLabelFormatter.LABEL_KEY``)."""
GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource the device plugin advertises, and the key of the pool's taint (SkyPilot's toleration)."""
GPU_TAINT = f"{GPU_RESOURCE}=present:NoSchedule"
NVIDIA_RUNTIME = "nvidia"
"""The containerd runtime K3s registers for ``nvidia-container-runtime``, and the RuntimeClass handler."""

NVIDIA_REPOSITORY = "https://nvidia.github.io/libnvidia-container"
NVIDIA_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"

DEVICE_PLUGIN_IMAGE = (
    "nvcr.io/nvidia/k8s-device-plugin:v0.17.1@sha256:af31e2b7c7f89834c4e5219860def7ac2e49a207b3d4e8610d5a26772b7738e5"
)
"""The NVIDIA device plugin v0.17.1 (released 2025-03-17), pinned by digest: the digest public repositories pin
this tag to (found with code search: a kind test harness's ``NVIDIA_SOURCE`` line and an image inventory table
both record ``v0.17.1@sha256:af31e2b7...``); the runtime refuses content that does not match it."""
DEVICE_PLUGIN_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "50m", "memory": "128Mi"}}
"""Equal requests and limits (Guaranteed QoS: evicted last). The plugin idles between NVML health checks; 128 MiB
covers its Go runtime and NVML."""
DEVICE_PLUGIN_NAMESPACE = "lmrun-gpu"
DEVICE_PLUGIN = "nvidia-device-plugin"

SKYPILOT_NAMESPACE = "skypilot"
SKYPILOT_ACCOUNT = "lmrun-skypilot"
SKYPILOT_TOKEN_SECRET = f"{SKYPILOT_ACCOUNT}-token"
SKYPILOT_POD_ACCOUNT = "lmrun-skypilot-pods"
"""The ServiceAccount SkyPilot's pods run as (``kubernetes.remote_identity``): no role, no token mounted. Naming it
keeps SkyPilot off its default path, which creates ``skypilot-service-account`` with Roles, ClusterRoles, their
bindings and the ``skypilot-system`` namespace at every launch (sky 0.14.1, ``sky/provision/kubernetes/config.py``
``bootstrap_instances``: only for the default account; "the user has already set up the necessary roles"
otherwise): ``lmrun-skypilot``'s minimum RBAC may create none of those, and a replica's pod needs no API access."""
SKYPILOT_ROLE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("pods", "pods/status", "pods/exec", "pods/portforward"), ("*",)),
    ("", ("services",), ("*",)),
    ("", ("secrets",), ("*",)),
    ("", ("events",), ("get", "list", "watch")),
)
"""(API group, resources, verbs) of SkyPilot's namespaced Role, as its docs list the minimum."""
SKYPILOT_CLUSTER_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("nodes",), ("get", "list", "watch")),
    ("node.k8s.io", ("runtimeclasses",), ("get", "list", "watch")),
    ("storage.k8s.io", ("storageclasses",), ("get", "list", "watch")),
)
"""(API group, resources, verbs) of SkyPilot's ClusterRole: reading the nodes' GPUs and labels, RuntimeClasses and
StorageClasses; nothing cluster-wide it could change."""
MESH_SOURCES: tuple[ipaddress.IPv4Network, ...] = (K3S_POD_CIDR, REGION_POOL, SITE_POOL, TUNNEL_POOL)
"""Where ingress to SkyPilot's pods may come from: the pod network (flannel peers, among them the SkyServe
controller, a K3s agent whose traffic to a pod IP leaves through flannel), the AWS regions' VPCs and the sites
(mesh VMs, and node ports that kube-proxy forwards from a node's address), the tunnels. Not the service range
(virtual addresses are never a source), never the internet."""
POOL_MANIFEST = f"{SCRIPT_DIR}/lmrun-gpu-pool.json"
PUBLISH_UNIT = "lmrun-publish-skypilot-kubeconfig.service"


def pool_agent(base: K3sAgentConfig, *, pool: str) -> K3sAgentConfig:
    """``base`` (a GPU node's agent config: its name, region, GPU, store and token) as a node of ``pool``: the GPU
    labels SkyPilot and the device plugin select, the taint, the nvidia runtime as containerd's default, and no
    service of its own."""
    if base.gpu is None:
        raise ValueError("gpu: a pool node's agent config must name its GPU (the skypilot.co/accelerator label)")
    if base.serves:
        raise ValueError("serves: a pool node serves no mesh service")
    check_label_value("pool", pool)
    labels = (*base.extra_labels, (SKYPILOT_ACCELERATOR_LABEL, base.gpu.lower()), (LABEL_GPU_POOL, pool))
    return K3sAgentConfig(
        server_ip=base.server_ip,
        store=base.store,
        token_parameter=base.token_parameter,
        node_name=base.node_name,
        region=base.region,
        gpu=base.gpu,
        node_ip=base.node_ip,
        extra_labels=labels,
        node_taints=(GPU_TAINT,),
        default_runtime=NVIDIA_RUNTIME,
        k3s_version=base.k3s_version,
    )


def toolkit_script(version: str = NVIDIA_CONTAINER_TOOLKIT_VERSION) -> WriteFile:
    return vm_script(
        "nvidia-toolkit-install.sh", {"VERSION": version, "REPOSITORY": NVIDIA_REPOSITORY, "KEYRING": NVIDIA_KEYRING}
    )


def render_pool_node_user_data(agent: K3sAgentConfig, routes: Sequence[RouteMtu] = ()) -> str:
    """``#cloud-config`` of a GPU pool node: routes first, the NVIDIA Container Toolkit, then the K3s agent (which
    must start after the toolkit: K3s looks for the NVIDIA runtime when it starts). ``agent`` comes from
    :func:`pool_agent`."""
    if agent.default_runtime != NVIDIA_RUNTIME or GPU_TAINT not in agent.node_taints:
        raise ValueError("agent: a pool node's agent config comes from pool_agent (nvidia runtime, GPU taint)")
    return cloud_config(
        write_files=[*route_mtu_files(routes), toolkit_script(), *agent_files(agent)],
        runcmd=[*route_mtu_runcmd(routes), [f"{SCRIPT_DIR}/nvidia-toolkit-install.sh"], *agent_runcmd()],
    )


# --- cluster objects ------------------------------------------------------------------------------------------


def _rules(rules: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> list[dict[str, Any]]:
    return [
        {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)} for group, resources, verbs in rules
    ]


POD_SECURITY_BASELINE = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
"""Pod Security Admission (built into Kubernetes and K3s) refusing privileged, hostPath, hostNetwork and added
capabilities in the ``skypilot`` namespace. SkyPilot uploads every local cloud credential, the operator's kubeconfig
included, to every cluster it launches (sky 0.14.1 ``sky/check.py`` ``get_cloud_credential_file_mounts``; only a
``NO_UPLOAD`` cloud is left out, and the controller needs the kubeconfig): so any SkyPilot VM may hold
``lmrun-skypilot``'s token. With this label that token cannot start a pod that reaches its node (SkyPilot's own pods
need none of it unless they ask for RDMA or FUSE: ``sky/templates/kubernetes-ray.yml.j2``)."""


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**MANAGED_BY, **(labels or {})}},
    }


def device_plugin_manifest(image: str = DEVICE_PLUGIN_IMAGE) -> dict[str, Any]:
    """The NVIDIA device plugin on every pool node (and only there): advertises ``nvidia.com/gpu``."""
    labels = {"app": DEVICE_PLUGIN, **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DEVICE_PLUGIN, "namespace": DEVICE_PLUGIN_NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": DEVICE_PLUGIN}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # The pool's nodes, whatever the pool (the label's value is the pool's name).
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": LABEL_GPU_POOL, "operator": "Exists"}]}
                                ]
                            }
                        }
                    },
                    # Only the pool's taint: the controller adds the node-lifecycle ones itself.
                    "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": DEVICE_PLUGIN,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            # Keep serving when a node has no GPU yet visible (a driver still loading).
                            "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                            "resources": {kind: dict(values) for kind, values in DEVICE_PLUGIN_RESOURCES.items()},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [
                                {"name": "device-plugins", "mountPath": "/var/lib/kubelet/device-plugins"}
                            ],
                        }
                    ],
                    "volumes": [{"name": "device-plugins", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    }


def runtime_class_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": NVIDIA_RUNTIME, "labels": dict(MANAGED_BY)},
        "handler": NVIDIA_RUNTIME,
    }


def skypilot_network_policy() -> dict[str, Any]:
    """Beside the namespace's default-deny: ingress from the mesh's ranges only, egress anywhere but link-local."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "mesh-in-internet-out", "namespace": SKYPILOT_NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": str(block)}} for block in MESH_SOURCES]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]}],
        },
    }


def skypilot_access_manifests() -> list[dict[str, Any]]:
    """The ``skypilot`` namespace, its policies, the ``lmrun-skypilot`` ServiceAccount with its token and RBAC, and
    the pods' account (:data:`SKYPILOT_POD_ACCOUNT`, bound to nothing)."""
    rbac = "rbac.authorization.k8s.io"
    named = {"name": SKYPILOT_ACCOUNT, "namespace": SKYPILOT_NAMESPACE, "labels": dict(MANAGED_BY)}
    cluster_named = {"name": SKYPILOT_ACCOUNT, "labels": dict(MANAGED_BY)}
    subject = [{"kind": "ServiceAccount", "name": SKYPILOT_ACCOUNT, "namespace": SKYPILOT_NAMESPACE}]
    return [
        namespace(SKYPILOT_NAMESPACE, POD_SECURITY_BASELINE),
        default_deny_manifest(SKYPILOT_NAMESPACE),
        skypilot_network_policy(),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": named, "automountServiceAccountToken": False},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {**named, "name": SKYPILOT_POD_ACCOUNT},
            "automountServiceAccountToken": False,
        },
        {
            # Created by hand, like the deployer's: never expires; deleting the Secret revokes it.
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SKYPILOT_TOKEN_SECRET,
                "namespace": SKYPILOT_NAMESPACE,
                "annotations": {"kubernetes.io/service-account.name": SKYPILOT_ACCOUNT},
            },
            "type": "kubernetes.io/service-account-token",
        },
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": named, "rules": _rules(SKYPILOT_ROLE_RULES)},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": named,
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": SKYPILOT_ACCOUNT},
            "subjects": subject,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": cluster_named,
            "rules": _rules(SKYPILOT_CLUSTER_RULES),
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_named,
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": SKYPILOT_ACCOUNT},
            "subjects": subject,
        },
    ]


def pool_manifests(image: str = DEVICE_PLUGIN_IMAGE) -> list[dict[str, Any]]:
    """Every object the server applies for the pool and SkyPilot, namespaces before what they hold."""
    return [
        namespace(DEVICE_PLUGIN_NAMESPACE),
        default_deny_manifest(DEVICE_PLUGIN_NAMESPACE),
        device_plugin_manifest(image),
        runtime_class_manifest(),
        *skypilot_access_manifests(),
    ]


@dataclass(frozen=True)
class SkyPilotAccess:
    """What the server needs to publish SkyPilot's kubeconfig: plain values and a parameter name only."""

    context: str
    """The kubeconfig's context (and cluster) name, ``lmrun-<stack>``."""
    kubeconfig_parameter: str
    """SecureString parameter the server writes the kubeconfig to."""

    def __post_init__(self) -> None:
        check_label_value("context", self.context)
        check_ssm_parameter_name("kubeconfig_parameter", self.kubeconfig_parameter)


def skypilot_server_files(access: SkyPilotAccess, *, node_ip: str, region: str) -> list[WriteFile]:
    """The pool's manifest, the publisher script and its unit (enabled by :func:`skypilot_server_runcmd`)."""

    script = vm_script(
        "publish-skypilot-kubeconfig.sh",
        {
            "KUBECTL": SERVER_KUBECTL,
            "MANIFEST": POOL_MANIFEST,
            "NAMESPACE": SKYPILOT_NAMESPACE,
            "ACCOUNT": SKYPILOT_ACCOUNT,
            "TOKEN_SECRET": SKYPILOT_TOKEN_SECRET,
            "CONTEXT": access.context,
            "API_ENDPOINT": f"https://{node_ip}:{API_PORT}",
            "REGION": region,
            "KUBECONFIG_PARAMETER": access.kubeconfig_parameter,
            "PUT_OPTIONS": ["--type", "SecureString", "--overwrite", "--tier", "Intelligent-Tiering"],
        },
    )
    unit = systemd_unit(
        {
            "Unit": [
                ("Description", "Apply the GPU pool's objects and publish SkyPilot's kubeconfig to SSM"),
                ("After", "k3s.service network-online.target"),
                ("Wants", "network-online.target"),
                ("Requires", "k3s.service"),
            ],
            "Service": [
                ("Type", "oneshot"),
                ("ExecStart", f"{SCRIPT_DIR}/publish-skypilot-kubeconfig.sh"),
                ("Restart", "on-failure"),
                ("RestartSec", "30"),
            ],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )
    return [
        WriteFile(POOL_MANIFEST, to_json_list(pool_manifests())),
        script,
        WriteFile(f"/etc/systemd/system/{PUBLISH_UNIT}", unit),
    ]


def skypilot_server_runcmd() -> list[list[str]]:
    """What the server runs once K3s is up: the publisher (it applies the pool's objects first)."""
    return [["systemctl", "enable", "--now", PUBLISH_UNIT]]
