"""Serve endpoint helper (serve-endpoints.sh, on the K3s server; ``lmrun sky bind`` loads its check too).
Usage: serve_endpoints.py SERVICE VALUE VPC_CIDR LOW-HIGH < EndpointSlice template (JSON). VALUE is the serve
endpoint parameter's (``IP:PORT``; empty: no parameter). Prints a ``v1/List`` holding the slice of the Service named
SERVICE: with no endpoint for an empty VALUE, else with IP:PORT as its one ready endpoint; exits 2 naming the
problem when VALUE is not an IPv4 address inside VPC_CIDR and a port in LOW-HIGH (SkyServe's load-balancer
ports)."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from typing import Any

_ENDPOINT = re.compile(r"^(?P<ip>[0-9.]+):(?P<port>[0-9]{1,5})$")


def parse_endpoint(value: str, vpc_cidr: str, ports: str) -> tuple[str, int]:
    """(IP, port) of ``IP:PORT``; ValueError naming the problem unless the IP is an IPv4 address inside
    ``vpc_cidr`` and the port is in ``ports`` (``LOW-HIGH``)."""
    match = _ENDPOINT.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not IP:PORT (an IPv4 address and a port, like 10.0.1.23:30001)")
    try:
        address = ipaddress.IPv4Address(match.group("ip"))
    except ValueError:
        raise ValueError(f"{match.group('ip')!r} is not an IPv4 address") from None
    if address not in ipaddress.IPv4Network(vpc_cidr):
        raise ValueError(f"{address} is outside the main VPC {vpc_cidr} (the SkyServe controller runs there)")
    low, _, high = ports.partition("-")
    port = int(match.group("port"))
    if not int(low) <= port <= int(high):
        raise ValueError(f"port {port} is not one of SkyServe's load-balancer ports {ports}")
    return str(address), port


def endpoint_slice(template: Any, service: str, value: str, vpc_cidr: str, ports: str) -> Any:
    """The template slice named after the Service ``service`` (its name and ``kubernetes.io/service-name`` label),
    with IP:PORT as its one endpoint (none for an empty ``value``)."""
    slice_ = dict(template)
    metadata = dict(slice_["metadata"])
    metadata["name"] = service
    metadata["labels"] = {**metadata["labels"], "kubernetes.io/service-name": service}
    slice_["metadata"] = metadata
    if value.strip():
        address, port = parse_endpoint(value, vpc_cidr, ports)
        slice_["ports"] = [{"name": "app", "protocol": "TCP", "port": port}]
        slice_["endpoints"] = [{"addresses": [address], "conditions": {"ready": True}}]
    else:
        slice_["ports"], slice_["endpoints"] = [], []
    return {"apiVersion": "v1", "kind": "List", "items": [slice_]}


if __name__ == "__main__":
    try:
        document = endpoint_slice(json.load(sys.stdin), *sys.argv[1:5])
    except ValueError as problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    json.dump(document, sys.stdout, separators=(",", ":"))
