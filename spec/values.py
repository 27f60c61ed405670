"""Value types several spec models share, each refusing a wrong value in the project's words."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from lmrun.spec.errors import echo

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def _instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ValueError(f"{echo(value)} is not an EC2 instance type like 'g6.xlarge'")
    return value


InstanceType = Annotated[str, AfterValidator(_instance_type)]


def _network_text(value: Any) -> Any:
    """pydantic reads a number as an address (``5`` -> ``0.0.0.5/32``): a network is written as text."""
    if isinstance(value, (str, ipaddress.IPv4Network)):
        return value
    raise ValueError(f"should be an IPv4 network written like '10.1.0.0/16' (got {echo(value)})")


NetworkText = BeforeValidator(_network_text)
"""Put before an ``IPv4Network`` type: only text (or a network object, from Python callers) is read."""
