"""The Kubernetes objects a stack creates, read from its resources, and the rules every one of them keeps.

A stack creates Kubernetes objects two ways, and both are read here so no check can miss one:

- **through Pulumi**: every ``kubernetes:<group>/<version>:<Kind>`` resource (its inputs are the manifest);
- **at boot**: a JSON ``v1/List`` a VM writes through cloud-init's ``write_files`` and applies (the K3s server
  creates the mesh's namespace, its default-deny policy and the deployer's RBAC this way, with the admin
  credential Pulumi never holds; :func:`lmrun.render.kubernetes.deployer_manifests`).

The rules (the platform contracts of :mod:`lmrun.verify.contracts` and the policy pack both apply them):
every container image pinned by digest, every container with CPU and memory requests and limits, and a
default-deny NetworkPolicy in every namespace the stack creates or puts objects in. A VM whose user data
the source does not show (a preview, before the instance's inputs are known) may create objects nobody can
see: :func:`user_data_hidden` says so, and a check then answers "cannot tell" rather than "missing".
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from lmrun.render.cloudinit import written_files
from lmrun.verify.resources import get, is_unknown, plain, unwrap
from lmrun.verify.user_data import USER_DATA_TYPES, user_data_text

KUBERNETES_PREFIX = "kubernetes:"

IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
"""An image reference pinned by content: ``<name>[:tag]@sha256:<64 lowercase hex>`` (OCI image-spec, "Digests":
the sha256 algorithm's encoded part is 64 lowercase hexadecimal characters)."""
IMAGE_RULE = "an image pinned by digest (…@sha256:<64 hex>)"

RESOURCE_FIELDS = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
"""What every container sets: without requests the scheduler places it as if it needed nothing, without
limits one container can starve the node's VM processes (vLLM, the K3s agent) of CPU or memory."""
RESOURCES_RULE = "requests and limits for cpu and memory"

DENY_RULE = "a NetworkPolicy selecting every pod for Ingress and Egress with no rule"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class KubeObject:
    """One Kubernetes object the stack creates."""

    creator: str
    """The recorded resource that creates it: the Pulumi resource, or the VM that applies it at boot."""
    manifest: Mapping[str, Any]
    """The object as declared (secrets unwrapped)."""
    kind: str
    boot_file: str = ""
    """The file the VM applies it from; empty for an object Pulumi creates."""

    @property
    def name(self) -> str:
        return str(get(self.manifest, "metadata", "name") or "")

    @property
    def namespace(self) -> str | None:
        """The namespace it is placed in (None: cluster-scoped, or the provider's default namespace)."""
        namespace = get(self.manifest, "metadata", "namespace")
        return namespace if isinstance(namespace, str) else None

    @property
    def label(self) -> str:
        """How a verdict names it: the Pulumi resource, or the VM, its file and the object."""
        if not self.boot_file:
            return self.creator
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.creator}:{self.boot_file}:{self.kind}/{where}"


def _kind(resource_type: str) -> str:
    """``kubernetes:apps/v1:DaemonSet`` -> ``DaemonSet``."""
    return resource_type.rsplit(":", 1)[-1]


@functools.lru_cache(maxsize=128)
def _boot_manifests(text: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """``(path, object)`` of every Kubernetes object in a cloud-config's JSON ``v1/List`` files (parsed once per
    text: the contracts and the policy rules read the same user data)."""
    if not text.startswith("#cloud-config\n") or "List" not in text:  # cheap: most VMs apply nothing
        return ()
    try:
        files = written_files(text)
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError):
        return ()
    found: list[tuple[str, Mapping[str, Any]]] = []
    for path, content in files.items():
        try:
            document = json.loads(content)
        except ValueError:
            continue
        if isinstance(document, Mapping) and document.get("kind") == "List":
            found += [(path, item) for item in document.get("items") or [] if isinstance(item, Mapping)]
    return tuple(found)


@dataclass(frozen=True)
class _Carrier:
    type: str
    inputs: Mapping[str, Any]


def kubernetes_objects(resource_type: str, inputs: Mapping[str, Any], name: str) -> list[KubeObject]:
    """The Kubernetes objects one resource creates: itself (a ``kubernetes:*`` resource), or those its user
    data applies at boot."""
    if resource_type.startswith(KUBERNETES_PREFIX):
        return [KubeObject(name, unwrap(inputs), _kind(resource_type))]
    if resource_type not in USER_DATA_TYPES:
        return []
    text = user_data_text(_Carrier(resource_type, inputs))
    if text is None:
        return []
    return [
        KubeObject(name, manifest, str(manifest.get("kind") or ""), path) for path, manifest in _boot_manifests(text)
    ]


_USER_DATA_INPUTS = (("userData",), ("userDataBase64",), ("metadata", "user-data"))


def user_data_hidden(resource_type: str, inputs: Mapping[str, Any]) -> bool:
    """Whether a resource carries user data the source does not show (unknown until the update, or a secret a
    preview blinds), so the objects it applies at boot cannot be read."""
    if resource_type not in USER_DATA_TYPES:
        return False
    declared = False
    for path in _USER_DATA_INPUTS:
        value: Any = inputs
        for step in path:
            value = plain(value.get(step)) if isinstance(value, Mapping) else None
        declared = declared or value is not None
    return declared and user_data_text(_Carrier(resource_type, inputs)) is None


# --- containers -----------------------------------------------------------------------------------------------
def pod_specs(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod specs of a Pod, of a workload's template, or of a CronJob's job template."""
    found = []
    for path in (("spec",), ("spec", "template", "spec"), ("spec", "jobTemplate", "spec", "template", "spec")):
        value: Any = manifest
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, Mapping) and ("containers" in value or "tolerations" in value):
            found.append(value)
    return found


def containers(obj: KubeObject) -> list[tuple[str, Mapping[str, Any]]]:
    """``(where, container)`` of every container of every pod spec of ``obj``: ``containers[0] readiness``."""
    found = []
    for spec in pod_specs(obj.manifest):
        for field in CONTAINER_LISTS:
            listed = spec.get(field)
            for index, container in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(container, Mapping):
                    found.append((f"{field}[{index}] {container.get('name') or ''}".rstrip(), container))
    return found


def image_pinned(image: Any) -> bool | None:
    """Whether a container image is pinned by digest; None when the value is not known yet."""
    if is_unknown(image):
        return None
    return isinstance(image, str) and IMAGE_DIGEST.search(image) is not None


def missing_resources(container: Mapping[str, Any]) -> list[str]:
    """Which of :data:`RESOURCE_FIELDS` a container leaves unset (a value not known yet counts as set)."""
    missing = []
    for field in RESOURCE_FIELDS:
        value: Any = container
        for step in ("resources", *field.split(".")):
            if not is_unknown(value):
                value = value.get(step) if isinstance(value, Mapping) else None
        if value is None or value == "":
            missing.append(field)
    return missing


# --- namespaces -----------------------------------------------------------------------------------------------
def is_default_deny(obj: KubeObject) -> bool:
    """Whether ``obj`` is a NetworkPolicy isolating every pod of its namespace in both directions and allowing
    nothing: an empty ``podSelector`` selects all pods; ``policyTypes`` must name both (omitted, it means
    Ingress only); no ``ingress``/``egress`` rule (Kubernetes docs, "Network Policies", Default policies)."""
    if obj.kind != "NetworkPolicy":
        return False
    spec = get(obj.manifest, "spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    selects_all = isinstance(selector, Mapping) and not any(
        selector.get(k) for k in ("matchLabels", "matchExpressions")
    )
    types = spec.get("policyTypes")
    both = isinstance(types, list) and {"Ingress", "Egress"} <= set(types)
    return selects_all and both and not spec.get("ingress") and not spec.get("egress")


@dataclass(frozen=True)
class NamespaceVerdict:
    """A namespace the stack creates or puts objects in, and its default-deny policy (None when there is none)."""

    namespace: str
    creator: KubeObject
    """Its Namespace object, else the first object placed in it."""
    policy: KubeObject | None


def namespace_verdicts(objects: Iterable[KubeObject]) -> list[NamespaceVerdict]:
    """One verdict per namespace named by ``objects`` (a Namespace object, or an object's ``namespace``)."""
    creators: dict[str, KubeObject] = {}
    policies: dict[str, KubeObject] = {}
    for obj in objects:
        if obj.kind == "Namespace" and obj.name:
            creators[obj.name] = obj
        elif obj.namespace:
            creators.setdefault(obj.namespace, obj)
        if obj.namespace and is_default_deny(obj):
            policies.setdefault(obj.namespace, obj)
    return [NamespaceVerdict(ns, creators[ns], policies.get(ns)) for ns in sorted(creators)]
