"""Stack config -> validated spec (pydantic), with every error reported at once by config path."""

from lmrun.spec.config import current_pulumi_config, current_secret_keys, parse_spec, spec_from_config
from lmrun.spec.errors import ConfigError, ConfigIssue, PlanError
from lmrun.spec.model import MeshSpec

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "MeshSpec",
    "PlanError",
    "current_pulumi_config",
    "current_secret_keys",
    "parse_spec",
    "spec_from_config",
]
