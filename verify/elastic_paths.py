"""The node-port path of every elastic service, walked through the recorded network: does a client anywhere in the
mesh reach SkyServe's load balancer, and does the load balancer reach the replicas?

An elastic service's node port is a Service without selector whose one endpoint is the load balancer on the
SkyServe controller (:mod:`lmrun.render.serve_endpoints`): a client calling ``localhost:<node port>`` on any mesh
machine is DNATed by kube-proxy to ``<controller IP>:<LB port>``, so the packets leave the client's machine for
the controller. The LB port is known only after ``sky serve up`` (the first free one of
:data:`lmrun.domain.ports.SKYSERVE_LB_PORTS`), so every port of that range must pass. From the controller the
load balancer proxies to each replica: spot VMs in the service's spot regions (the SkyPilot security group there,
the service's app port) and pods on the K3s GPU pool, which the controller reaches as a K3s agent over flannel
between node addresses. For every elastic service of the ``elasticPaths`` export this walks, both ways:

- ``clients -> load balancer``: every location of the mesh (each region's and site's client hosts) to the
  controller (the main region's SkyPilot security group), TCP on every LB port (one port of each run of them no
  recorded rule tells apart: :func:`port_classes`);
- ``controller -> K3s API``: the controller joins K3s (tcp/6443 to the server);
- ``controller -> spot region``: the controller to a SkyPilot VM of each spot region, TCP on the app port;
- ``controller -> GPU pool``: the controller to each pool node (a ``nodes`` export entry with a ``pool``), TCP on
  the kubelet's port (K3s docs, "Inbound Rules for K3s Nodes": 10250 between all nodes). Flannel's VXLAN
  (udp/8472) crosses the same rules: the mesh's and SkyPilot's groups admit all traffic from the mesh's ranges,
  and the walk models TCP only.

A blocked hop fails the plan (:class:`ElasticPathError`, exit 1) naming the service, the hop and the first rule or
route missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmrun.aws.network_model import skypilot_endpoints
from lmrun.domain.errors import LmrunError
from lmrun.domain.ports import K3S_API_PORT, SKYSERVE_LB_PORTS
from lmrun.mock_engine import Recording
from lmrun.verify.network import Host
from lmrun.verify.reachability import K3S_SERVER_ROLE, Fabric, _Outcome, _walk
from lmrun.verify.resources import Resource, Snapshot, plain
from lmrun.verify.sources import snapshot_of

KUBELET_PORT = 10250
"""The kubelet's port, open between every two K3s nodes (K3s docs, "Requirements", Inbound Rules for K3s Nodes)."""
CLIENTS = "clients -> load balancer"
JOIN = "controller -> K3s API"
SPOT = "controller -> spot region"
POOL = "controller -> GPU pool"


@dataclass(frozen=True)
class ElasticPathVerdict:
    """One hop of an elastic service's path, for every host pair it covers, both ways."""

    service: str
    hop: str
    source: str
    target: str
    ports: str
    ok: bool | None
    """None: the source (a preview) does not hold what the walk needs."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "hop": self.hop,
            "from": self.source,
            "to": self.target,
            "ports": self.ports,
            "ok": self.ok,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        return f"{self.service}: {self.hop}: {self.source} -> {self.target} tcp/{self.ports}: {self.reason}"


class ElasticPathError(LmrunError):
    """Some hop of an elastic service's node-port path is blocked by the recorded network. Not a config error: the
    program declared routes or security groups that do not carry what the service needs; exit 1."""

    label = "error: elastic service path blocked"

    def __init__(self, stack: str, blocked: Sequence[ElasticPathVerdict]) -> None:
        self.blocked = tuple(blocked)
        super().__init__(
            f"stack {stack}: {len(self.blocked)} blocked hop(s) of elastic services' node-port paths:\n"
            + "\n".join(str(verdict) for verdict in self.blocked)
        )


class _Walks:
    """Walks of host pairs, each pair of host classes (:attr:`Host.key`) and port walked once."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.memo: dict[tuple[Any, Any, int], _Outcome] = {}
        self.lb_ports = port_classes(fabric.snapshot, SKYSERVE_LB_PORTS)
        """The load-balancer ports to walk: one of each run no rule tells apart."""

    def first_blocked(self, clients: Sequence[Host], servers: Sequence[Host], ports: Sequence[int]) -> str | None:
        """None when every client reaches every server on every port (and back); else the first blocked pair's
        reason, naming the hosts (``cannot tell: ...`` when the source does not hold what decides)."""
        undecided: str | None = None
        for client in clients:
            for server in servers:
                if client.machine is not None and client.machine == server.machine:
                    continue
                for port in ports:
                    key = (client.key, server.key, port)
                    if key not in self.memo:
                        self.memo[key] = _walk(self.fabric, client, server, port)[0]
                    outcome = self.memo[key]
                    if outcome.blocked is None:
                        continue
                    reason = f"{client.label} -> {server.label} tcp/{port}: {outcome.blocked}"
                    if not outcome.undecidable:
                        return reason
                    undecided = undecided or f"cannot tell: {reason}"
        return undecided


_PORT_KEYS = ("fromPort", "toPort", "ports")
"""The inputs that hold a rule's ports: AWS security group rules (``fromPort``/``toPort``) and GCP firewalls
(``allows[].ports``, ``"30000-32767"``)."""


def port_classes(snapshot: Snapshot, ports: range) -> list[int]:
    """One port of each run of ``ports`` that no recorded rule tells apart (the first of the run): a rule's range
    starts or ends a run, so every port of a run is admitted or refused alike, and walking one stands for all.
    Why: walking every load-balancer port from every location costs 20 walks a host pair."""
    cuts = {ports.start}
    stack: list[Any] = [resource.inputs for resource in snapshot.resources]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            low, high = plain(value.get("fromPort")), plain(value.get("toPort"))
            if isinstance(low, int) and isinstance(high, int):
                cuts.update((low, high + 1))
            cuts.update(_bounds(value.get("ports")))
            nested = (item for key, item in value.items() if key not in _PORT_KEYS)
            stack.extend(item for item in nested if isinstance(item, Mapping | list))
        elif isinstance(value, list):
            stack.extend(value)
    return sorted(cut for cut in cuts if cut in ports)


def _bounds(value: Any) -> list[int]:
    """Where the port specs in ``value`` (``["80", "30000-32767"]``) start, and where they stop (the port after
    their last)."""
    found = []
    for item in value if isinstance(value, list) else []:
        low, _, high = str(plain(item)).partition("-")
        if low.isdigit() and (high.isdigit() or not high):
            found += [int(low), int(high or low) + 1]
    return found


def _verdict(service: str, hop: str, source: str, target: str, ports: str, blocked: str | None) -> ElasticPathVerdict:
    if blocked is None:
        return ElasticPathVerdict(service, hop, source, target, ports, True, "every host pair, both ways")
    ok = None if blocked.startswith("cannot tell: ") else False
    return ElasticPathVerdict(service, hop, source, target, ports, ok, blocked)


def _lb_ports() -> str:
    return f"{SKYSERVE_LB_PORTS.start}-{SKYSERVE_LB_PORTS.stop - 1}"


def check_elastic_service(
    fabric: Fabric, walks: _Walks, service: str, entry: Mapping[str, Any]
) -> list[ElasticPathVerdict]:
    """The verdict of every hop of one service's path (``entry``: its ``elasticPaths`` export)."""
    main = str(fabric.exports.get("mainRegion") or "")
    if not isinstance(fabric.exports.get("skypilot"), Mapping):
        # A first preview has no stack outputs: the SkyPilot names the walk places VMs by are not there.
        unknown = f"cannot tell: the skypilot stack output is not in this {fabric.snapshot.source}"
        return [_verdict(service, CLIENTS, "the mesh", "the SkyServe controller", _lb_ports(), unknown)]
    controller = skypilot_endpoints(fabric, main)
    verdicts = []
    if not controller:
        missing = f"no SkyPilot security group in the main region {main} holds the SkyServe controller"
        return [_verdict(service, CLIENTS, "the mesh", "the SkyServe controller", _lb_ports(), missing)]
    where = f"the SkyServe controller in {main}"
    lb_ports = walks.lb_ports
    for location in [*sorted(fabric.regions), *sorted(fabric.sites)]:
        clients = fabric.location_hosts(location)
        blocked = (
            walks.first_blocked(clients, controller, lb_ports) if clients else f"no network of {location} is recorded"
        )
        verdicts.append(_verdict(service, CLIENTS, location, where, _lb_ports(), blocked))
    servers = [host for model in fabric.models for host in model.role_hosts(K3S_SERVER_ROLE)]
    blocked = walks.first_blocked(controller, servers, [K3S_API_PORT]) if servers else "no K3s server is recorded"
    verdicts.append(_verdict(service, JOIN, where, "the K3s server", str(K3S_API_PORT), blocked))
    app_port = int(entry.get("appPort") or 0)
    for region in entry.get("spotRegions") or ():
        replicas = skypilot_endpoints(fabric, str(region))
        blocked = (
            walks.first_blocked(controller, replicas, [app_port])
            if replicas
            else f"no SkyPilot security group in the mesh VPC of {region} (spot VMs would have none of the mesh's)"
        )
        verdicts.append(_verdict(service, SPOT, where, f"SkyPilot VMs of {region}", str(app_port), blocked))
    # The GPU pool's nodes: the `nodes` export's entries with a `pool` (lmrun:gpuPool).
    for node in sorted(name for name, info in fabric.nodes.items() if isinstance(info, Mapping) and info.get("pool")):
        hosts = fabric.machine_hosts(str(node))
        blocked = walks.first_blocked(controller, hosts, [KUBELET_PORT]) if hosts else f"no machine of {node}"
        verdicts.append(_verdict(service, POOL, where, f"pool node {node}", str(KUBELET_PORT), blocked))
    return verdicts


def elastic_paths_from_resources(
    source: Snapshot | Recording | Sequence[Resource], exports: Mapping[str, Any] | None = None
) -> list[ElasticPathVerdict]:
    """Every hop of every elastic service of the ``elasticPaths`` export, from resources alone."""
    snapshot = snapshot_of(source, exports)
    services = plain(snapshot.outputs.get("elasticPaths"))
    if not isinstance(services, Mapping) or not services:
        return []  # no second index of the network for a stack without elastic services
    fabric = Fabric(snapshot)
    walks = _Walks(fabric)
    return [
        verdict
        for service, entry in sorted(services.items())
        for verdict in check_elastic_service(fabric, walks, str(service), entry if isinstance(entry, Mapping) else {})
    ]
