"""``lmrun``: the operator CLI (offline plan, region sync, quotas, join bundles, config reference)."""

from lmrun.cli.main import EXIT_INVALID_CONFIG, main
from lmrun.domain.errors import EXIT_FAILURE, EXIT_OK, EXIT_POLICY_VIOLATION, EXIT_QUOTA_SHORT

__all__ = ["EXIT_FAILURE", "EXIT_INVALID_CONFIG", "EXIT_OK", "EXIT_POLICY_VIOLATION", "EXIT_QUOTA_SHORT", "main"]
