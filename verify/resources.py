"""One record of a resource, one set of value accessors, and references resolved without any id scheme.

Why: policy, cost and reachability read the same resources, and must read them the same way whether a mock
recording (``lmrun plan``), a ``pulumi preview --json`` document or a ``pulumi stack export`` recorded them
(:mod:`lmrun.verify.sources` adapts each into :class:`Resource` records inside a :class:`Snapshot`).

- **Values**: inputs keep Pulumi's camelCase keys. A secret stays marked (:class:`Secret`) in
  :attr:`Resource.inputs` and is unwrapped in :attr:`Resource.props` and by every accessor; a value not
  known yet (a preview) is :data:`UNKNOWN` or one of the engine's unknown sentinels, and the accessors
  (:func:`get`, :func:`items`, :func:`flag`, :func:`integer`, :func:`number`, :func:`network`) read it as
  missing, so a check skips what it cannot see.
- **References**: an input such as a route's ``routeTableId`` holds the referenced resource's id when it is
  known, and :meth:`Snapshot.refs` finds it by id. When the id is not known (every resource a preview will
  create) or names nothing in the snapshot, the reference resolves through the resource's
  ``propertyDependencies``: for each input property Pulumi records the URNs its value came from
  (``apitype.ResourceV3.PropertyDependencies``, sdk/go/common/apitype/core.go). A dependency of another
  type that carries a property of the same name is followed once more: a route's
  ``vpcPeeringConnectionId`` comes from the accepter's output of that name, which comes from the peering.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from lmrun.mock_engine.engine import UNKNOWN as MOCK_UNKNOWN
from lmrun.mock_engine.engine import RecordedResource, Secret
from lmrun.verify import tokens

__all__ = [
    "UNKNOWN",
    "UNKNOWN_TEXT",
    "Resource",
    "Secret",
    "Snapshot",
    "flag",
    "get",
    "integer",
    "is_unknown",
    "items",
    "network",
    "number",
    "plain",
    "unwrap",
]


class _Unknown:
    """A value that is not known yet (preview): checks skip what they cannot see."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""An unknown value as CrossGuard's adapter hands it (its proxies raise on unknowns)."""
UNKNOWN_TEXT = MOCK_UNKNOWN
"""An unknown value as the mock engine records it, and as the preview and state adapters decode the engine's
sentinel: plain text, so a report prints it as it is."""

UNKNOWN_STRINGS = frozenset(
    {
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # the engine's computed-value sentinel (preview --json, gRPC)
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # CrossGuard's unknown bool/number/array/asset sentinels
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
        MOCK_UNKNOWN,
    }
)
"""The unknown sentinels of the Pulumi engine and CrossGuard, and the mock engine's placeholder."""


def is_unknown(value: Any) -> bool:
    """Whether ``value`` stands for something only known after the update."""
    if value is UNKNOWN:
        return True
    if isinstance(value, str):
        return value in UNKNOWN_STRINGS
    return type(value).__name__ == "Unknown" and type(value).__module__.startswith("pulumi")


def plain(value: Any) -> Any:
    """``value`` without its secret mark (only the outer one; see :func:`unwrap` for nested values)."""
    while isinstance(value, Secret):
        value = value.value
    return value


def unwrap(value: Any) -> Any:
    """Plain data with every secret mark removed, at any depth (what CrossGuard hands a rule)."""
    value = plain(value)
    if isinstance(value, Mapping):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(item) for item in value]
    return value


def get(value: Any, *path: str | int) -> Any:
    """``value[path...]``, secrets unwrapped at every step; None where a step is missing or unknown."""
    current = plain(value)
    for step in path:
        if current is None or is_unknown(current):
            return None
        if isinstance(step, int):
            if (
                not isinstance(current, Sequence)
                or isinstance(current, str)
                or not -len(current) <= step < len(current)
            ):
                return None
            current = plain(current[step])
        else:
            if not isinstance(current, Mapping):
                return None
            current = plain(current.get(step))
    return None if is_unknown(current) else current


def items(value: Any) -> list[Any]:
    """The known items of a list value ([] for a missing, unknown or non-list value)."""
    value = plain(value)
    if (
        value is None
        or is_unknown(value)
        or isinstance(value, str | bytes | Mapping)
        or not isinstance(value, Iterable)
    ):
        return []
    return [plain(item) for item in value if not is_unknown(plain(item))]


def flag(value: Any) -> bool | None:
    """A boolean input (``True`` or ``"true"``, any case); None when missing, unknown or not a boolean."""
    value = plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def number(value: Any) -> float | None:
    """A numeric input (the engine may hand ``"256"`` or ``256.0``); None when missing or unknown."""
    value = plain(value)
    if isinstance(value, bool) or value is None or is_unknown(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def integer(value: Any) -> int | None:
    """:func:`number`, truncated to an int."""
    found = number(value)
    return None if found is None else int(found)


def network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR (or a single address) as a network; None when missing, unknown or not an address."""
    value = plain(value)
    if not isinstance(value, str) or is_unknown(value):
        return None
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class Resource:
    """One resource as every offline check reads it, whatever recorded it.

    ``retain_on_delete`` is None where the source does not say (CrossGuard does not expose it).
    """

    type: str
    inputs: Mapping[str, Any]
    """Input properties (camelCase keys) as the program declared them; secrets marked, unknowns kept."""
    urn: str = ""
    name: str = ""
    id: str | None = None
    """The provider's id, when known (a mock recording, a state export, an unchanged resource in a preview)."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    parent: str = ""
    provider: str = ""
    """``<provider urn>::<provider id>`` ('' for components and default providers)."""
    dependencies: tuple[str, ...] = ()
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Input property -> URNs its value came from (``propertyDependencies``)."""
    custom: bool = True
    protect: bool = False
    retain_on_delete: bool | None = None

    @functools.cached_property
    def props(self) -> Mapping[str, Any]:
        """The inputs with every secret unwrapped, as CrossGuard hands them to a rule."""
        unwrapped: Mapping[str, Any] = unwrap(self.inputs)
        return unwrapped

    @property
    def label(self) -> str:
        """How a violation names the resource: its URN when it has one."""
        return self.urn or self.name or self.type

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def is_provider(self) -> bool:
        return self.type.startswith(tokens.PROVIDER_PREFIX)

    def get(self, *path: str | int) -> Any:
        """The input at ``path`` (see :func:`get`)."""
        return get(self.inputs, *path)

    @classmethod
    def from_recorded(cls, recorded: RecordedResource) -> Resource:
        """From the mock engine's :class:`lmrun.mock_engine.RecordedResource`."""
        return cls(
            type=recorded.type,
            inputs=recorded.inputs,
            urn=recorded.urn,
            name=recorded.name,
            id=recorded.id,
            outputs=recorded.outputs,
            parent=recorded.parent,
            provider=recorded.provider,
            dependencies=tuple(recorded.dependencies),
            property_dependencies=dict(recorded.property_dependencies),
            custom=bool(recorded.custom),
            protect=bool(recorded.protect),
            retain_on_delete=bool(recorded.retain_on_delete),
        )


def _raw(value: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` with unknowns kept (an unknown part way stands for the whole); None if absent."""
    current = plain(value)
    for step in path:
        if current is None or is_unknown(current):
            return current
        if isinstance(step, int):
            if not isinstance(current, list | tuple) or not -len(current) <= step < len(current):
                return None
            current = plain(current[step])
        elif isinstance(current, Mapping):
            current = plain(current.get(step))
        else:
            return None
    return current


FORWARDING_DEPTH = 2
"""How many resources a reference may pass through (route -> peering accepter -> peering)."""


class Snapshot(Sequence[Resource]):
    """The resources of one stack (in registration or state order) and its outputs, indexed once.

    Every lookup a check makes is a dictionary access: by URN, by type, by id, by dependency (both ways).
    """

    def __init__(
        self, resources: Iterable[Resource], outputs: Mapping[str, Any] | None = None, *, source: str = "recording"
    ) -> None:
        self.resources: tuple[Resource, ...] = tuple(resources)
        self.outputs: dict[str, Any] = dict(outputs or {})
        self.source = source
        """What recorded the resources, in words (``mock recording``, ``preview``, ``state``)."""
        self.by_urn: dict[str, Resource] = {r.urn: r for r in self.resources if r.urn}
        self._position = {urn: index for index, urn in enumerate(self.by_urn)}
        self._by_type: dict[str, list[Resource]] = defaultdict(list)
        self._by_id: dict[str, list[Resource]] = defaultdict(list)
        for resource in self.resources:
            self._by_type[resource.type].append(resource)
            if resource.id and not is_unknown(resource.id):
                self._by_id[resource.id].append(resource)

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    @overload
    def __getitem__(self, index: int) -> Resource: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Resource]: ...
    def __getitem__(self, index: int | slice) -> Resource | Sequence[Resource]:
        return self.resources[index]

    def of_type(self, *types: str) -> list[Resource]:
        """Resources of the given types, in snapshot order within each type."""
        if len(types) == 1:
            return list(self._by_type.get(types[0], ()))
        return [r for type_ in types for r in self._by_type.get(type_, ())]

    def with_id(self, id_: str) -> list[Resource]:
        return list(self._by_id.get(id_, ()))

    def name_of(self, key: str) -> str:
        """A resource's name from its URN (an unresolved reference is shown as it is)."""
        resource = self.by_urn.get(key)
        return resource.name if resource is not None else key

    @functools.cached_property
    def _dependents(self) -> dict[str, list[Resource]]:
        found: dict[str, list[Resource]] = defaultdict(list)
        for resource in self.resources:
            for urn in dict.fromkeys(resource.dependencies):
                found[urn].append(resource)
        return found

    def depends_on(self, resource: Resource, *types: str) -> list[Resource]:
        """The resources ``resource`` depends on, of the given types."""
        found = (self.by_urn.get(urn) for urn in resource.dependencies)
        return [r for r in found if r is not None and r.type in types]

    def dependents(self, resource: Resource, *types: str) -> list[Resource]:
        """The resources of the given types that depend on ``resource``."""
        return [r for r in self._dependents.get(resource.urn, ()) if r.type in types]

    # --- references -------------------------------------------------------------------------------------
    def refs(self, resource: Resource, path: str | Sequence[str | int], types: Collection[str]) -> list[Resource]:
        """The resources of ``types`` that the input at ``path`` refers to (a list input gives several).

        By id when the value is a known id of such a resource; otherwise through the property's
        ``propertyDependencies`` (keyed by the path's first step). An absent input refers to nothing.
        """
        return self._refs(resource, (path,) if isinstance(path, str) else tuple(path), types, FORWARDING_DEPTH)

    def ref(self, resource: Resource, path: str | Sequence[str | int], types: Collection[str]) -> Resource | None:
        """The one resource the input at ``path`` refers to; None when it refers to none, or to several."""
        found = self.refs(resource, path, types)
        return found[0] if len(found) == 1 else None

    def ref_key(self, resource: Resource, path: str | Sequence[str | int], types: Collection[str]) -> str | None:
        """The URN the input at ``path`` refers to; else its value when known (an id outside this stack);
        None when it is missing or cannot be known."""
        found = self.ref(resource, path, types)
        if found is not None:
            return found.urn
        value = get(resource.inputs, *((path,) if isinstance(path, str) else path))
        return str(value) if value is not None and not isinstance(value, Mapping | list) else None

    def _refs(
        self, resource: Resource, path: tuple[str | int, ...], types: Collection[str], depth: int
    ) -> list[Resource]:
        value = _raw(resource.inputs, path)
        if value is None and (len(path) > 1 or not resource.property_dependencies.get(str(path[0]))):
            return []  # absent: no reference (an absent input that has dependencies is a value not sent yet)
        values = value if isinstance(value, list) else [value]
        found: list[Resource] = []
        unresolved = False
        for item in values:
            match = self._by_known_id(plain(item), types)
            if match is None:
                unresolved = True
            elif match not in found:
                found.append(match)
        if unresolved:
            for match in self._through_dependencies(resource, path, types, depth):
                if match not in found:
                    found.append(match)
        return found

    def _by_known_id(self, value: Any, types: Collection[str]) -> Resource | None:
        if not isinstance(value, str) or is_unknown(value):
            return None
        matches = [r for r in self._by_id.get(value, ()) if r.type in types]
        return matches[0] if len(matches) == 1 else None

    def _through_dependencies(
        self, resource: Resource, path: tuple[str | int, ...], types: Collection[str], depth: int
    ) -> list[Resource]:
        key = str(path[0])
        urns = resource.property_dependencies.get(key)
        if urns is None and not resource.property_dependencies:
            urns = resource.dependencies  # a source without per-property dependencies
        found: list[Resource] = []
        prop = next((step for step in reversed(path) if isinstance(step, str)), key)
        for urn in urns or ():
            dependency = self.by_urn.get(urn)
            if dependency is None:
                continue
            if dependency.type in types:
                found.append(dependency)
            elif depth > 0 and prop in dependency.inputs:
                found += self._refs(dependency, (prop,), types, depth - 1)
        # Pulumi records a property's dependencies as a set: snapshot order makes the result deterministic.
        return sorted(dict.fromkeys(found), key=lambda r: self._position.get(r.urn, -1))
