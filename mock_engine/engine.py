"""A recording mock engine: run a Pulumi program offline and get back every resource it declared.

Used by ``lmrun plan`` and by the tests, and importable by users of the components for their own tests::

    from lmrun.mock_engine import run_program

    recording = run_program(lambda: MyComponent("x", args=...), config={"lmrun:mainRegion": "us-east-1"})
    assert recording.by_type("aws:ec2/vpc:Vpc")

Each run happens in a fresh ``contextvars.Context`` so runs never share a root stack, config or settings.
Lookups (invokes) fail unless a handler is registered for their token: a silent default would hide a
blocking or unintended lookup.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from lmrun.domain.errors import LmrunError

SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key


UNKNOWN = "[unknown]"
"""What an input the engine cannot know yet (in preview) is recorded as."""


@dataclass(frozen=True)
class Secret:
    """A value the program marked secret (inputs and outputs keep the mark)."""

    value: Any

    def __repr__(self) -> str:
        return "Secret([secret])"


@dataclass(frozen=True)
class RecordedResource:
    """One registered resource as the engine saw it."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    """Inputs as sent to the engine (camelCase keys); secret values are wrapped in :class:`Secret`."""
    parent: str
    dependencies: tuple[str, ...]
    provider: str
    """``urn::id`` of the provider the resource uses ('' for components and default providers)."""
    custom: bool
    protect: bool
    retain_on_delete: bool
    id: str | None = None
    """The id the mocks gave it (None for components, which have none)."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """Its state as the mocks answered it (inputs echoed, plus computed outputs), secrets wrapped."""
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per input property, the URNs of the resources its value came from (Pulumi's ``propertyDependencies``):
    how a reference is resolved when the id it holds is not known (a real preview)."""
    aliases: tuple[str, ...] = ()
    """Earlier names the resource answers to (its ``aliases`` option: a URN, or the alias's name), so an upgrade
    adopts the old resource instead of replacing it."""

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def is_provider(self) -> bool:
        return self.type.startswith("pulumi:providers:")


def unwrap_secrets(value: Any) -> Any:
    """Plain data from deserialized RPC properties: the secret envelope becomes :class:`Secret`, unknowns
    (preview) become :data:`UNKNOWN`, and whole-number floats (protobuf has only doubles) become ints."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return Secret(unwrap_secrets(value.get("value")))
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.output.Unknown) or (isinstance(value, str) and value == rpc.UNKNOWN):
        return UNKNOWN
    return value


def redact(value: Any, placeholder: str = "[secret]") -> Any:
    """Plain data with every :class:`Secret` replaced by ``placeholder`` (for printing and JSON)."""
    if isinstance(value, Secret):
        return placeholder
    if isinstance(value, dict):
        return {key: redact(item, placeholder) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, placeholder) for item in value]
    return value


def plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string reachable from ``value`` that is NOT inside a :class:`Secret`, with its path: the place to
    look for a secret that leaked into plain inputs or outputs."""
    if isinstance(value, Secret):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from plain_strings(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from plain_strings(item, f"{path}[{index}]")


class UnmockedCallError(LmrunError):
    """The program called a lookup that no handler answers."""


CallHandler = Callable[[Mapping[str, Any]], dict[str, Any]]
ComputedOutputs = Callable[[pulumi.runtime.MockResourceArgs], dict[str, Any]]


@dataclass(frozen=True)
class RecordedCall:
    """One lookup (invoke) the program made."""

    token: str
    args: dict[str, Any]
    provider: str
    """``urn::id`` of the provider the lookup went through ('' for a default provider)."""


class RecordingMocks(pulumi.runtime.Mocks):
    """Resources echo their inputs as state, with an id (``<name>-id`` unless ``ids`` has a maker for the
    type, for ids that must look real) and any ``computed`` outputs for their type; invokes must have a
    registered handler and are recorded."""

    def __init__(
        self,
        calls: Mapping[str, CallHandler] | None = None,
        computed: Mapping[str, ComputedOutputs] | None = None,
        ids: Mapping[str, Callable[[pulumi.runtime.MockResourceArgs], str]] | None = None,
    ) -> None:
        self.calls = dict(calls or {})
        self.computed = dict(computed or {})
        self.ids = dict(ids or {})
        self.recorded_calls: list[RecordedCall] = []
        self._lock = threading.Lock()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        make_id = self.ids.get(args.typ)
        resource_id = args.resource_id or (make_id(args) if make_id else f"{args.name}-id")
        if args.typ in self.computed:
            for key, value in self.computed[args.typ](args).items():
                state.setdefault(key, value)
        state.setdefault("arn", f"arn:mock:{args.typ}:{args.name}")
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        with self._lock:
            self.recorded_calls.append(RecordedCall(args.token, dict(args.args), args.provider))
        handler = self.calls.get(args.token)
        if handler is None:
            raise UnmockedCallError(f"no mock for lookup {args.token!r}; register one in RecordingMocks(calls=...)")
        return handler(args.args), []


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Mock monitor that records every registration (they arrive on worker threads, hence the lock)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self._lock = threading.Lock()
        self.records: list[RecordedResource] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            inputs = unwrap_secrets(rpc.deserialize_properties(request.object, keep_unknowns=True))
            outputs = unwrap_secrets(rpc.deserialize_properties(response.object, keep_unknowns=True))
            record = RecordedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                inputs=inputs,
                parent=request.parent,
                dependencies=tuple(request.dependencies),
                provider=request.provider,
                custom=bool(request.custom),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                id=(response.id or None) if request.custom else None,
                outputs=outputs,
                property_dependencies={
                    key: tuple(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
                },
                aliases=tuple(alias.urn or alias.spec.name for alias in request.aliases),
            )
            with self._lock:
                self.records.append(record)
        return response


@dataclass
class Recording:
    """What one program run declared: resources in registration order, and the stack's exports."""

    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    calls: list[RecordedCall] = field(default_factory=list)

    def by_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children(self, parent: RecordedResource) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    @property
    def custom(self) -> list[RecordedResource]:
        """Cloud resources: custom resources that are not providers."""
        return [r for r in self.resources if r.custom and not r.is_provider]


async def _resolve_exports(exports: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in exports.items():
        output = pulumi.Output.from_input(value)
        plain = await output.future(with_unknowns=True)
        resolved[key] = Secret(plain) if await output.is_secret() else plain
    return resolved


def _run(
    program: Callable[[], object],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str],
    secret_keys: Iterable[str],
    preview: bool,
    mocks: pulumi.runtime.Mocks,
) -> Recording:
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    # set_mocks gives each run its own RPC manager but not its own set of pending outputs: without this, a
    # run that failed leaves its outputs behind, and the next run awaits them and fails with the old error.
    SETTINGS.outputs = set()
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    _sync_await(run_pulumi_func(program))  # type: ignore[arg-type]
    root = get_root_resource()
    exports = getattr(root, "outputs", {}) or {}
    outputs = _sync_await(_resolve_exports(exports))
    calls = list(mocks.recorded_calls) if isinstance(mocks, RecordingMocks) else []
    return Recording(resources=list(monitor.records), outputs=outputs, calls=calls)


def run_program(
    program: Callable[[], object],
    *,
    project: str = "lmrun",
    stack: str = "dev",
    config: Mapping[str, str] | None = None,
    secret_keys: Iterable[str] = (),
    preview: bool = False,
    mocks: pulumi.runtime.Mocks | None = None,
) -> Recording:
    """Run ``program`` under the mock engine and return what it registered.

    ``config`` is the flat Pulumi config map (``{"lmrun:mainRegion": "us-east-1"}``, values as strings or
    JSON strings, as the engine passes them). Exceptions raised by the program propagate unchanged.
    """
    context = contextvars.Context()
    return context.run(
        _run,
        program,
        project=project,
        stack=stack,
        config=config or {},
        secret_keys=secret_keys,
        preview=preview,
        mocks=mocks or RecordingMocks(),
    )
