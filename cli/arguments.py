"""The CLI's own input checks: every file and directory an option names is checked before any long work (a plan,
an AWS call), and a mistake is one line naming the option, exit 2 (:data:`lmrun.domain.errors.EXIT_INVALID_INPUT`).

argparse's own refusals (a missing option, a bad choice) are one line too: :class:`OneLineParser`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from lmrun.domain.errors import EXIT_INVALID_INPUT, InputError
from lmrun.spec.stackfile import stack_file_path, stack_names


class ArgumentError(InputError):
    """An option names a file, a directory, a stack or a site that cannot be used."""

    def __init__(self, option: str, value: object, problem: str) -> None:
        self.option = option
        super().__init__(f"{option} {value}: {problem}")


class OneLineParser(argparse.ArgumentParser):
    """argparse, refusing with one line (the option and the problem) and exit 2 instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_INVALID_INPUT)


def project_dir(path: Path) -> Path:
    """``--project-dir``: a directory holding ``Pulumi.yaml``."""
    if not path.is_dir():
        raise ArgumentError("--project-dir", path, "no such directory")
    if not (path / "Pulumi.yaml").is_file():
        raise ArgumentError("--project-dir", path, "holds no Pulumi.yaml (run from the project or point at it)")
    return path


def stack_name(project: Path, stack: str) -> str:
    """``--stack``: a stack of the project (its ``Pulumi.NAME.yaml`` exists); the message lists those that do."""
    path = stack_file_path(project, stack)
    if not path.is_file():
        known = ", ".join(stack_names(project)) or "none yet"
        raise ArgumentError("--stack", stack, f"no stack file {path}; the stacks of this project: {known}")
    return stack


def input_file(option: str, path: Path) -> Path:
    """A file the command reads."""
    if path.is_dir():
        raise ArgumentError(option, path, "is a directory, not a file")
    if not path.is_file():
        raise ArgumentError(option, path, "no such file")
    if not os.access(path, os.R_OK):
        raise ArgumentError(option, path, "cannot be read (permissions)")
    return path


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def output_file(option: str, path: Path) -> Path:
    """A file the command writes: its directory exists and is writable, and it is not itself a directory."""
    if path.is_dir():
        raise ArgumentError(option, path, "is a directory; give a file name")
    folder = path.absolute().parent
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a directory"
        raise ArgumentError(option, path, f"cannot be written: {folder} {what}")
    if not os.access(folder, os.W_OK):
        raise ArgumentError(option, path, f"cannot be written: {folder} is not writable")
    return path


def output_directory(option: str, path: Path) -> Path:
    """A directory the command writes into (created when missing): nothing on the way to it is a file."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ArgumentError(option, path, f"cannot be a directory: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise ArgumentError(option, path, f"cannot be written: {existing} is not writable")
    return path


def graph_support(path: Path) -> None:
    """``--graph`` draws with matplotlib, the optional extra ``graph``: say so before planning, not after."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ArgumentError("--graph", path, "drawing needs matplotlib: pip install 'lmrun-mesh[graph]'") from None


_SERVICE = re.compile(r"^[a-z]([a-z0-9\-]{0,61}[a-z0-9])?$")
_ENDPOINT = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]{1,5}$")


def service_name(value: str) -> str:
    """``SERVICE`` of ``lmrun sky bind``: a service's name (a lowercase DNS label)."""
    if not _SERVICE.match(value):
        raise ArgumentError("SERVICE", value, "is not a service name (a lowercase DNS label, like 'chat')")
    return value


def endpoint(value: str) -> str:
    """``--endpoint``: ``IP:PORT`` (whether the server would apply it is checked against the stack's plan)."""
    if not _ENDPOINT.match(value):
        raise ArgumentError("--endpoint", value, "is not IP:PORT (the load balancer's private IPv4 address and port)")
    return value


def check_arguments(args: argparse.Namespace) -> None:
    """Every option of ``args`` that names a file, a directory or a stack, checked before the command runs."""
    if getattr(args, "stack", None) or getattr(args, "config_file", None):  # the project matters to a stack
        project_dir(args.project_dir)
        if getattr(args, "stack", None):
            stack_name(args.project_dir, args.stack)
    if getattr(args, "config_file", None) is not None:
        input_file("--config-file", args.config_file)
    if getattr(args, "policy_config", None) is not None:
        input_file("--policy-config", args.policy_config)
    for option in ("from_preview", "from_state"):
        if getattr(args, option, None) is not None:
            input_file(f"--{option.replace('_', '-')}", getattr(args, option))
    if getattr(args, "from_json", None) is not None and str(args.from_json) != "-":
        input_file("--from-json", args.from_json)
    if getattr(args, "graph", None) is not None:
        output_file("--graph", args.graph)
        graph_support(args.graph)
    if getattr(args, "out", None) is not None:
        output_directory("--out", args.out)
    if getattr(args, "sky_command", None) == "bind":
        service_name(args.service)
        if args.endpoint is not None:
            endpoint(args.endpoint)
