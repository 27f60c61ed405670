"""``lmrun join-bundle``: write an external site's WireGuard config and bootstrap script for its operator.

The bundle is a secret stack output (``joinBundles``) of the deployed stack; this command reads it with
``pulumi stack output --show-secrets`` (or from a JSON file, for automation and tests) and writes the two
files: the config with mode 0600 (it holds the site's private key), the script with mode 0755.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrun.domain.errors import InputError


class JoinBundleError(InputError):
    """The stack has no such site bundle, or its output could not be read."""


@dataclass(frozen=True)
class WrittenBundle:
    config: Path
    script: Path


def stack_bundles(project_dir: Path, stack: str) -> dict[str, Any]:
    """The ``joinBundles`` output of a deployed stack (needs the Pulumi CLI and the stack's secrets)."""
    try:
        result = subprocess.run(
            ["pulumi", "stack", "output", "joinBundles", "--show-secrets", "--json", "--stack", stack],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        raise JoinBundleError("the Pulumi CLI is not installed; pass --from-json with the stack output") from None
    if result.returncode != 0:
        raise JoinBundleError(f"pulumi stack output failed: {result.stderr.strip()}")
    bundles: dict[str, Any] = json.loads(result.stdout or "{}")
    return bundles


def write_bundle(bundles: dict[str, Any], site: str, out_dir: Path) -> WrittenBundle:
    """Write one site's bundle into ``out_dir``; the config is created 0600 before any byte is written."""
    if site not in bundles:
        known = ", ".join(sorted(bundles)) or "none (the stack has no external site)"
        raise JoinBundleError(f"no join bundle for site {site!r}; external sites: {known}")
    bundle = bundles[site]
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / bundle["config_filename"]
    script = out_dir / bundle["script_filename"]
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(bundle["config"])
    os.chmod(config, 0o600)  # an existing file keeps its old mode through O_TRUNC
    script.write_text(bundle["bootstrap"])
    script.chmod(0o755)
    return WrittenBundle(config, script)
