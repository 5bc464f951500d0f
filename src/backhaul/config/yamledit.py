"""Change a project file's keys the way a person would: everything else stays as written.

The web app's editors send the values of the keys they show; :func:`edit_yaml` lays them
over the file's text with ruamel.yaml's round-trip mode, so comments, key order, quoting,
flow lists and the indentation of the parts not changed survive. A key whose value is the
same as before is not touched at all (its quoting and comments stay); a new key goes at
the end; ``None`` removes a key. Lists of mappings (a sync's ``mappings``) are changed item
by item, so a comment beside an unchanged mapping stays beside it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

WIDTH = 4096  # never fold a long line the person wrote on one line
_DASH = re.compile(r"^( *)- ", re.MULTILINE)
_KEY = re.compile(r"^( *)[^\s#-][^:\n]*:\s*(#.*)?$", re.MULTILINE)


def _yaml(text: str) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = WIDTH
    mapping, sequence, offset = _indents(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _indents(text: str) -> tuple[int, int, int]:
    """The indentation the file already uses: (mapping, sequence, dash offset).

    A file with ``key:`` then ``  - item`` keeps its dashes indented; one with ``- item``
    right under ``key:`` keeps them flush. New files get the first style.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        dash = _DASH.match(line)
        if dash is None or i == 0:
            continue
        above = lines[i - 1]
        key = _KEY.match(above)
        if key is None:
            continue
        offset = len(dash.group(1)) - len(key.group(1))
        if offset in (0, 2):
            return 2, offset + 2, offset
    return 2, 4, 2


def load(text: str | None) -> CommentedMap:
    """The file's round-trip mapping (empty for no file or an empty one)."""
    if not text or not text.strip():
        return CommentedMap()
    found = _yaml(text).load(text)
    if not isinstance(found, CommentedMap):
        raise ValueError("the file is not a mapping of `key: value` lines")
    return found


def _node(value: Any) -> Any:
    """A new value as ruamel should write it: multi-line text as a ``|`` block, a mapping
    inside a list (a sync's mapping) on one ``{...}`` line, as people write them."""
    if isinstance(value, str) and "\n" in value.strip():
        return LiteralScalarString(value.strip("\n") + "\n")
    if isinstance(value, Mapping):
        out = CommentedMap((k, _node(v)) for k, v in value.items())
        return out
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_node(v) for v in value)
        if all(isinstance(v, str | int | float | bool) for v in value):
            seq.fa.set_flow_style()
        for item in seq:
            if isinstance(item, CommentedMap) and all(
                not isinstance(v, Mapping | list) for v in item.values()
            ):
                item.fa.set_flow_style()
        return seq
    return value


def plain(value: Any) -> Any:
    """Round-trip nodes as plain dicts, lists and scalars (for comparing values)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _merge(node: CommentedMap, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            if key in node:
                del node[key]
            continue
        old = node.get(key)
        if key in node and plain(old) == plain(value):
            continue  # unchanged: keep it exactly as written
        if isinstance(old, CommentedMap) and isinstance(value, Mapping):
            _merge(old, {k: value.get(k) for k in [*old.keys(), *value.keys()]})
        elif isinstance(old, CommentedSeq) and isinstance(value, list):
            _merge_list(old, value)
        else:
            node[key] = _node(value)


def _merge_list(seq: CommentedSeq, values: list[Any]) -> None:
    """Change a list item by item: same items stay as written, changed ones in place."""
    for i, value in enumerate(values):
        if i >= len(seq):
            seq.append(_node(value))
            if isinstance(seq[i], CommentedMap) and i > 0 and isinstance(seq[i - 1], CommentedMap):
                # A new item follows the style of the one before (flow `{...}` or block).
                if seq[i - 1].fa.flow_style():
                    seq[i].fa.set_flow_style()
                else:
                    seq[i].fa.set_block_style()
            continue
        old = seq[i]
        if plain(old) == plain(value):
            continue
        if isinstance(old, CommentedMap) and isinstance(value, Mapping):
            _merge(old, {k: value.get(k) for k in [*old.keys(), *value.keys()]})
        else:
            seq[i] = _node(value)
    del seq[len(values) :]


def edit_yaml(text: str | None, values: Mapping[str, Any]) -> str:
    """``text`` with the top-level keys of ``values`` set (``None``: removed).

    Nested mappings are merged key by key (a key missing from the new mapping is removed);
    lists are changed item by item. Everything not changed keeps its comments and format.
    """
    doc = load(text)
    _merge(doc, values)
    result = dump_text(_yaml(text or ""), doc)
    return "" if result.strip() == "{}" else result


def dump_text(yaml: YAML, data: Any) -> str:
    """``data`` as the text ``yaml`` writes it."""
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


__all__ = ["dump_text", "edit_yaml", "load", "plain"]
