"""Adapters from each place resources are recorded to the one reader (:mod:`lmrun.verify.resources`).

Why: the checks must not care who recorded a stack. Four sources exist:

- the mock engine's :class:`lmrun.mock_engine.Recording` (``lmrun plan``): ids, inputs, outputs and
  ``propertyDependencies`` as the program registered them;
- ``pulumi preview --json``: a ``PreviewDigest`` (sdk/go/common/display/json.go) whose ``steps[]`` carry
  ``newState``/``oldState`` as ``apitype.ResourceV3`` (sdk/go/common/apitype/core.go: ``urn, custom, id,
  type, inputs, outputs, parent, protect, dependencies, provider, propertyDependencies, retainOnDelete``).
  Resources the update will create have no id yet, and values computed from them are the engine's unknown
  sentinel ``04da6b54-80e4-46f7-96ec-b56ff0331ba9``; the display replaces every secret with the string
  ``[secret]`` (pkg/backend/display/json.go, ``stateForJSONOutput``). The digest also holds the stack's
  ``config`` (secrets blinded) but no stack outputs: the root stack's step is taken before they exist.
  Unchanged resources appear only with ``--show-sames`` (``shouldShow``, pkg/backend/display), and the checks
  need every resource: a digest whose ``changeSummary`` counts sames it does not show is refused;
- ``pulumi stack export``: an ``UntypedDeployment`` (``{"version": 3, "deployment": DeploymentV3}``) whose
  ``deployment.resources[]`` are ResourceV3 with ids and outputs; the root ``pulumi:pulumi:Stack`` resource's
  outputs are the stack outputs. Secrets are ``{"4dabf18193072939515e22adb298388d":
  "1b47061264138c4ac30d75fd1eb44270", "ciphertext"|"plaintext": ...}`` (``apitype.SecretV1``;
  ``--show-secrets`` gives the plaintext, itself JSON);
- CrossGuard's ``PolicyResource`` / ``ResourceValidationArgs`` (``pulumi preview --policy-pack``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmrun.domain.errors import InputError
from lmrun.mock_engine.engine import RecordedResource, Recording, Secret
from lmrun.verify import tokens
from lmrun.verify.resources import UNKNOWN, UNKNOWN_TEXT, Resource, Snapshot, is_unknown

SIG_KEY = "4dabf18193072939515e22adb298388d"
"""``resource.SigKey``: the key that marks a special value (secret, asset, archive, resource reference)."""
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
"""``resource.SecretSig``."""
RESOURCE_REFERENCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
"""``resource.ResourceReferenceSig``: ``{urn, id?, packageVersion}``; a reference reads as the resource's id."""
BLINDED_SECRET = "[secret]"
"""What ``pulumi preview --json`` shows instead of a secret value."""
DELETING_OPS = frozenset({"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace"})
"""Preview steps whose resource is gone after the update (they carry no ``newState``)."""


class DocumentError(InputError):
    """A file given to ``lmrun check`` is not the document its option promises (the message names both)."""


def snapshot_of(source: Snapshot | Recording | Iterable[Resource | RecordedResource], outputs: Any = None) -> Snapshot:
    """Any source the checks accept, as a :class:`Snapshot` (``outputs``, when given, are the stack's)."""
    if isinstance(source, Snapshot):
        return source if outputs is None else Snapshot(source.resources, outputs, source=source.source)
    if isinstance(source, Recording):
        return from_recording(source, outputs)
    records = [r if isinstance(r, Resource) else Resource.from_recorded(r) for r in source]
    return Snapshot(records, outputs, source="mock recording")


def from_recording(recording: Recording, outputs: Mapping[str, Any] | None = None) -> Snapshot:
    """The mock engine's recording (``outputs`` default to the program's exports)."""
    records = [Resource.from_recorded(r) for r in recording.resources]
    return Snapshot(records, recording.outputs if outputs is None else outputs, source="mock recording")


# --------------------------------------------------------------------------------------------------------------
# JSON documents of the Pulumi CLI


def decode_value(value: Any) -> Any:
    """A property value as the CLI serializes it, as the reader's plain data: secrets marked (a secret whose
    plaintext is not in the document is an unknown secret), unknown sentinels as the mock engine's
    :data:`~lmrun.verify.resources.UNKNOWN_TEXT` (so every source prints unknowns alike), whole numbers as
    ints (Pulumi numbers are doubles)."""
    if isinstance(value, Mapping):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            if "plaintext" in value:
                try:
                    return Secret(decode_value(json.loads(str(value["plaintext"]))))
                except json.JSONDecodeError:
                    return Secret(str(value["plaintext"]))
            return Secret(UNKNOWN_TEXT)
        if sig == RESOURCE_REFERENCE_SIG:
            return decode_value(value.get("id", UNKNOWN_TEXT))
        return {str(key): decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if value == BLINDED_SECRET:
            return Secret(UNKNOWN_TEXT)
        if is_unknown(value):
            return UNKNOWN_TEXT
    return value


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def resource_from_state(state: Mapping[str, Any]) -> Resource:
    """One ``apitype.ResourceV3`` as a record."""
    urn = str(state.get("urn") or "")
    raw_id = state.get("id")
    inputs = decode_value(state.get("inputs") or {})
    outputs = decode_value(state.get("outputs") or {})
    property_dependencies = state.get("propertyDependencies") or {}
    return Resource(
        type=str(state.get("type") or ""),
        inputs=inputs if isinstance(inputs, dict) else {},
        urn=urn,
        name=_name_of(urn),
        id=str(raw_id) if raw_id and not is_unknown(raw_id) else None,
        outputs=outputs if isinstance(outputs, dict) else {},
        parent=str(state.get("parent") or ""),
        provider=str(state.get("provider") or ""),
        dependencies=_strings(state.get("dependencies")),
        property_dependencies={
            str(key): _strings(urns)
            for key, urns in (property_dependencies.items() if isinstance(property_dependencies, Mapping) else ())
        },
        custom=bool(state.get("custom", True)),
        protect=bool(state.get("protect", False)),
        retain_on_delete=bool(state.get("retainOnDelete", False)),
    )


def _stack_outputs(records: Sequence[Resource]) -> dict[str, Any]:
    for record in records:
        if record.type == tokens.STACK:
            return dict(record.outputs)
    return {}


def from_preview(document: Any) -> tuple[Snapshot, dict[str, str]]:
    """A ``pulumi preview --json`` document: the resources the stack will hold after the update (each URN's
    last ``newState``), and the digest's ``config`` (flat ``project:key`` map, secrets blinded).

    Raises :class:`DocumentError` when the document is not a preview digest.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("steps"), list):
        raise DocumentError('not a `pulumi preview --json` document (no "steps" list)')
    states: dict[str, Mapping[str, Any]] = {}
    for index, step in enumerate(document["steps"]):
        if not isinstance(step, Mapping) or not isinstance(step.get("urn"), str):
            raise DocumentError(f"steps[{index}] is not a preview step (no urn)")
        new_state = step.get("newState")
        if step.get("op") in DELETING_OPS or not isinstance(new_state, Mapping):
            continue
        states[step["urn"]] = new_state
    summary = document.get("changeSummary")
    unchanged = summary.get("same", 0) if isinstance(summary, Mapping) else 0
    if unchanged and not any(isinstance(s, Mapping) and s.get("op") == "same" for s in document["steps"]):
        raise DocumentError(
            f"the preview leaves out its {unchanged} unchanged resource(s), which the checks need: "
            "run `pulumi preview --json --show-sames`"
        )
    records = [resource_from_state(state) for state in states.values()]
    config = document.get("config")
    flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (config or {}).items()}
    resources = [r for r in records if r.type != tokens.STACK]
    return Snapshot(resources, _stack_outputs(records), source="preview"), flat


def from_state(document: Any) -> Snapshot:
    """A ``pulumi stack export`` document (or its ``deployment``): every resource not pending deletion, and the
    root stack's outputs as the stack outputs.

    Raises :class:`DocumentError` when the document is not a deployment.
    """
    deployment = document.get("deployment") if isinstance(document, Mapping) and "deployment" in document else document
    if (
        not isinstance(deployment, Mapping)
        or not ({"resources", "manifest"} & set(deployment))
        or not isinstance(deployment.get("resources", []), list)
    ):
        raise DocumentError('not a `pulumi stack export` document (no "deployment.resources" list)')
    records = []
    for index, state in enumerate(deployment.get("resources") or []):
        if not isinstance(state, Mapping) or not isinstance(state.get("urn"), str) or "type" not in state:
            raise DocumentError(f"deployment.resources[{index}] is not a resource (no urn or type)")
        if state.get("delete") or state.get("pendingReplacement"):
            continue
        records.append(resource_from_state(state))
    resources = [r for r in records if r.type != tokens.STACK]
    return Snapshot(resources, _stack_outputs(records), source="state")


def read_document(path: Path, argument: str) -> Any:
    """The JSON document in ``path``; :class:`DocumentError` naming ``argument`` when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{argument} {path}: {exc}") from exc


def stack_of(snapshot: Snapshot) -> tuple[str, str] | None:
    """(stack, project) from the resources' URNs (``urn:pulumi:<stack>::<project>::...``)."""
    for resource in snapshot.resources:
        parts = resource.urn.split("::")
        if len(parts) >= 3 and parts[0].startswith("urn:pulumi:"):
            return parts[0].removeprefix("urn:pulumi:"), parts[1]
    return None


# --------------------------------------------------------------------------------------------------------------
# CrossGuard


def crossguard_plain(value: Any) -> Any:
    """CrossGuard's unknown-checking proxies as plain dicts/lists, unknown values as :data:`UNKNOWN`."""
    from pulumi_policy.proxy import UnknownValueError

    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            try:
                result[key] = crossguard_plain(value[key])
            except UnknownValueError:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        found: list[Any] = []
        for index in range(len(value)):
            try:
                found.append(crossguard_plain(value[index]))
            except UnknownValueError:
                found.append(UNKNOWN)
        return found
    return value


def from_policy_resource(resource: Any) -> Resource:
    """A CrossGuard ``PolicyResource`` (stack validation) or ``ResourceValidationArgs`` (resource validation)
    as a record. CrossGuard hands inputs with secrets unwrapped, and no ``retainOnDelete``."""
    opts = getattr(resource, "opts", None)
    dependencies = getattr(resource, "dependencies", None) or []
    property_dependencies = getattr(resource, "property_dependencies", None) or {}
    return Resource(
        type=resource.resource_type,
        inputs=crossguard_plain(resource.props),
        urn=resource.urn or "",
        name=resource.name or "",
        protect=bool(getattr(opts, "protect", False)),
        retain_on_delete=None,
        dependencies=tuple(d.urn for d in dependencies),
        property_dependencies={key: tuple(d.urn for d in deps) for key, deps in property_dependencies.items()},
    )
