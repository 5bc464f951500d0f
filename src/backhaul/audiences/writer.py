"""Write an audience back to ``audiences/<name>.yml``.

Saving never rewrites what did not change: the existing file is loaded with ruamel.yaml's
round-trip loader and only the keys whose values changed are replaced, so a hand-edited
file keeps its comments, key order and quoting. A file written in the canonical style (the
style of a new file, below) loads and saves back byte for byte.

Canonical style: block mappings at the top, a block list of conditions where each condition
is one flow mapping (``- {column: plan, op: equals, value: enterprise}``) and each group is a
block mapping holding a block list; ``columns``, ``tags`` and expected keys as flow lists;
split groups and fixture rows as flow mappings; two-space indents, list dashes indented.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.comments import CommentedSeq

from backhaul.audiences.audience import AudienceConfig
from backhaul.config.yamledit import dump_text
from backhaul.errors import ConfigError
from backhaul.files import NotReadable
from backhaul.files import read_text_if_any

GROUP_KEYS = ("all", "any", "none")
_FLOW_LISTS = {"columns", "tags", "expect_in", "expect_out"}


def round_trip_yaml() -> YAML:
    """The ruamel.yaml instance audience files are read and written with."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long flow mapping: folding is not stable across saves
    yaml.preserve_quotes = True
    return yaml


def audience_data(config: AudienceConfig) -> dict[str, Any]:
    """The audience as plain YAML data: only the keys that were written or set."""
    data = config.model_dump(by_alias=True, exclude_unset=True, mode="python")
    return dict(_plain(data))


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _same(old: Any, new: Any) -> bool:
    """Equal as YAML values: ``1``, ``1.0`` and ``true`` are different values here."""
    if isinstance(old, dict) and isinstance(new, dict):
        return list(old) == list(new) and all(_same(old[k], new[k]) for k in new)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool) and old == new
    if isinstance(old, datetime) or isinstance(new, datetime):
        return isinstance(old, datetime) and isinstance(new, datetime) and old == new
    if isinstance(old, date) or isinstance(new, date):
        return isinstance(old, date) and isinstance(new, date) and old == new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return isinstance(old, float) == isinstance(new, float) and old == new
    if isinstance(old, str) and isinstance(new, str):
        return str(old) == str(new)
    if old is None or new is None:
        return old is None and new is None
    return bool(old == new)


def _in_conditions(path: tuple[Any, ...]) -> bool:
    """``path`` lies in the condition tree: conditions, N, any, N, all, N..."""
    if not path or path[0] != "conditions":
        return False
    for i, part in enumerate(path[1:], start=1):
        if (i % 2 == 1) != isinstance(part, int):
            return False
        if i % 2 == 0 and part not in GROUP_KEYS:
            return False
    return True


def _flow(path: tuple[Any, ...], value: Any) -> bool:
    """Whether a new mapping or list at ``path`` is written in flow style."""
    if not value:
        return True
    if _in_conditions(path):
        if isinstance(path[-1], int):  # one condition: a group is a block, the rest flow
            return not (isinstance(value, dict) and any(k in value for k in GROUP_KEYS))
        return False  # a list of conditions
    if len(path) == 0:
        return False
    if path[-1] in _FLOW_LISTS:
        return True
    if path[0] == "splits":
        return len(path) >= 3
    if path[0] == "tests":
        return len(path) >= 5 or path[-1] in _FLOW_LISTS
    return len(path) > 1


def _fresh(value: Any, path: tuple[Any, ...]) -> Any:
    """A new YAML node for ``value`` in the canonical style."""
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            node[k] = _fresh(v, (*path, k))
        if _flow(path, value):
            node.fa.set_flow_style()
        else:
            node.fa.set_block_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq(_fresh(v, (*path, i)) for i, v in enumerate(value))
        if _flow(path, value):
            seq.fa.set_flow_style()
        else:
            seq.fa.set_block_style()
        return seq
    return value


def _merge(node: Any, new: Any, path: tuple[Any, ...]) -> Any:
    """``node`` changed to hold ``new``, keeping every part (and comment) that is unchanged."""
    if _same(node, new):
        return node
    if isinstance(node, CommentedMap) and isinstance(new, dict):
        for key in [k for k in node if k not in new]:
            del node[key]
        for position, (key, value) in enumerate(new.items()):
            if key in node:
                node[key] = _merge(node[key], value, (*path, key))
            else:
                node.insert(position, key, _fresh(value, (*path, key)))
        return node
    if isinstance(node, CommentedSeq) and isinstance(new, list):
        for i, value in enumerate(new):
            if i < len(node):
                node[i] = _merge(node[i], value, (*path, i))
            else:
                node.append(_fresh(value, (*path, i)))
        del node[len(new) :]
        return node
    return _fresh(new, path)


def dump_audience(config: AudienceConfig, original: str | None = None) -> str:
    """The YAML text of an audience: ``original`` updated in place, or a new canonical file."""
    yaml = round_trip_yaml()
    data = audience_data(config)
    doc = yaml.load(original) if original is not None else None
    doc = _merge(doc, data, ()) if isinstance(doc, CommentedMap) else _fresh(data, ())
    return dump_text(yaml, doc)


def save_audience(path: str | Path, config: AudienceConfig) -> str:
    """Write an audience to ``path`` (keeping the existing file's comments); returns the text.

    The file is replaced atomically: a reader sees the old file or the new one.
    """
    target = Path(path)
    try:
        original = read_text_if_any(target)
    except NotReadable as exc:
        raise ConfigError(f"cannot save the audience over {target}: it {exc.reason}") from None
    text = dump_audience(config, original)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return text


__all__ = ["audience_data", "dump_audience", "round_trip_yaml", "save_audience"]
