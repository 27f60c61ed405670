"""Round-trip editing of a stack file: set ``config:`` keys and keep everything an operator wrote around them.

The sync commands (``lmrun regions sync``, ``lmrun images sync``, ``lmrun models pin``) write what they
learnt from a cloud or the Hugging Face Hub as plain config that reviewers can diff. ruamel.yaml's round-trip
mode keeps the operator's comments, key order, quoting and indentation: only the keys a command owns change,
in place; missing ones are appended (or, inside a list's entries, inserted next to their related key).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from lmrun.spec.stackfile import StackFileError


def write_stack_keys(path: Path, values: Mapping[str, Any]) -> None:
    """Set ``config:`` keys of a stack file, keeping every comment, the key order and the indentation.

    Existing keys are updated in place; missing keys are appended to ``config:``. The new text is checked
    (re-read with a plain YAML parser) before it atomically replaces the file.
    """
    _atomic_write(path, edited_stack_text(path, values))


def edited_stack_text(path: Path, values: Mapping[str, Any]) -> str:
    """The text :func:`write_stack_keys` would write (checked the same way), without writing it."""
    rt, document, config = _load_config(path)
    for key, value in values.items():
        _replace_value(config, key, _to_node(value))

    new_text = _dump(rt, document)
    reread = _reread_config(new_text)
    for key, value in values.items():
        if reread.get(key) != value:
            raise StackFileError(f"{path}: rewriting {key} produced {reread.get(key)!r}, expected {value!r}")
    return new_text


def edited_list_entries(
    path: Path, updates: Mapping[str, Mapping[int, Mapping[str, Any]]], *, after: str | None = None
) -> str:
    """The stack file's text with fields of list entries set, checked like :func:`edited_stack_text` (write it
    with :func:`write_stack_text`).

    ``updates`` maps a ``config:`` key holding a list to ``{entry index: {field: scalar}}``, fields in order.
    A field the entry has is replaced in place (its end-of-line comment stays); a missing one is inserted
    right after the previous field of the update (after ``after`` for the first), so related keys stay
    together; the comment lines that followed that key move below the inserted one.
    """
    rt, document, config = _load_config(path)
    for key, entries in updates.items():
        items = config.get(key)
        if not isinstance(items, CommentedSeq):
            raise StackFileError(f"{path}: {key} must be a list to edit its entries")
        for index, fields in entries.items():
            item = items[index] if 0 <= index < len(items) else None
            if not isinstance(item, CommentedMap):
                raise StackFileError(f"{path}: {key}[{index}] is not a mapping")
            anchor = after
            for field, value in fields.items():
                if field in item:
                    item[field] = value
                else:
                    _insert_after(item, anchor, field, value)
                anchor = field

    new_text = _dump(rt, document)
    reread = _reread_config(new_text)
    for key, entries in updates.items():
        items = reread.get(key)
        for index, fields in entries.items():
            entry = items[index] if isinstance(items, list) and index < len(items) else None
            got = {field: entry.get(field) for field in fields} if isinstance(entry, dict) else None
            if got != dict(fields):
                raise StackFileError(f"{path}: rewriting {key}[{index}] produced {got!r}, expected {dict(fields)!r}")
    return new_text


def write_stack_text(path: Path, text: str) -> None:
    """Atomically replace the stack file with ``text`` (from :func:`edited_list_entries`)."""
    _atomic_write(path, text)


def _load_config(path: Path) -> tuple[YAML, CommentedMap, CommentedMap]:
    """The round-trip dumper for the file, its document and its ``config:`` mapping (created when absent)."""
    text = path.read_text()
    rt = _round_trip_yaml(text)
    document = rt.load(text)
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    config = document.get("config")
    if config is None:
        config = document["config"] = CommentedMap()
    if not isinstance(config, CommentedMap):
        raise StackFileError(f"{path}: 'config' must be a mapping")
    return rt, document, config


def _dump(rt: YAML, document: CommentedMap) -> str:
    buffer = StringIO()
    rt.dump(document, buffer)
    return buffer.getvalue()


def _reread_config(text: str) -> dict[str, Any]:
    """The ``config:`` of the new text as a plain YAML parser (and so Pulumi) reads it."""
    config: dict[str, Any] = (yaml.safe_load(text) or {}).get("config") or {}
    return config


def stack_diff(path: Path, new_text: str) -> str:
    """A unified diff from the stack file on disk to ``new_text`` ("" when they are equal)."""
    old = path.read_text().splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new_text.splitlines(keepends=True), str(path), f"{path} (new)"))


def _round_trip_yaml(text: str) -> YAML:
    """A ruamel round-trip dumper that writes new blocks with the file's own indentation."""
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap an operator's long values
    mapping, sequence, offset = _guess_indent(text)
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    rt.explicit_start = text.lstrip().startswith("---")
    return rt


def _guess_indent(text: str) -> tuple[int, int, int]:
    """``(mapping, sequence, offset)`` as ruamel wants them, read from the first nested key and list.

    ruamel applies one indentation to the whole document, so it must match what the file already uses
    or the untouched parts would be re-indented. Default: the style of ``pulumi config set`` (2, 4, 2).
    """
    mapping = 2
    parent_indent: int | None = None
    offset: int | None = None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if stripped.startswith("- ") or stripped == "-":
            if parent_indent is not None and offset is None:
                offset = max(indent - parent_indent, 0)
            continue
        if indent > 0 and parent_indent == 0 and mapping == 2 and offset is None:
            mapping = indent
        parent_indent = indent
        if offset is not None:
            break
    if offset is None:
        offset = mapping
    return mapping, offset + 2, offset


def _to_node(value: Any) -> Any:
    """Plain lists/dicts as ruamel nodes; empty ones in flow style (``[]``, ``{}``) as a person writes them."""
    if isinstance(value, Mapping):
        node: CommentedMap | CommentedSeq = CommentedMap((k, _to_node(v)) for k, v in value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        node = CommentedSeq(_to_node(v) for v in value)
    else:
        return value
    if not node:
        node.fa.set_flow_style()
    return node


_SEQ_SLOT = 0  # ruamel: index in ``ca.items[i]`` of the comment after sequence item i
_MAP_SLOT = 2  # ruamel: index in ``ca.items[key]`` of the comment after a mapping value

_Location = tuple[CommentedMap | CommentedSeq, Any, int]


def _replace_value(parent: CommentedMap, key: str, new: Any) -> None:
    """Replace ``parent[key]`` (or append it), keeping the comment lines that follow the old value.

    ruamel attaches the full-line comments *after* a block value (typically the comment introducing the
    next key) to the old value's last leaf, so replacing the value naively drops them. They are moved to
    the new value's last leaf. An end-of-line comment on the key itself stays; one on an item of the old
    value goes with that item, since the item is rewritten.
    """
    if key not in parent:
        rest = None
        if parent:
            last = _tail_location(parent, list(parent)[-1])
            eol, rest = _split_comment(_get_comment(last))
            _set_comment(last, eol)  # an end-of-block comment moves below the appended key
        parent[key] = new
        if rest is not None:
            _attach_comment(parent, key, rest)
        return
    old = _tail_location(parent, key)
    eol, rest = _split_comment(_get_comment(old))
    _set_comment(old, None)
    parent[key] = new
    if old[0] is parent:  # the old value was a scalar or empty: its end-of-line comment is the key's
        _set_comment((parent, key, _MAP_SLOT), eol)
    if rest is not None:
        _attach_comment(parent, key, rest)


def _insert_after(parent: CommentedMap, anchor: str | None, key: str, value: Any) -> None:
    """Insert ``parent[key]`` right after ``parent[anchor]`` (appended when there is no such key), moving the
    full-line comments that followed the anchor's value below the new key."""
    if anchor is None or anchor not in parent:
        _replace_value(parent, key, value)
        return
    location = _tail_location(parent, anchor)
    eol, rest = _split_comment(_get_comment(location))
    _set_comment(location, eol)
    parent.insert(list(parent).index(anchor) + 1, key, value)
    if rest is not None:
        _attach_comment(parent, key, rest)


def _tail_location(parent: CommentedMap, key: Any) -> _Location:
    """Where ruamel keeps the comment that follows ``parent[key]``: on its deepest last leaf."""
    value = parent[key]
    if isinstance(value, CommentedMap) and value:
        return _tail_location(value, list(value)[-1])
    if isinstance(value, CommentedSeq) and value:
        last = value[-1]
        if isinstance(last, CommentedMap) and last:
            return _tail_location(last, list(last)[-1])
        return (value, len(value) - 1, _SEQ_SLOT)
    return (parent, key, _MAP_SLOT)


def _get_comment(location: _Location) -> CommentToken | None:
    node, index, slot = location
    entry = node.ca.items.get(index)
    token: CommentToken | None = entry[slot] if entry else None
    return token


def _set_comment(location: _Location, token: CommentToken | None) -> None:
    node, index, slot = location
    entry = node.ca.items.setdefault(index, [None, None, None, None])
    entry[slot] = token
    if not any(entry):
        del node.ca.items[index]


def _split_comment(token: CommentToken | None) -> tuple[CommentToken | None, CommentToken | None]:
    """Split a trailing comment into its end-of-line part and the full lines after it.

    ruamel stores ``value  # eol\n  # next\n`` as one token; a token without an end-of-line part starts
    with a newline (``\n  # next\n``), which is the form the full lines must keep when moved.
    """
    if token is None:
        return None, None
    value = str(token.value)
    if not value.startswith("#"):
        return None, token
    first, _, rest = value.partition("\n")
    eol = CommentToken(first + "\n", token.start_mark, None, token.column)
    return eol, (CommentToken("\n" + rest, token.start_mark) if rest else None)


def _attach_comment(parent: CommentedMap, key: Any, token: CommentToken) -> None:
    """Put full-line comments after ``parent[key]``, behind any end-of-line comment already there."""
    location = _tail_location(parent, key)
    existing = _get_comment(location)
    if existing is not None:
        token = CommentToken(str(existing.value) + str(token.value)[1:], existing.start_mark, None, existing.column)
    _set_comment(location, token)


def _atomic_write(path: Path, text: str) -> None:
    """Replace the file in one step: an interrupted sync never leaves half a stack file."""
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
