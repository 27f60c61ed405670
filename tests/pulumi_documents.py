"""Preview and state documents built from a mock recording, in the shapes the Pulumi CLI writes them.

- ``pulumi preview --json``: a ``PreviewDigest`` (sdk/go/common/display/json.go): ``config``, ``steps[]`` of
  ``{op, urn, provider, newState}`` where ``newState`` is an ``apitype.ResourceV3`` (sdk/go/common/apitype/
  core.go). A first preview creates everything: no ids, every value computed from another resource (here:
  every input that holds a recorded id) is the engine's unknown sentinel, providers are referenced as
  ``<urn>::<unknown>``, and the display shows each secret as ``[secret]`` (pkg/backend/display/json.go) unless
  ``--show-secrets``. The root stack's step carries the stack outputs only when the stack already has them.
- ``pulumi stack export``: ``{"version": 3, "deployment": {"manifest", "resources"}}`` with ids, inputs and
  outputs; secrets as ``apitype.SecretV1`` envelopes (``plaintext`` with ``--show-secrets``, else
  ``ciphertext``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lmrun.mock_engine import RecordedResource, Recording, Secret

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
MOCK_UNKNOWN = "[unknown]"


def _encode(value: Any, *, ids: frozenset[str], secrets: str) -> Any:
    """``secrets``: ``blind`` (preview), ``plain`` (preview --show-secrets), ``plaintext``/``ciphertext``
    (state export with/without --show-secrets)."""
    if isinstance(value, Secret):
        inner = _encode(value.value, ids=ids, secrets=secrets)
        if secrets == "blind":
            return "[secret]"
        if secrets == "plain":
            return inner
        if secrets == "plaintext":
            return {SIG_KEY: SECRET_SIG, "plaintext": json.dumps(inner)}
        return {SIG_KEY: SECRET_SIG, "ciphertext": "v1:bm90LWEtcmVhbC1jaXBoZXJ0ZXh0"}
    if isinstance(value, Mapping):
        return {key: _encode(item, ids=ids, secrets=secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item, ids=ids, secrets=secrets) for item in value]
    if isinstance(value, str) and (value == MOCK_UNKNOWN or value in ids):
        return UNKNOWN
    return value


def _stack_urn(recording: Recording) -> str:
    stack, project = recording.resources[0].urn.removeprefix("urn:pulumi:").split("::")[:2]
    return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"


def _state(resource: RecordedResource, *, ids: frozenset[str], secrets: str, known: bool) -> dict[str, Any]:
    provider_id = UNKNOWN
    state: dict[str, Any] = {
        "urn": resource.urn,
        "custom": resource.custom,
        "type": resource.type,
        "inputs": _encode(resource.inputs, ids=ids, secrets=secrets),
        "outputs": _encode(resource.outputs if known else resource.inputs, ids=ids, secrets=secrets),
        "parent": resource.parent,
        "dependencies": list(resource.dependencies),
        "propertyDependencies": {key: list(urns) for key, urns in resource.property_dependencies.items()},
    }
    if known and resource.id:
        state["id"] = resource.id
    if resource.provider:
        urn, _, real_id = resource.provider.rpartition("::")
        provider_id = real_id if known else UNKNOWN
        state["provider"] = f"{urn}::{provider_id}"
    if resource.protect:
        state["protect"] = True
    if resource.retain_on_delete:
        state["retainOnDelete"] = True
    return state


def preview_document(
    recording: Recording, config: Mapping[str, str], *, show_secrets: bool = False, stack_outputs: bool = False
) -> dict[str, Any]:
    """A first ``pulumi preview --json`` of the recorded program (every resource a ``create``)."""
    ids = frozenset(r.id for r in recording.resources if r.id)
    secrets = "plain" if show_secrets else "blind"
    root = _stack_urn(recording)
    outputs = _encode(recording.outputs, ids=frozenset(), secrets=secrets) if stack_outputs else {}
    steps: list[dict[str, Any]] = [
        {
            "op": "same" if stack_outputs else "create",
            "urn": root,
            "newState": {"urn": root, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": outputs},
        }
    ]
    for resource in recording.resources:
        state = _state(resource, ids=ids, secrets=secrets, known=False)
        steps.append({"op": "create", "urn": resource.urn, "provider": state.get("provider", ""), "newState": state})
    blinded = {key: "[secret]" if key.endswith("huggingFaceToken") else value for key, value in config.items()}
    return {
        "config": blinded,
        "steps": steps,
        "changeSummary": {"create": len(recording.resources), **({"same": 1} if stack_outputs else {})},
        "duration": 4200000000,
    }


def state_document(recording: Recording, *, show_secrets: bool = True) -> dict[str, Any]:
    """``pulumi stack export`` of the recorded program after ``pulumi up`` (ids and outputs known)."""
    secrets = "plaintext" if show_secrets else "ciphertext"
    root = _stack_urn(recording)
    resources: list[dict[str, Any]] = [
        {
            "urn": root,
            "custom": False,
            "type": "pulumi:pulumi:Stack",
            "outputs": _encode(recording.outputs, ids=frozenset(), secrets=secrets),
        }
    ]
    resources += [_state(r, ids=frozenset(), secrets=secrets, known=True) for r in recording.resources]
    return {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-11-25T10:00:00Z", "magic": "0" * 64, "version": "v3.200.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:c2FsdA=="}},
            "resources": resources,
        },
    }
