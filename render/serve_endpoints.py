"""The K3s server's upkeep of elastic services' node ports: a timer that points each one at SkyServe's load balancer.

An elastic service's node port is a Service without selector (:func:`lmrun.render.kubernetes.elastic_service_manifest`);
its one endpoint is the load balancer on the SkyServe controller (its private IP and the port ``sky serve up``
picked), which only exists after the stack is up and changes when the controller is replaced. ``lmrun sky bind``
records it as ``IP:PORT`` in a String parameter (:meth:`lmrun.domain.secrets.SecretPaths.serve_endpoint`); every
:data:`SERVE_ENDPOINTS_EVERY` the server lists the elastic services' Services (label
:data:`lmrun.render.kubernetes.ELASTIC_LABEL`, which Pulumi creates), reads each one's parameter and applies its
EndpointSlice (``serve-endpoints.sh`` and its helper ``serve_endpoints.py``, files of ``render/scripts/``).

Why the server lists the Services instead of being told them: its user data then holds nothing that depends on
which elastic services exist, so adding, renaming or removing one never replaces the K3s server (a VM replaced
whenever its user data changes, :mod:`lmrun.components.instances`); every server runs the timer, which does
nothing without elastic services. The helper's check (an IPv4 address inside the main VPC, a port among SkyServe's
load-balancer ports) is also the one ``lmrun sky bind`` runs before writing: :func:`check_endpoint` loads it from
the same file.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import cast

from lmrun.domain.ports import SKYSERVE_LB_PORTS
from lmrun.domain.secrets import SecretPaths
from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile, systemd_unit, vm_helper, vm_script
from lmrun.render.kubernetes import ELASTIC_LABEL, NAMESPACE, SERVICE_PREFIX, endpoint_slice_manifest
from lmrun.render.script_files import script_text

SERVE_ENDPOINTS_UNIT = "lmrun-serve-endpoints.service"
SERVE_ENDPOINTS_TIMER = "lmrun-serve-endpoints.timer"
SERVE_ENDPOINTS_EVERY = "1min"
"""How often the server re-reads the bound endpoints: a re-bound load balancer (a replaced controller) is served
within this, at one free standard-throughput GetParameter per elastic service and run."""
HELPER = "serve_endpoints.py"
LB_PORTS = f"{SKYSERVE_LB_PORTS.start}-{SKYSERVE_LB_PORTS.stop - 1}"
"""SkyServe's load-balancer ports as the helper takes them (``LOW-HIGH``)."""
SERVER_KUBECTL = ("k3s", "kubectl")
SERVICE_PLACEHOLDER = "{service}"
"""Stands for an elastic service's name in the parameter pattern the script fills in."""


@dataclass(frozen=True)
class ServeEndpointsConfig:
    """What the server's timer needs: plain values only, none of them about which elastic services exist."""

    region: str
    """Region of the parameters (the main region)."""
    vpc_cidr: str
    """The main VPC's range: the only place a bound load balancer may be."""
    parameter_prefix: str
    """The mesh's SSM prefix (``/lmrun/<stack>``)."""

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Network(self.vpc_cidr)
        except ValueError:
            raise ValueError(f"vpc_cidr: {self.vpc_cidr!r} is not an IPv4 network") from None

    @property
    def parameter_pattern(self) -> str:
        """Every elastic service's parameter, :data:`SERVICE_PLACEHOLDER` standing for its name."""
        return SecretPaths(self.parameter_prefix).serve_endpoint(SERVICE_PLACEHOLDER)


def serve_endpoint_files(cfg: ServeEndpointsConfig) -> list[WriteFile]:
    """``serve-endpoints.sh``, its helper, and the service and timer that run it on the server."""
    script = vm_script(
        "serve-endpoints.sh",
        {
            "KUBECTL": SERVER_KUBECTL,
            "NAMESPACE": NAMESPACE,
            "SELECTOR": f"{ELASTIC_LABEL}=true",
            "PREFIX": SERVICE_PREFIX,
            "REGION": cfg.region,
            "PARAMETER_PATTERN": cfg.parameter_pattern,
            "VPC_CIDR": cfg.vpc_cidr,
            "LB_PORTS": LB_PORTS,
            "SLICE": json.dumps(endpoint_slice_manifest(""), separators=(",", ":")),
        },
    )
    service = systemd_unit(
        {
            "Unit": [
                ("Description", "Point elastic services' node ports at SkyServe's load balancer"),
                ("Requires", "k3s.service"),
                ("After", "k3s.service"),
            ],
            "Service": [("Type", "oneshot"), ("ExecStart", f"{SCRIPT_DIR}/serve-endpoints.sh")],
        }
    )
    timer = systemd_unit(
        {
            "Unit": [("Description", f"Re-read elastic services' load balancers every {SERVE_ENDPOINTS_EVERY}")],
            "Timer": [
                ("OnBootSec", "1min"),
                ("OnUnitActiveSec", SERVE_ENDPOINTS_EVERY),
                ("Unit", SERVE_ENDPOINTS_UNIT),
            ],
            "Install": [("WantedBy", "timers.target")],
        }
    )
    return [
        script,
        vm_helper(HELPER),
        WriteFile(f"/etc/systemd/system/{SERVE_ENDPOINTS_UNIT}", service),
        WriteFile(f"/etc/systemd/system/{SERVE_ENDPOINTS_TIMER}", timer),
    ]


def serve_endpoint_runcmd() -> list[list[str]]:
    """Start the timer (after the server's bootstrap: K3s and the namespace are there)."""
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", SERVE_ENDPOINTS_TIMER]]


def _helper() -> ModuleType:
    """``render/scripts/serve_endpoints.py`` as a module (it is package data, not an importable module)."""
    module = ModuleType("lmrun_serve_endpoints_helper")
    # Our own shipped file (not user input), run as a module: its __main__ block stays out.
    exec(compile(script_text(HELPER), HELPER, "exec"), module.__dict__)
    return module


def check_endpoint(value: str, vpc_cidr: str) -> tuple[str, int]:
    """(IP, port) of ``IP:PORT`` when the server would apply it (the helper's own check); ValueError naming the
    problem otherwise."""
    parse = cast(Callable[[str, str, str], tuple[str, int]], _helper().parse_endpoint)
    return parse(value, vpc_cidr, LB_PORTS)


__all__ = [
    "SERVE_ENDPOINTS_TIMER",
    "SERVE_ENDPOINTS_UNIT",
    "ServeEndpointsConfig",
    "check_endpoint",
    "serve_endpoint_files",
    "serve_endpoint_runcmd",
]
