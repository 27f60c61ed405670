"""Platform contracts, checked over every recorded resource at plan time: each a small function stating the
rule and where it comes from, returning one verdict per resource it covers (``lmrun plan --json`` lists them
under ``contracts``; the plan fails on any broken one, naming the resource and the rule).

Contracts read only resource types, inputs and the stack's outputs, so the same functions run over a mock
recording, a ``pulumi preview --json`` or a state export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lmrun.domain.errors import LmrunError
from lmrun.domain.pins import CONTRACT as PIN_CONTRACT
from lmrun.domain.pins import runtime_pin_checks


class PlannedResource(Protocol):
    """What a contract reads of a resource (:class:`lmrun.verify.resources.Resource` fits)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ContractResult:
    """One contract's verdict on one resource."""

    resource: str
    contract: str
    value: Any
    limit: Any
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "contract": self.contract,
            "value": self.value,
            "limit": self.limit,
            "ok": self.ok,
        }


def _boot_disk_image(inputs: Mapping[str, Any]) -> list[Any]:
    return [((inputs.get("bootDisk") or {}).get("initializeParams") or {}).get("image")]


def _template_boot_images(inputs: Mapping[str, Any]) -> list[Any]:
    return [disk.get("sourceImage") for disk in inputs.get("disks") or [] if disk.get("boot")]


IMAGE_INPUTS: dict[str, Callable[[Mapping[str, Any]], list[Any]]] = {
    "aws:ec2/instance:Instance": lambda inputs: [inputs.get("ami")],
    "aws:ec2/launchTemplate:LaunchTemplate": lambda inputs: [inputs.get("imageId")],
    "gcp:compute/instance:Instance": _boot_disk_image,
    "gcp:compute/instanceTemplate:InstanceTemplate": _template_boot_images,
}
"""Every resource type that boots an image, and the image(s) it boots."""

PINNED_IMAGES = "image-pinned-in-config"


def pinned_images(outputs: Mapping[str, Any]) -> set[str]:
    """Every image id the stack pins (the ``images`` output: ``{regions|sites: {where: {role: id}}}``)."""
    exported = outputs.get("images") or {}
    return {
        image
        for group in ("regions", "sites")
        for roles in (exported.get(group) or {}).values()
        for image in roles.values()
    }


def images_are_pinned(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every VM and template boots an image pinned in the stack config (``lmrun:images``,
    ``lmrun:sites[].images``): never a lookup's answer, a family or an id written into a component.

    Why: an image that floats (an SSM ``.../latest`` parameter, a GCP image family) replaces the K3s server
    and the WireGuard hub (delete-before-replace: the API and every tunnel down) and rolls every GPU node the
    day its publisher releases one; a pinned id changes only with a reviewed config change.
    """
    if "images" not in outputs:
        return []  # a file without the stack's outputs cannot say what the config pins (lmrun check notes it)
    pinned = pinned_images(outputs)
    limit = "an image pinned in lmrun:images or lmrun:sites[].images"
    return [
        ContractResult(resource.name, PINNED_IMAGES, image, limit, isinstance(image, str) and image in pinned)
        for resource in resources
        if resource.type in IMAGE_INPUTS
        for image in IMAGE_INPUTS[resource.type](resource.inputs)
    ]


NEVER_WAITS = "kubernetes-object-never-waits"
SKIP_AWAIT = "pulumi.com/skipAwait"
TIMEOUT_SECONDS = "pulumi.com/timeoutSeconds"


def _kubernetes_objects(resources: Iterable[PlannedResource]) -> list[PlannedResource]:
    """The objects a Kubernetes provider creates (``kubernetes:*``; the provider itself is ``pulumi:providers``)."""
    return [resource for resource in resources if resource.type.startswith("kubernetes:")]


def _annotations(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = inputs.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}


def kubernetes_objects_never_wait(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every Kubernetes object ``pulumi up`` creates either cannot block on a workload (``pulumi.com/skipAwait:
    "true"``: the update moves on once the API accepted it) or has an explicit timeout
    (``pulumi.com/timeoutSeconds``, documented where it is set).

    Why: pulumi-kubernetes' await logic waits for a Service's endpoints and for a Deployment's or DaemonSet's
    ready pods, 10 minutes by default (its await-logic docs; the annotation since pulumi-kubernetes #417), and a
    mesh replica is ready only once spot capacity was found, vLLM installed and a ~15 GB model downloaded and
    loaded: `pulumi up` would fail while the mesh is fine.
    """
    limit = f'{SKIP_AWAIT}: "true" or a {TIMEOUT_SECONDS}'
    results = []
    for resource in _kubernetes_objects(resources):
        annotations = _annotations(resource.inputs)
        skip, timeout = annotations.get(SKIP_AWAIT), annotations.get(TIMEOUT_SECONDS)
        ok = str(skip).lower() == "true" or (str(timeout).isdigit() and int(str(timeout)) > 0)
        value = {key: annotations[key] for key in (SKIP_AWAIT, TIMEOUT_SECONDS) if key in annotations}
        results.append(ContractResult(resource.name, NEVER_WAITS, value or None, limit, ok))
    return results


NO_BLANKET_TOLERATION = "no-blanket-toleration"


def _pod_specs(inputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod specs of a Pod, of a workload's template, or of a CronJob's job template."""
    found = []
    for path in (("spec",), ("spec", "template", "spec"), ("spec", "jobTemplate", "spec", "template", "spec")):
        value: Any = inputs
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, Mapping) and ("containers" in value or "tolerations" in value):
            found.append(value)
    return found


def no_blanket_tolerations(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """No pod tolerates a taint without naming its key.

    Why: a toleration without a key (``operator: Exists``) matches every taint, including the
    ``node.kubernetes.io/unreachable:NoExecute`` taint the node controller puts on a dead Node, so the pod is
    never evicted from it (Kubernetes, "Taints and Tolerations": an empty key with operator Exists matches all
    keys, values and effects): a readiness proxy stays on a reclaimed spot VM forever. DaemonSet pods get the
    node-lifecycle tolerations they need from the DaemonSet controller itself.
    """
    limit = "every toleration names a taint key"
    results = []
    for resource in _kubernetes_objects(resources):
        specs = _pod_specs(resource.inputs)
        if specs:
            tolerations = [t for spec in specs for t in spec.get("tolerations") or [] if isinstance(t, Mapping)]
            blanket = [dict(t) for t in tolerations if not t.get("key")]
            results.append(ContractResult(resource.name, NO_BLANKET_TOLERATION, blanket, limit, not blanket))
    return results


def runtimes_install_on_their_python(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every pinned runtime (vLLM, Phoenix, the VM helpers) installs on the Python that runs it: the pin's
    recorded ``Requires-Python`` (PyPI's, refreshed by ``lmrun pins check``) against the CPython the mesh
    provisions or the image's own (:mod:`lmrun.domain.pins`). Why: vllm 0.33.0 needs Python >= 3.11 and the
    GPU images ship 3.10; pip then finds no version and the node never serves."""
    return [
        ContractResult(check.subject, PIN_CONTRACT, str(row["value"]), str(row["limit"]), check.ok)
        for check in runtime_pin_checks()
        for row in [check.row()]
    ]


CONTRACTS: tuple[Callable[[Iterable[PlannedResource], Mapping[str, Any]], list[ContractResult]], ...] = (
    images_are_pinned,
    kubernetes_objects_never_wait,
    no_blanket_tolerations,
    runtimes_install_on_their_python,
)


def check_contracts(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every contract over ``resources``, by resource name (stable whatever order the engine registered in)."""
    listed = sorted(resources, key=lambda resource: resource.name)
    return [result for contract in CONTRACTS for result in contract(listed, outputs)]


class ContractError(LmrunError):
    """A resource breaks a platform contract: the program declared what the platform (or the mesh's own
    rules) refuses. Not a config error: ``lmrun plan`` reports it and exits 1."""

    label = "error: contract broken"

    def __init__(self, stack: str, broken: Iterable[ContractResult]) -> None:
        self.broken = tuple(broken)
        super().__init__(f"stack {stack}: {len(self.broken)} resource(s) break a platform contract")

    def lines(self) -> list[str]:
        return [
            f"{self.label}: {result.resource}: {result.contract}: {result.value!r} is not {result.limit}"
            for result in self.broken
        ]
