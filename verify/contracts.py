"""Platform contracts, checked over every recorded resource at plan time: each a small function stating the
rule and where it comes from, returning one verdict per resource it covers (``lmrun plan --json`` lists them
under ``contracts``; the plan fails on any broken one, naming the resource and the rule).

Contracts read only resource types, inputs and the stack's outputs, so the same functions run over a mock
recording, a ``pulumi preview --json`` or a state export.

**Cannot tell.** A value a contract measures may not be in the source: a secret in a preview (``[secret]``),
or a value known only after the update (an id, a rendered text waiting on one). The contract cannot break on
what it cannot see, and it must not pretend it measured it: its row says :data:`CANNOT_TELL` as the value and
is ``ok``. A secret the source does hold (a mock recording) is measured like any other value (its size only).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lmrun.domain.errors import LmrunError
from lmrun.domain.pins import CONTRACT as PIN_CONTRACT
from lmrun.domain.pins import runtime_pin_checks
from lmrun.verify import tokens
from lmrun.verify.kubernetes_objects import (
    DENY_RULE,
    IMAGE_RULE,
    RESOURCES_RULE,
    KubeObject,
    containers,
    image_pinned,
    kubernetes_objects,
    missing_resources,
    namespace_verdicts,
    pod_specs,
    user_data_hidden,
)
from lmrun.verify.resources import get, is_unknown, plain
from lmrun.verify.user_data import EC2_USER_DATA_TYPES, user_data_payload

CANNOT_TELL = "cannot tell (secret or unknown until the update)"
"""The value of a row whose contract cannot see what it measures (see the module's docstring): ``ok``."""


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


def no_blanket_tolerations(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """No pod tolerates a taint without naming its key.

    Why: a toleration without a key (``operator: Exists``) matches every taint, including the
    ``node.kubernetes.io/unreachable:NoExecute`` taint the node controller puts on a dead Node, so the pod is
    never evicted from it (Kubernetes, "Taints and Tolerations": an empty key with operator Exists matches all
    keys, values and effects): a readiness proxy stays on a reclaimed spot VM forever. DaemonSet pods get the
    node-lifecycle tolerations they need from the DaemonSet controller itself. Every pod the stack creates is
    checked, through Pulumi or applied by a VM at boot (the GPU pool's device plugin).
    """
    limit = "every toleration names a taint key"
    results = []
    for obj in _stack_objects(resources):
        specs = pod_specs(obj.manifest)
        if specs:
            tolerations = [t for spec in specs for t in spec.get("tolerations") or [] if isinstance(t, Mapping)]
            blanket = [dict(t) for t in tolerations if not t.get("key")]
            results.append(ContractResult(obj.label, NO_BLANKET_TOLERATION, blanket, limit, not blanket))
    return results


# --- the cluster's own objects -------------------------------------------------------------------------------
IMAGE_BY_DIGEST = "container-image-by-digest"
CONTAINER_RESOURCES = "container-requests-and-limits"
NAMESPACE_DEFAULT_DENY = "namespace-default-deny"


def _stack_objects(resources: Iterable[PlannedResource]) -> list[KubeObject]:
    """Every Kubernetes object the resources create, through Pulumi or at boot
    (:mod:`lmrun.verify.kubernetes_objects`)."""
    return [obj for resource in resources for obj in kubernetes_objects(resource.type, resource.inputs, resource.name)]


def container_images_by_digest(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every container of every Kubernetes workload the stack creates runs an image pinned by digest
    (``…@sha256:<64 hex>``), one row per container.

    Why: a tag is a pointer its publisher (or whoever took over the registry account) can move; every node that
    pulls later runs whatever it points to then, unreviewed. A digest names the content: the runtime checks
    what it pulled against it and refuses anything else (OCI distribution spec, "Pulling manifests").
    """
    results = []
    for obj in _stack_objects(resources):
        for where, container in containers(obj):
            image = container.get("image")
            pinned = image_pinned(image)
            value = CANNOT_TELL if pinned is None else f"{where}: {image}"
            results.append(ContractResult(obj.label, IMAGE_BY_DIGEST, value, IMAGE_RULE, pinned is not False))
    return results


def container_resources_are_set(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every container of every Kubernetes workload the stack creates sets CPU and memory requests and
    limits, one row per container.

    Why: the mesh's pods share their VMs with the processes the mesh exists for (vLLM, Phoenix, the K3s agent):
    a container without limits can take a node's CPU or memory from them, and one without requests is
    scheduled and evicted as if it needed nothing (Kubernetes, "Resource Management for Pods and Containers").
    """
    results = []
    for obj in _stack_objects(resources):
        for where, container in containers(obj):
            missing = missing_resources(container)
            if missing:
                value = f"{where}: no {', '.join(missing)}"
            else:
                value = f"{where}: " + ", ".join(
                    f"{section} cpu={values['cpu']} memory={values['memory']}"
                    for section, values in container["resources"].items()
                    if section in ("requests", "limits")
                )
            results.append(ContractResult(obj.label, CONTAINER_RESOURCES, value, RESOURCES_RULE, not missing))
    return results


def namespaces_deny_by_default(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every namespace the stack creates or puts objects in holds a default-deny NetworkPolicy (all pods,
    Ingress and Egress, no rule), one row per namespace; "cannot tell" when it has none among the objects
    seen but some VM's user data (which may apply it at boot) is not shown.

    Why: Kubernetes admits every connection to and from a pod that no policy selects ("Network Policies": by
    default a pod is non-isolated); K3s enforces policies (its embedded kube-router controller), so a
    namespace's default-deny makes every later pod in it start isolated until an allow names what it needs.
    """
    listed = list(resources)
    hidden = any(user_data_hidden(resource.type, resource.inputs) for resource in listed)
    results = []
    for verdict in namespace_verdicts(_stack_objects(listed)):
        subject = f"namespace/{verdict.namespace}"
        if verdict.policy is not None:
            results.append(ContractResult(subject, NAMESPACE_DEFAULT_DENY, verdict.policy.label, DENY_RULE, True))
        elif hidden:
            results.append(ContractResult(subject, NAMESPACE_DEFAULT_DENY, CANNOT_TELL, DENY_RULE, True))
        else:
            value = f"no default-deny policy (namespace of {verdict.creator.label})"
            results.append(ContractResult(subject, NAMESPACE_DEFAULT_DENY, value, DENY_RULE, False))
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


# --- sizes ----------------------------------------------------------------------------------------------------
def _size(value: Any) -> int | None:
    """UTF-8 bytes of a known text value; None when it is not known (unknown, a secret not in the source)."""
    value = plain(value)
    if value is None or is_unknown(value) or not isinstance(value, str):
        return None
    return len(value.encode("utf-8"))


EC2_USER_DATA = "ec2-user-data-16kb"
EC2_USER_DATA_LIMIT = 16_384
"""AWS EC2 User Guide, "Run commands when you launch an EC2 instance with user data input": "User data is
limited to 16 KB, in raw form, before it is base64-encoded" (the launch fails otherwise). Raw means the bytes
EC2 hands the VM: the gzip when the mesh compresses it (:func:`lmrun.render.cloudinit.gzip_user_data`)."""

_USER_DATA_KEYS = ("userData", "userDataBase64")


def ec2_user_data_fits(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every EC2 instance and launch template's user data is at most 16,384 raw bytes (see
    :data:`EC2_USER_DATA_LIMIT`): the payload as sent, decoded from base64, compressed when gzip."""
    results = []
    for resource in resources:
        if resource.type not in EC2_USER_DATA_TYPES:
            continue
        payload = user_data_payload(resource)
        if payload is not None:
            results.append(
                ContractResult(
                    resource.name, EC2_USER_DATA, len(payload), EC2_USER_DATA_LIMIT, len(payload) <= EC2_USER_DATA_LIMIT
                )
            )
        elif any(resource.inputs.get(key) is not None for key in _USER_DATA_KEYS):
            results.append(ContractResult(resource.name, EC2_USER_DATA, CANNOT_TELL, EC2_USER_DATA_LIMIT, True))
    return results


GCP_METADATA_VALUE = "gcp-metadata-value-256kb"
GCP_METADATA_TOTAL = "gcp-metadata-total-512kb"
GCP_METADATA_VALUE_LIMIT = 256 * 1024
GCP_METADATA_TOTAL_LIMIT = 512 * 1024
"""Compute Engine, "About VM metadata" / "Set and remove custom metadata", Limitations: each metadata value
is at most 256 KB, and all entries (keys and values) of an instance at most 512 KB in total
(https://cloud.google.com/compute/docs/metadata/setting-custom-metadata#limitations)."""

GCP_METADATA_TYPES = frozenset({tokens.GCP_INSTANCE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE})


def gcp_metadata_fits(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every GCP instance and template: its largest metadata value ≤ 256 KB, all entries ≤ 512 KB."""
    results = []
    for resource in resources:
        if resource.type not in GCP_METADATA_TYPES:
            continue
        metadata = plain(resource.inputs.get("metadata"))
        entries: dict[str, Any] = dict(metadata) if isinstance(metadata, Mapping) else {}
        startup = resource.inputs.get("metadataStartupScript")
        if startup is not None:
            entries["startup-script"] = startup  # the provider writes it as this metadata entry
        sizes = {key: _size(value) for key, value in entries.items()}
        known = {key: size for key, size in sizes.items() if size is not None}
        largest = max(known.values(), default=0)
        results.append(
            ContractResult(
                resource.name,
                GCP_METADATA_VALUE,
                largest,
                GCP_METADATA_VALUE_LIMIT,
                largest <= GCP_METADATA_VALUE_LIMIT,
            )
        )
        total = sum(len(key.encode("utf-8")) + size for key, size in known.items())
        if len(known) < len(sizes) and total <= GCP_METADATA_TOTAL_LIMIT:
            results.append(
                ContractResult(resource.name, GCP_METADATA_TOTAL, CANNOT_TELL, GCP_METADATA_TOTAL_LIMIT, True)
            )
        else:
            results.append(
                ContractResult(
                    resource.name,
                    GCP_METADATA_TOTAL,
                    total,
                    GCP_METADATA_TOTAL_LIMIT,
                    total <= GCP_METADATA_TOTAL_LIMIT,
                )
            )
    return results


SSM_PARAMETER_SIZE = "ssm-parameter-value-size"
SSM_TIER_LIMITS = {"Standard": 4096, "Advanced": 8192, "Intelligent-Tiering": 8192}
"""AWS Systems Manager User Guide, "Managing parameter tiers": maximum size of a parameter value, Standard
4 KB, Advanced 8 KB; Intelligent-Tiering stores a value over 4 KB as an Advanced parameter (so 8 KB), and
pulumi-aws defaults ``tier`` to Standard
(https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html)."""


def ssm_parameters_fit_their_tier(
    resources: Iterable[PlannedResource], outputs: Mapping[str, Any]
) -> list[ContractResult]:
    """Every SSM parameter's value fits its tier (see :data:`SSM_TIER_LIMITS`); an unknown tier is held to
    Standard's limit, a value the source does not hold is :data:`CANNOT_TELL`."""
    results = []
    for resource in resources:
        if resource.type != tokens.SSM_PARAMETER:
            continue
        tier = get(resource.inputs, "tier") or "Standard"
        limit = SSM_TIER_LIMITS.get(str(tier), SSM_TIER_LIMITS["Standard"])
        value = resource.inputs.get("value")
        if value is None:
            value = resource.inputs.get("insecureValue")
        size = _size(value)
        label = f"{limit} bytes ({tier})"
        if size is None:
            results.append(ContractResult(resource.name, SSM_PARAMETER_SIZE, CANNOT_TELL, label, True))
        else:
            results.append(ContractResult(resource.name, SSM_PARAMETER_SIZE, size, label, size <= limit))
    return results


SECRET_PAYLOAD = "secret-payload-64kib"
SECRET_PAYLOAD_LIMIT = 65_536
"""Secret Manager, "Quotas and limits": a secret version's payload is at most 64 KiB
(https://cloud.google.com/secret-manager/quotas); AWS Secrets Manager, "Quotas": a secret value at most 65,536
bytes (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html)."""


def _secret_payload_size(resource: PlannedResource) -> int | None:
    if resource.type == tokens.AWS_SECRET_VERSION:
        text = _size(resource.inputs.get("secretString"))
        binary = get(resource.inputs, "secretBinary")
        if text is None and isinstance(binary, str):
            try:
                return len(base64.b64decode(binary, validate=True))
            except (binascii.Error, ValueError):
                return None
        return text
    data = get(resource.inputs, "secretData")
    if isinstance(data, str) and get(resource.inputs, "isSecretDataBase64") is True:
        try:
            return len(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            return None
    return _size(resource.inputs.get("secretData"))


def secret_payloads_fit(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every Secret Manager (and AWS Secrets Manager) secret version's payload is at most 64 KiB."""
    results = []
    for resource in resources:
        if resource.type not in (tokens.GCP_SECRET_VERSION, tokens.AWS_SECRET_VERSION):
            continue
        size = _secret_payload_size(resource)
        if size is None:
            results.append(ContractResult(resource.name, SECRET_PAYLOAD, CANNOT_TELL, SECRET_PAYLOAD_LIMIT, True))
        else:
            results.append(
                ContractResult(resource.name, SECRET_PAYLOAD, size, SECRET_PAYLOAD_LIMIT, size <= SECRET_PAYLOAD_LIMIT)
            )
    return results


# --- tags and labels ----------------------------------------------------------------------------------------
AWS_TAGS = "aws-tags"
AWS_TAG_KEY_MAX = 128
AWS_TAG_VALUE_MAX = 256
AWS_TAGS_PER_RESOURCE = 50
_AWS_TAG_TEXT = re.compile(r"[\w .:/=+\-@]*")
AWS_TAG_RULE = (
    f"keys 1-{AWS_TAG_KEY_MAX} and values 0-{AWS_TAG_VALUE_MAX} characters of letters, digits, spaces and "
    f"_ . : / = + - @; no aws: prefix; at most {AWS_TAGS_PER_RESOURCE} tags"
)
"""AWS "Tagging AWS resources and Tag Editor" user guide, "Tag naming limits and requirements": at most 50 tags
per resource, key 1-128 and value 0-256 Unicode characters, "letters, numbers, and spaces representable in
UTF-8, and the following characters: _ . : / = + - @", the ``aws:`` prefix reserved
(https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html). A newline is none of these."""


def _aws_tag_sets(resource: PlannedResource) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, {key: value})`` of every tag set a resource declares (known keys only)."""

    def mapping(value: Any) -> dict[str, Any]:
        value = plain(value)
        return {str(k): plain(v) for k, v in value.items()} if isinstance(value, Mapping) else {}

    inputs = resource.inputs
    tags = plain(inputs.get("tags"))
    if isinstance(tags, list):  # an auto-scaling group: [{key, value, propagateAtLaunch}]
        yield "tags", {str(get(t, "key")): get(t, "value") for t in tags if get(t, "key") is not None}
    elif isinstance(tags, Mapping):
        yield "tags", mapping(tags)
    if inputs.get("volumeTags") is not None:
        yield "volumeTags", mapping(inputs.get("volumeTags"))
    if get(inputs, "rootBlockDevice", "tags") is not None:
        yield "rootBlockDevice.tags", mapping(get(inputs, "rootBlockDevice", "tags"))
    specs = plain(inputs.get("tagSpecifications"))
    for index, spec in enumerate(specs if isinstance(specs, list) else []):
        yield f"tagSpecifications[{index}].tags", mapping(get(spec, "tags"))


def aws_tag_problem(key: str, value: Any) -> str | None:
    """Why one AWS tag is refused (None when it is fine or its value is not known)."""
    if not 1 <= len(key) <= AWS_TAG_KEY_MAX:
        return f"key {key!r} is {len(key)} characters"
    if key.lower().startswith("aws:"):
        return f"key {key!r} uses the reserved aws: prefix"
    if not _AWS_TAG_TEXT.fullmatch(key):
        return f"key {key!r} has a character outside the allowed set"
    if value is None or is_unknown(value) or not isinstance(value, str):
        return None
    if len(value) > AWS_TAG_VALUE_MAX:
        return f"{key}'s value is {len(value)} characters"
    if not _AWS_TAG_TEXT.fullmatch(value):
        return f"{key}={value!r} has a character outside the allowed set"
    return None


def _key_values_keep_rules(
    resources: Iterable[PlannedResource],
    *,
    type_prefix: str,
    sets: Callable[[PlannedResource], Iterator[tuple[str, Mapping[str, Any]]]],
    problem: Callable[[str, Any], str | None],
    per_resource: int,
    contract: str,
    rule: str,
    noun: str,
) -> list[ContractResult]:
    """For each resource of ``type_prefix`` declaring key/value sets: one row (its largest count of ``noun``),
    or one failing row per refused pair and per set over ``per_resource``."""
    results = []
    for resource in resources:
        if not resource.type.startswith(type_prefix):
            continue
        found = list(sets(resource))
        if not found:
            continue
        problems = [
            f"{where}: {why}"
            for where, pairs in found
            for key, value in pairs.items()
            if (why := problem(key, value)) is not None
        ]
        problems += [f"{where}: {len(pairs)} {noun}s" for where, pairs in found if len(pairs) > per_resource]
        if problems:
            results += [ContractResult(resource.name, contract, why, rule, False) for why in problems]
        else:
            count = max(len(pairs) for _, pairs in found)
            results.append(ContractResult(resource.name, contract, f"{count} {noun}(s)", rule, True))
    return results


def aws_tags_are_valid(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every tag of every AWS resource keeps AWS's naming rules (:data:`AWS_TAG_RULE`): one row per resource
    with tags (its tag count), plus one failing row per refused tag."""
    return _key_values_keep_rules(
        resources,
        type_prefix="aws:",
        sets=_aws_tag_sets,
        problem=aws_tag_problem,
        per_resource=AWS_TAGS_PER_RESOURCE,
        contract=AWS_TAGS,
        rule=AWS_TAG_RULE,
        noun="tag",
    )


GCP_LABELS = "gcp-labels"
GCP_LABEL_MAX = 63
GCP_LABELS_PER_RESOURCE = 64
_GCP_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_GCP_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
GCP_LABEL_RULE = (
    "keys and values at most 63 of lowercase letters, digits, _ and -; keys start with a letter; at most 64 labels"
)
"""Compute Engine, "Organize resources using labels", Requirements for labels: at most 64 labels; keys and
values at most 63 characters of lowercase letters, numeric characters, underscores and dashes; keys start
with a lowercase letter and are never empty (https://cloud.google.com/compute/docs/labeling-resources)."""


def _gcp_label_sets(resource: PlannedResource) -> Iterator[tuple[str, Mapping[str, Any]]]:
    inputs = resource.inputs
    candidates: list[tuple[str, Any]] = [("labels", inputs.get("labels"))]
    candidates.append(("bootDisk.initializeParams.labels", get(inputs, "bootDisk", "initializeParams", "labels")))
    disks = plain(inputs.get("disks"))
    for index, disk in enumerate(disks if isinstance(disks, list) else []):
        candidates.append((f"disks[{index}].labels", get(disk, "labels")))
    for where, value in candidates:
        value = plain(value)
        if isinstance(value, Mapping):
            yield where, {str(k): plain(v) for k, v in value.items()}


def gcp_label_problem(key: str, value: Any) -> str | None:
    """Why one GCP label is refused (None when it is fine or its value is not known)."""
    if not _GCP_LABEL_KEY.fullmatch(key):
        return f"key {key!r} is not 1-63 of [a-z0-9_-] starting with a letter"
    if value is None or is_unknown(value) or not isinstance(value, str):
        return None
    if not _GCP_LABEL_VALUE.fullmatch(value):
        return f"{key}={value!r} is not 0-63 of [a-z0-9_-]"
    return None


def gcp_labels_are_valid(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every label of every GCP resource keeps GCP's rules (:data:`GCP_LABEL_RULE`)."""
    return _key_values_keep_rules(
        resources,
        type_prefix="gcp:",
        sets=_gcp_label_sets,
        problem=gcp_label_problem,
        per_resource=GCP_LABELS_PER_RESOURCE,
        contract=GCP_LABELS,
        rule=GCP_LABEL_RULE,
        noun="label",
    )


# --- names ----------------------------------------------------------------------------------------------------
RESOURCE_NAMES = "resource-name"


@dataclass(frozen=True)
class NameRule:
    """A service's rule for one name input: a pattern (matched whole) and lengths, and where it is written."""

    pattern: str
    min_length: int
    max_length: int
    source: str

    @property
    def limit(self) -> str:
        return f"{self.min_length}-{self.max_length} characters of {self.pattern}"

    def ok(self, name: str) -> bool:
        return self.min_length <= len(name) <= self.max_length and re.fullmatch(self.pattern, name) is not None


_IAM = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
_RFC1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_GCP_NAMES = "https://cloud.google.com/compute/docs/naming-resources"
_GCP_NAMED = (
    tokens.GCP_NETWORK,
    tokens.GCP_SUBNETWORK,
    tokens.GCP_ROUTE,
    tokens.GCP_FIREWALL,
    tokens.GCP_INSTANCE,
    tokens.GCP_INSTANCE_TEMPLATE,
    tokens.GCP_REGION_INSTANCE_TEMPLATE,
    tokens.GCP_ADDRESS,
    tokens.GCP_INSTANCE_GROUP_MANAGER,
    tokens.GCP_REGION_INSTANCE_GROUP_MANAGER,
)
NAME_RULES: dict[tuple[str, str], NameRule] = {
    # IAM quotas: role name 64 characters, instance profile name 128, of [\w+=,.@-]; the provider's
    # name_prefix leaves 26 characters for its suffix (38 for a role's prefix).
    (tokens.IAM_ROLE, "name"): NameRule(r"[\w+=,.@-]+", 1, 64, _IAM),
    (tokens.IAM_ROLE, "namePrefix"): NameRule(r"[\w+=,.@-]+", 1, 38, _IAM),
    (tokens.IAM_INSTANCE_PROFILE, "name"): NameRule(r"[\w+=,.@-]+", 1, 128, _IAM),
    (tokens.IAM_INSTANCE_PROFILE, "namePrefix"): NameRule(r"[\w+=,.@-]+", 1, 102, _IAM),
    # CreateSecurityGroup: "Up to 255 characters in length. Cannot start with sg-." (ASCII in a VPC).
    (tokens.SECURITY_GROUP, "name"): NameRule(
        r"(?!sg-)[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+",
        1,
        255,
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html",
    ),
    # CreateLaunchTemplate: LaunchTemplateName 3-128 of [a-zA-Z0-9().-/_].
    (tokens.LAUNCH_TEMPLATE, "name"): NameRule(
        r"[a-zA-Z0-9().\-/_]+",
        3,
        128,
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html",
    ),
    # SSM PutParameter: a name of at most 1011 characters (2048 with the ARN prefix) of [a-zA-Z0-9_.\-/].
    (tokens.SSM_PARAMETER, "name"): NameRule(
        r"[a-zA-Z0-9_.\-/]+",
        1,
        1011,
        "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html",
    ),
    # GCP service account ids: 6-30 lowercase letters, digits and dashes, starting with a letter.
    (tokens.GCP_SERVICE_ACCOUNT, "accountId"): NameRule(
        r"[a-z]([-a-z0-9]*[a-z0-9])", 6, 30, "https://cloud.google.com/iam/docs/service-accounts-create"
    ),
    # GCP instance groups: the base instance name leaves room for the group's -xxxx suffix (58 of RFC 1035).
    (tokens.GCP_INSTANCE_GROUP_MANAGER, "baseInstanceName"): NameRule(_RFC1035, 1, 58, _GCP_NAMES),
    (tokens.GCP_REGION_INSTANCE_GROUP_MANAGER, "baseInstanceName"): NameRule(_RFC1035, 1, 58, _GCP_NAMES),
    # pulumi-gcp instance templates: "name_prefix ... Max length is 54 characters".
    (tokens.GCP_INSTANCE_TEMPLATE, "namePrefix"): NameRule(r"[a-z][-a-z0-9]*", 1, 54, _GCP_NAMES),
    (tokens.GCP_REGION_INSTANCE_TEMPLATE, "namePrefix"): NameRule(r"[a-z][-a-z0-9]*", 1, 54, _GCP_NAMES),
    # Compute Engine resource names: RFC 1035, 1-63 characters.
    **{(type_, "name"): NameRule(_RFC1035, 1, 63, _GCP_NAMES) for type_ in _GCP_NAMED},
}
"""Every ``(type token, name input)`` the stack may set explicitly, with the service's rule (source beside it).
S3 bucket names are in :data:`S3_BUCKET_RULE` (both ``bucket`` and ``bucketPrefix``)."""
S3_BUCKET_RULE = NameRule(
    r"[a-z0-9][a-z0-9.-]*[a-z0-9]",
    3,
    63,
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
)
"""S3 general purpose bucket naming rules: 3-63 characters of lowercase letters, digits, dots and hyphens,
beginning and ending with a letter or digit; the provider's bucket_prefix leaves 26 characters for its suffix."""
S3_BUCKET_PREFIX_RULE = NameRule(r"[a-z0-9][a-z0-9.-]*", 1, 37, S3_BUCKET_RULE.source)
for _bucket in tokens.S3_BUCKETS:
    NAME_RULES[(_bucket, "bucket")] = S3_BUCKET_RULE
    NAME_RULES[(_bucket, "bucketPrefix")] = S3_BUCKET_PREFIX_RULE


def names_are_valid(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """Every name the stack sets explicitly (a known ``name``, ``namePrefix``, ``bucket``, ``accountId``...)
    keeps its service's length and character rule (:data:`NAME_RULES`); auto-names are the provider's."""
    results = []
    for resource in resources:
        for (type_, key), rule in NAME_RULES.items():
            if type_ != resource.type:
                continue
            name = get(resource.inputs, key)
            if isinstance(name, str):
                results.append(
                    ContractResult(resource.name, f"{RESOURCE_NAMES}:{key}", name, rule.limit, rule.ok(name))
                )
    return results


def skypilot_config_names(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """The SkyPilot config's names and ingress against the resources (:mod:`lmrun.verify.skypilot`)."""
    from lmrun.verify.skypilot import skypilot_names_exist  # it builds on this module's result types

    return skypilot_names_exist(resources, outputs)


# --- IAM policy size ------------------------------------------------------------------------------------------
IAM_ROLE_POLICY_SIZE = "iam-role-inline-policy-size"
IAM_ROLE_POLICY_LIMIT = 10_240
"""IAM User Guide, "IAM and AWS STS quotas": a role's inline policies together at most 10,240 characters, white
space not counted (PutRolePolicy fails with LimitExceeded beyond it). Each role's Deny lists its reads, so the
policy grows with what a machine reads."""
_WHITE_SPACE = re.compile(r"\s")


def iam_role_policies_fit(resources: Iterable[PlannedResource], outputs: Mapping[str, Any]) -> list[ContractResult]:
    """One row per role with inline policies: their characters (white space left out) against the role's quota."""
    sizes: dict[str, int | None] = {}
    names: dict[str, str] = {}
    for resource in resources:
        if resource.type != tokens.IAM_ROLE_POLICY:
            continue
        role = get(resource.inputs, "role")
        key = str(role) if isinstance(role, str) and not is_unknown(role) else resource.name
        names.setdefault(key, resource.name)
        document = get(resource.inputs, "policy")
        size = None if not isinstance(document, str) or is_unknown(document) else len(_WHITE_SPACE.sub("", document))
        known = sizes.get(key, 0)
        sizes[key] = None if size is None or known is None else known + size
    return [
        ContractResult(
            names[key],
            IAM_ROLE_POLICY_SIZE,
            CANNOT_TELL if size is None else size,
            IAM_ROLE_POLICY_LIMIT,
            size is None or size <= IAM_ROLE_POLICY_LIMIT,
        )
        for key, size in sizes.items()
    ]


CONTRACTS: tuple[Callable[[Iterable[PlannedResource], Mapping[str, Any]], list[ContractResult]], ...] = (
    images_are_pinned,
    kubernetes_objects_never_wait,
    no_blanket_tolerations,
    container_images_by_digest,
    container_resources_are_set,
    namespaces_deny_by_default,
    runtimes_install_on_their_python,
    ec2_user_data_fits,
    gcp_metadata_fits,
    ssm_parameters_fit_their_tier,
    secret_payloads_fit,
    iam_role_policies_fit,
    aws_tags_are_valid,
    gcp_labels_are_valid,
    names_are_valid,
    skypilot_config_names,
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
