"""No shell or Python program longer than 10 lines hides inside a Python string literal of the product.

Programs that run on a VM (or on the operator's machine) live as files under ``render/scripts/``, where
``make lint`` runs shellcheck, ruff and mypy on them; a renderer only prepends a header of values
(:mod:`lmrun.render.script_files`). This test parses every ``.py`` file of the product folders (the folders of
``[tool.setuptools] package-dir`` in pyproject.toml) with :mod:`ast` and fails on a string literal that holds
such a program.

What counts as a program (a heuristic, kept deliberately simple; the self-tests below pin it down):

* **Which strings.** Every ``str`` constant and every f-string (its literal parts, each ``{...}`` replaced by a
  placeholder), and a chain of such strings joined with ``+`` taken as one string. Documentation is left
  out: a string that is a statement on its own (module, class and function docstrings, and the attribute
  docstrings that follow an assignment), since no code can run it.
* **Markers.** A line is *program-like* when, stripped of its indentation, it is a shebang (``#!``); a shell
  strict-mode line (``set -e``, ``set -eu``, ``set -euo pipefail``, ...); a shell block end (``fi``, ``done``,
  ``esac``, alone or followed by ``;``, ``)``, a redirection or a pipe); a shell block start (``if ...; then``,
  ``for/while ...; do``, ``case ... in``); a shell function (``name() {``); ``trap ... EXIT``; ``umask 077``;
  an assignment from a command substitution (``name="$(...)``); or a Python statement that data never starts
  with (``import x``, ``from x import y``, ``def f(``, ``class C:``/``class C(``, ``if __name__ ==``,
  ``with ...:``, ``try:``).
* **Extent.** A program embedded in data (a shell script in a cloud-config ``content: |`` block, a heredoc in
  a systemd unit) is indented deeper than the data around it, so each marker's program is the run of lines
  around it that are blank or indented at least as deep as the marker. Its size is the number of non-blank
  lines in that run; at indentation 0 that is the whole string.
* **Verdict.** A string fails when some marker's program has more than ``MAX_LINES`` (10) non-blank lines.
  Kubernetes/YAML, systemd units, cloud-config and other data have no markers, so they never fail, however
  long; a systemd unit or cloud-config that embeds a shell program of more than 10 lines does.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmrun.domain.pins import oldest_system_python
from lmrun.render import script_files
from lmrun.render.cloudinit import SCRIPT_DIR

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 10
PLACEHOLDER = "{...}"

_MARKERS = [
    re.compile(r"^#!"),
    re.compile(r"^set -[a-z]*[eu][a-z]*( |$)"),
    re.compile(r"^(fi|done|esac)(\s*$|\s*[;)|<>&])"),
    re.compile(r"^(if|elif|while|until|for) .*; *(then|do)$"),
    re.compile(r"^case .* in$"),
    re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\(\) *\{$"),
    re.compile(r"^trap .+ (EXIT|ERR|INT|TERM)$"),
    re.compile(r"^umask 0?[0-7]{3}$"),
    re.compile(r"^(local )?[A-Za-z_]\w*=\"?\$\("),
    re.compile(r"^import [A-Za-z_][\w.]*( as \w+)?(, *[A-Za-z_][\w.]*)*$"),
    re.compile(r"^from [A-Za-z_.][\w.]* import "),
    re.compile(r"^(async )?def [A-Za-z_]\w*\("),
    re.compile(r"^class [A-Za-z_]\w*[(:]"),
    re.compile(r"^if __name__ =="),
    re.compile(r"^(with .*|try):$"),
]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def is_marker(line: str) -> bool:
    stripped = line.strip()
    return any(m.search(stripped) for m in _MARKERS)


def program_lines(text: str) -> int:
    """Non-blank lines of the largest program in ``text`` (0 when it has no marker): see the module doc."""
    lines = text.splitlines()
    best = 0
    for i, line in enumerate(lines):
        if not is_marker(line):
            continue
        depth = _indent(line)

        def inside(j: int, depth: int = depth) -> bool:
            return not lines[j].strip() or _indent(lines[j]) >= depth

        start, end = i, i
        while start > 0 and inside(start - 1):
            start -= 1
        while end + 1 < len(lines) and inside(end + 1):
            end += 1
        best = max(best, sum(1 for j in range(start, end + 1) if lines[j].strip()))
    return best


def _text(node: ast.expr) -> str | None:
    """The text of a string literal, an f-string (placeholders for its fields) or a ``+`` chain of them."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = [_text(v) if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values]
        return "".join(p or "" for p in parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return left + right if left is not None and right is not None else None
    return None


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    lines: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: a string literal holds a {self.lines}-line program (at most {MAX_LINES})"


def findings(source: str, path: str = "<string>") -> list[Finding]:
    """Every string literal of ``source`` holding a program of more than ``MAX_LINES`` lines."""
    tree = ast.parse(source, filename=path)
    documentation = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)
    }
    out: list[Finding] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.expr) and id(node) not in documentation:
            text = _text(node)  # a ``+`` chain of strings is judged once, as one string
            if text is not None:
                size = program_lines(text)
                if size > MAX_LINES:
                    out.append(Finding(path, node.lineno, size))
                return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def product_files() -> Iterator[Path]:
    """Every ``.py`` file of the folders pyproject maps into the ``lmrun`` package (tests excluded)."""
    package_dir: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for folder in sorted(set(package_dir.values()) - {"tests"}):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def test_no_product_string_holds_a_program() -> None:
    files = list(product_files())
    assert len(files) > 30 and any(p.parent.name == "render" for p in files), files
    found = [str(f) for p in files for f in findings(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, "programs belong in files under render/scripts/:\n" + "\n".join(found)


# --- the heuristic on synthetic modules ---------------------------------------------------------------------

BASH_11 = """#!/bin/bash
set -euo pipefail
region="$1"
name="$2"
for attempt in $(seq 1 60); do
    if aws ssm get-parameter --region "$region" --name "$name"; then
        exit 0
    fi
    sleep 10
done
exit 1
"""
YAML_11 = """apiVersion: v1
kind: Service
metadata:
  name: lmrun-svc-qwen
  namespace: lmrun
spec:
  type: NodePort
  ports:
  - port: 8000
    nodePort: 30080
  externalTrafficPolicy: Cluster
"""
UNIT_11 = """[Unit]
Description=vLLM
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=vllm
ExecStart=/usr/local/lib/lmrun/vllm-serve.sh
Restart=on-failure
RestartSec=15

[Install]
WantedBy=multi-user.target
"""
PYTHON_11 = """import json
import sys
created, out, name, kms_key = sys.argv[1:5]
with open(created) as f:
    key = json.load(f)["data"]["key"]
request = {"Name": name, "Value": key, "Type": "SecureString"}
if kms_key:
    request["KeyId"] = kms_key
with open(out, "w") as f:
    json.dump(request, f)
print(out)
"""


def _module(value: str, *, fstring: bool = False) -> str:
    prefix = "f" if fstring else ""
    return f"SCRIPT = {prefix}{value!r}\n"


def _cloud_config(script: str) -> str:
    return "#cloud-config\nwrite_files:\n- path: /usr/local/lib/lmrun/x.sh\n  content: |\n" + (
        textwrap.indent(script, "    ") + "  permissions: '0755'\nruncmd:\n- [/usr/local/lib/lmrun/x.sh]\n"
    )


def test_heuristic_catches_an_11_line_bash_string_and_spares_10_lines_and_data() -> None:
    assert {len([line for line in s.splitlines() if line.strip()]) for s in (BASH_11, YAML_11, PYTHON_11)} == {11}
    assert [f.lines for f in findings(_module(BASH_11))] == [11]
    ten = "\n".join(BASH_11.splitlines()[1:]) + "\n"
    assert findings(_module(ten)) == [], "10 lines are allowed"
    assert findings(_module(YAML_11)) == [] and findings(_module(UNIT_11)) == [], "data is not a program"
    assert findings(_module(YAML_11 * 5)) == [], "however long"
    assert [f.lines for f in findings(_module(PYTHON_11))] == [11]


def test_heuristic_sees_fstrings_concatenations_and_embedded_programs_but_not_docstrings() -> None:
    templated = BASH_11.replace('"$1"', "{region}")
    assert [f.lines for f in findings(_module(templated, fstring=True))] == [11]
    head, tail = BASH_11[:60], BASH_11[60:]
    assert [f.lines for f in findings(f"SCRIPT = {head!r} + {tail!r}\n")] == [11]
    # A cloud-config (data) embedding an 11-line script counts; embedding a 10-line one does not.
    assert [f.lines for f in findings(_module(_cloud_config(BASH_11)))] == [11]
    short = "\n".join(BASH_11.splitlines()[:10]) + "\n"
    assert findings(_module(_cloud_config(short))) == []
    # A systemd unit with an 11-line heredoc-style ExecStart script counts too.
    unit = UNIT_11.replace("ExecStart=/usr/local/lib/lmrun/vllm-serve.sh\n", textwrap.indent(BASH_11, "  "))
    assert [f.lines for f in findings(_module(unit))] == [11]
    docstrings = f'"""Module doc.\n\n{BASH_11}"""\n\n\ndef f() -> None:\n    """{PYTHON_11}"""\n'
    assert findings(docstrings) == []
    # Passed as an argument, a program is still a program.
    assert [f.line for f in findings(f"x = 1\nrun({BASH_11!r})\n")] == [2]


@pytest.mark.parametrize(
    ("line", "marker"),
    [
        ("#!/usr/bin/env bash", True),
        ("set -eu", True),
        ("set -euo pipefail", True),
        ('    done <"$file"', True),
        ("fi", True),
        ("esac", True),
        ('if [ -z "$x" ]; then', True),
        ("while read -r line; do", True),
        ('case "$value" in', True),
        ("find_device() {", True),
        ("trap 'rm -f \"$tmp\"' EXIT", True),
        ("umask 077", True),
        ('tmp="$(mktemp)"', True),
        ("local token=$(cat x)", True),
        ("import sqlite3", True),
        ("from pathlib import Path", True),
        ("def main(argv):", True),
        ("set_real_ip_from 10.0.0.0/8;", False),
        ("done: true", False),
        ("description: import of data", False),
        ("Description=Refresh the Phoenix OTLP exporter settings from SSM", False),
        ("- [systemctl, enable, --now, lmrun-vllm.service]", False),
        ("umask: 0022 is the default", False),
        ("value: $(not a command)", False),
    ],
)
def test_marker_lines(line: str, marker: bool) -> None:
    assert is_marker(line) is marker


# --- the programs' files: render/scripts/ ----------------------------------------------------------------------

SCRIPTS = REPO / "render" / "scripts"


def test_every_script_file_is_shipped_loaded_and_used_by_a_renderer() -> None:
    names = script_files.script_names()
    assert names == sorted(p.name for p in SCRIPTS.iterdir() if p.suffix in (".sh", ".py")), names
    # The renderers, and the clouds' secret stores (renderer inputs that ship their fetch helpers).
    modules = [*(REPO / "render").glob("*.py"), *REPO.glob("*/secret_store.py")]
    renderers = "\n".join(p.read_text() for p in modules)
    for name in names:
        assert script_files.script_text(name) == (SCRIPTS / name).read_text(), name
        assert f'"{name}"' in renderers, f"render/scripts/{name} is used by no renderer"
    with pytest.raises(ValueError, match="script file name"):
        script_files.script_text("../k3s.py")


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_shell_scripts_start_with_a_shebang_then_strict_mode(name: str) -> None:
    """The header goes right after the shebang, before the body switches strict mode on."""
    lines = (SCRIPTS / name).read_text().splitlines()
    assert lines[0] in ("#!/bin/bash", "#!/bin/sh", "#!/usr/bin/env bash"), lines[0]
    strict = "set -eu" if lines[0] == "#!/bin/sh" else "set -euo pipefail"
    assert strict in lines[1:10], f"{name}: no '{strict}' near the top"


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_python_helpers_are_python_3_9_and_stdlib_only(name: str) -> None:
    """They run with the VM's own python3 (3.9 on the oldest images: the image catalog), with nothing installed."""
    assert oldest_system_python() == (3, 9)
    tree = ast.parse((SCRIPTS / name).read_text(), feature_version=oldest_system_python())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
    assert ast.get_docstring(tree), f"{name}: say what it does and who runs it"


def test_scripts_default_to_the_directory_the_renderers_write_them_to() -> None:
    defaults = {
        match for p in SCRIPTS.glob("*.sh") for match in re.findall(r"\$\{LMRUN_SCRIPT_DIR:-([^}]*)\}", p.read_text())
    }
    assert defaults == {SCRIPT_DIR}


def test_header_values_reach_the_script_exactly(tmp_path: Path) -> None:
    """Whatever the characters, bash sees the values the renderer passed (shlex.quote), lists as arrays."""
    odd = 'it\'s $HOME `id` "quoted" a\\b *'
    lines = script_files.header_lines(
        {"PLAIN": "us-east-1", "ODD": odd, "EMPTY": "", "PORT": 6443, "ARGS": ["a b", odd, ""]}
    )
    script = tmp_path / "header.sh"
    script.write_text(
        "\n".join([*lines, 'printf "%s\\n" "$PLAIN" "$ODD" "[$EMPTY]" "$PORT" "${#ARGS[@]}" "${ARGS[@]}"'])
    )
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["us-east-1", odd, "[]", "6443", "3", "a b", odd, ""]
    for bad in ({"lower": "x"}, {"X": "two\nlines"}, {"X": ["a", "b\nc"]}, {"X": True}):
        with pytest.raises(ValueError):
            script_files.header_lines(bad)


def test_render_script_puts_the_note_and_header_right_after_the_shebang() -> None:
    text = script_files.render_script("ssm-get.sh", {"EXAMPLE": "x y"})
    shebang, body = script_files.script_text("ssm-get.sh").split("\n", 1)
    shipped = "".join(line for line in body.splitlines(keepends=True) if not line.startswith("##"))
    assert text == f"{shebang}\n# {script_files.RENDERED_NOTE}\nEXAMPLE='x y'\n{shipped}"
    assert script_files.render_script("ssm-get.sh", note=None) == f"{shebang}\n{shipped}"
    # ``##`` lines document the file and stay out of user data; the usage line and ``#`` comments ship.
    source = script_files.script_text("vllm-install.sh")
    rendered = script_files.render_script("vllm-install.sh", note=None)
    assert "\n## Header: UV_VENV, VENV" in source and "##" not in rendered
    assert rendered.splitlines() == [line for line in source.splitlines() if not line.startswith("##")]
    assert "# Usage: ssm-get.sh REGION PARAMETER_NAME DEST\n" in text
