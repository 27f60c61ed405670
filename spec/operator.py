"""What the machine running `pulumi up` says about itself, apart from the stack config: how it reaches the K3s
API. Read from the environment, because it is a fact about the operator's machine (a laptop inside the mesh, a
CI runner with an SSM port forward), never about the stack: two machines deploying the same stack may differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lmrun.spec.errors import ConfigError, ConfigIssue

K3S_API_SERVER_ENV = "LMRUN_K3S_API_SERVER"
"""``https://HOST:PORT`` where this machine reaches the K3s API, e.g. ``https://localhost:6443`` through an SSM
port forward to the server (``AWS-StartPortForwardingSession``). The program points the Kubernetes provider
there and keeps the certificate's name (``tls-server-name``: the address the server published), so TLS is
still verified. Unset: the address the server published (its private IP, or its Elastic IP with
``lmrun:operatorCidrs``)."""

_URL = re.compile(r"^https://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def k3s_api_server(environ: Mapping[str, str]) -> str | None:
    """The ``LMRUN_K3S_API_SERVER`` override, checked; None when unset or empty."""
    value = environ.get(K3S_API_SERVER_ENV, "").strip()
    if not value:
        return None
    match = _URL.match(value)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ConfigError(
            [
                ConfigIssue(
                    K3S_API_SERVER_ENV,
                    f"{value!r} is not an https://HOST:PORT address of the K3s API (e.g. https://localhost:6443 "
                    "through an SSM port forward); unset it to use the address the server published",
                )
            ]
        )
    return value
