"""Shared cloud-init helpers: ``#cloud-config`` documents built from files to write and commands to run.

Every shell step lives in its own file under ``SCRIPT_DIR`` (``write_files``) and ``runcmd`` only calls it,
so the scripts can be read on the VM after boot. A script with logic of its own is a static file of
``render/scripts/`` plus a header of values (:func:`vm_script`, :mod:`lmrun.render.script_files`); a script
that is nothing but command lines, each an argv quoted with :func:`sh_join`, is rendered as such
(:func:`command_script`): there is no body to keep in a file.
"""

from __future__ import annotations

import base64
import gzip
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lmrun.render.script_files import RENDERED_NOTE, HeaderValue, header_lines, render_script, script_text

SCRIPT_DIR = "/usr/local/lib/lmrun"
SHELL_SHEBANGS = ("#!/bin/bash", "#!/bin/sh", "#!/usr/bin/env bash")
"""Where rendered scripts land on a VM."""

_SHELL_HEADER = f"#!/bin/bash\n# {RENDERED_NOTE}\nset -euo pipefail\n"


@dataclass(frozen=True)
class WriteFile:
    """One ``write_files`` entry."""

    path: str
    content: str
    permissions: str = "0644"
    """Octal mode as a string (cloud-init's schema wants a string)."""

    @property
    def is_shell_script(self) -> bool:
        return self.content.startswith(SHELL_SHEBANGS)


def shell_script(body: str) -> str:
    """A bash script: shebang, strict mode, then ``body``."""
    return _SHELL_HEADER + body.strip("\n") + "\n"


def script_file(name: str, body: str) -> WriteFile:
    """An executable script in ``SCRIPT_DIR``."""
    return WriteFile(f"{SCRIPT_DIR}/{name}", shell_script(body), "0755")


def vm_script(name: str, values: Mapping[str, HeaderValue] | None = None) -> WriteFile:
    """``render/scripts/<name>`` with its header of ``values``, as an executable ``SCRIPT_DIR/<name>``."""
    return WriteFile(f"{SCRIPT_DIR}/{name}", render_script(name, values), "0755")


def vm_helper(name: str) -> WriteFile:
    """The Python helper ``render/scripts/<name>`` as ``SCRIPT_DIR/<name>`` (scripts run it with a python3)."""
    if not name.endswith(".py"):
        raise ValueError(f"{name!r} is not a Python helper")
    return WriteFile(f"{SCRIPT_DIR}/{name}", script_text(name), "0644")


def command_script(name: str, commands: Sequence[Sequence[str]]) -> WriteFile:
    """An executable script made of command lines only, each argv quoted with :func:`sh_join`."""
    return script_file(name, "\n".join(sh_join(command) for command in commands))


def sh_assign(name: str, value: str | int) -> str:
    """``NAME='value'``, quoted for the shell, for baking plain values into a script."""
    return header_lines({name: value})[0]


def sh_join(args: Iterable[str]) -> str:
    """Arguments joined into one shell-quoted command line."""
    return " ".join(shlex.quote(a) for a in args)


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as literal blocks, so scripts stay readable in user data."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


STOP_AT_FIRST_FAILURE = "set -e"
"""The shell line heading ``runcmd``. cloud-init joins the entries into one ``sh`` script without ``set -e``:
a failed step did not stop the next ones and only the last step's status reached ``cloud-init status``
(booting the Phoenix node showed it: a volume that could not be mounted, then Phoenix installed on the
root disk and the boot reported done; tests/test_phoenix_boot.py)."""


def cloud_config(
    *,
    write_files: Sequence[WriteFile],
    runcmd: Sequence[Sequence[str]],
    extra: Mapping[str, Any] | None = None,
    stop_at_first_failure: bool = True,
) -> str:
    """A ``#cloud-config`` document. ``runcmd`` entries are argv lists (no shell parsing by cloud-init); the
    first that fails ends the boot, which cloud-init reports as an error, unless ``stop_at_first_failure`` is
    false (later steps that must run anyway, such as enabling a timer that retries a failed first step)."""
    paths = [f.path for f in write_files]
    if len(paths) != len(set(paths)):
        raise ValueError(f"write_files has duplicate paths: {sorted(p for p in paths if paths.count(p) > 1)}")
    doc: dict[str, Any] = dict(extra or {})
    doc["write_files"] = [
        {"path": f.path, "content": f.content, "owner": "root:root", "permissions": f.permissions} for f in write_files
    ]
    doc["runcmd"] = [*([STOP_AT_FIRST_FAILURE] if stop_at_first_failure else []), *(list(cmd) for cmd in runcmd)]
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)
    return "#cloud-config\n" + body


GZIP_MAGIC = b"\x1f\x8b"


def gzip_user_data(text: str) -> bytes:
    """``text`` gzip-compressed, byte for byte the same on every run (``mtime=0``: no timestamp in the
    header), so a preview of an unchanged program shows no change.

    Why: EC2 caps user data at 16 KB raw ("User data is limited to 16 KB, in raw form, before it is
    base64-encoded", AWS EC2 User Guide, "Run commands when you launch an EC2 instance with user data input");
    cloud-init decompresses gzip user data before anything else ("Gzip compressed content: content found to
    be gzip compressed will be uncompressed ... useful because user-data is limited to ~16384 bytes",
    cloud-init docs, "User-data formats"), and a cloud-config compresses to about a quarter.
    """
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def gzip_base64_user_data(text: str) -> str:
    """base64(gzip(``text``)): what EC2's ``user_data_base64`` (an instance) and ``user_data`` (a launch
    template, which always takes base64) carry; EC2 decodes the base64 and hands cloud-init the gzip."""
    return base64.b64encode(gzip_user_data(text)).decode("ascii")


def user_data_text(payload: bytes) -> str:
    """The text cloud-init processes from ``payload`` as EC2 or GCP hands it over: gunzipped when it is gzip
    (cloud-init's ``convert_string`` does the same), UTF-8."""
    if payload[:2] == GZIP_MAGIC:
        payload = gzip.decompress(payload)
    return payload.decode("utf-8")


def written_files(user_data: str) -> dict[str, str]:
    """``path -> content`` of a rendered cloud-config's ``write_files`` (for tests and debugging)."""
    if not user_data.startswith("#cloud-config\n"):
        raise ValueError("not a #cloud-config document")
    doc = yaml.safe_load(user_data)
    return {str(f["path"]): str(f["content"]) for f in doc.get("write_files", [])}


def runcmd_argvs(user_data: str) -> list[list[str]]:
    """The argv entries of a rendered cloud-config's ``runcmd``, in order (shell lines left out)."""
    doc = yaml.safe_load(user_data)
    return [[str(arg) for arg in entry] for entry in doc.get("runcmd", []) if isinstance(entry, list)]


def shell_scripts(user_data: str) -> dict[str, str]:
    """The shell scripts among a rendered cloud-config's ``write_files``."""
    return {path: content for path, content in written_files(user_data).items() if content.startswith(SHELL_SHEBANGS)}


def systemd_unit(sections: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """A systemd unit file from ``{section: [(key, value), ...]}`` (keys may repeat, order kept)."""
    out: list[str] = []
    for section, entries in sections.items():
        if out:
            out.append("")
        out.append(f"[{section}]")
        out.extend(f"{key}={value}" for key, value in entries)
    return "\n".join(out) + "\n"
