"""Value types several spec models share, each refusing a wrong value in the project's words."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from lmrun.spec.errors import echo

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def _instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ValueError(f"{echo(value)} is not an EC2 instance type like 'g6.xlarge'")
    return value


InstanceType = Annotated[str, AfterValidator(_instance_type)]
