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

from lmrun.cli.arguments import ArgumentError
from lmrun.clouds import EXTERNAL_SITE
from lmrun.domain.errors import InputError
from lmrun.spec.cloud_rules import cloud_rules
from lmrun.spec.config import spec_from_config
from lmrun.spec.stackfile import StackConfig

BUNDLE_FIELDS = ("config_filename", "script_filename", "config", "bootstrap")
"""What each site's entry of the ``joinBundles`` output holds (:func:`lmrun.render.wireguard.join_bundle`)."""


class JoinBundleError(InputError):
    """The stack has no such site bundle, or its output could not be read."""


def external_site(stack: StackConfig, site: str) -> None:
    """Refuse, before anything is fetched, a site that gets no bundle: not in the stack, or not external.

    Raises ``ConfigError`` when the stack's config itself is invalid (its bundles would not be the stack's).
    """
    spec = spec_from_config(stack.config, stack.secret_keys)
    kinds = {declared.name: declared.kind for declared in spec.sites}
    external = ", ".join(name for name, kind in kinds.items() if kind == EXTERNAL_SITE) or "none"
    if site not in kinds:
        raise ArgumentError("--site", site, f"stack {stack.stack} has no such site; its external sites: {external}")
    if kinds[site] != EXTERNAL_SITE:
        raise ArgumentError(
            "--site",
            site,
            f"is a {cloud_rules(kinds[site]).label} site: the stack deploys it and its gateway joins by itself; "
            f"only external sites get a bundle (stack {stack.stack}'s: {external})",
        )


def bundles_from_json(text: str, source: str) -> dict[str, Any]:
    """The ``joinBundles`` output as JSON text (``source`` names where it came from, for messages)."""
    try:
        bundles = json.loads(text or "{}")
    except (json.JSONDecodeError, RecursionError) as exc:
        raise JoinBundleError(f"{source}: not JSON ({exc})") from None
    if not isinstance(bundles, dict):
        raise JoinBundleError(f"{source}: expected the joinBundles output, a JSON object of site -> bundle")
    return bundles


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
    return bundles_from_json(result.stdout, f"the joinBundles output of stack {stack}")


def write_bundle(bundles: dict[str, Any], site: str, out_dir: Path) -> WrittenBundle:
    """Write one site's bundle into ``out_dir``; the config is created 0600 before any byte is written."""
    if site not in bundles:
        known = ", ".join(sorted(bundles)) or "none (the stack has no external site)"
        raise JoinBundleError(f"no join bundle for site {site!r}; external sites: {known}")
    bundle = bundles[site]
    fields = bundle if isinstance(bundle, dict) else {}
    broken = [name for name in BUNDLE_FIELDS if not isinstance(fields.get(name), str)]
    if broken:
        raise JoinBundleError(f"the bundle of site {site!r} lacks {', '.join(broken)}: not a joinBundles output")
    for name in ("config_filename", "script_filename"):
        # A file name, never a path: a bundle must not write outside --out.
        if Path(fields[name]).name != fields[name] or fields[name] in ("", ".", ".."):
            raise JoinBundleError(f"the bundle of site {site!r} names {fields[name]!r} as {name}: not a file name")
    config = out_dir / fields["config_filename"]
    script = out_dir / fields["script_filename"]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(fields["config"])
        os.chmod(config, 0o600)  # an existing file keeps its old mode through O_TRUNC
        script.write_text(fields["bootstrap"])
        script.chmod(0o755)
    except OSError as exc:
        raise JoinBundleError(f"--out {out_dir}: cannot write the bundle: {exc.strerror or exc}") from None
    return WrittenBundle(config, script)
