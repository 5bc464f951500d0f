"""One YAML file of a project as plain Python data, with the line of every key.

YAML lets a file name a node (``&a``) and repeat it (``*a``). The parser shares repeated
nodes, so nesting aliases costs nothing to parse but grows exponentially once turned into
plain data: twenty lines can stand for billions of values. Before building anything, the
file's event stream is walked once, counting the values every alias stands for and the
nesting depth; a file beyond :data:`MAX_ALIAS_VALUES` or :data:`MAX_DEPTH` is refused with
the line where it went too far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.events import CollectionEndEvent
from ruamel.yaml.events import CollectionStartEvent
from ruamel.yaml.events import Event
from ruamel.yaml.events import ScalarEvent

from backhaul.config.project import Positions
from backhaul.errors import ConfigError
from backhaul.files import NotReadable
from backhaul.files import read_text

# Values that aliases may add to a file in all. A project file has hundreds of values; a
# shared block of mappings repeated in many syncs stays far below this.
MAX_ALIAS_VALUES = 100_000
# Mappings and lists inside each other. Project files nest a handful of levels.
MAX_DEPTH = 64


def read_yaml(path: Path, root: Path) -> tuple[Any, Positions]:
    """Parse one YAML file into plain Python data and the line of every key.

    Raises:
        ConfigError: The file cannot be read, is not valid YAML, or its aliases or nesting
            go beyond the limits above.
    """
    rel = rel_path(path, root)
    try:
        text = read_text(path)
    except NotReadable as exc:
        raise ConfigError(exc.reason, file=rel) from None
    try:
        check_shape(text, rel)
        node = YAML(typ="rt").load(text)
    except YAMLError as exc:
        line = None
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = " ".join(p for p in (exc.context, exc.problem) if p) or problem
        raise ConfigError(f"malformed YAML: {problem}", file=rel, line=line) from None
    lines: dict[str, int] = {}
    data = _plain(node, "", lines)
    return data, Positions(Path(rel), lines)


def check_shape(text: str, file: str) -> None:
    """Refuse a file whose aliases expand too far, refer to themselves, or nest too deep.

    Walks the parser's events only (no nodes are built), so it costs one pass over the text.

    Raises:
        ConfigError: Naming the file and the line of the alias or opening bracket at fault.
        YAMLError: The text is not valid YAML (the caller reports it).
    """
    sizes: dict[str, int] = {}  # anchor -> values it stands for, once its node has ended
    open_anchors: set[str] = set()
    frames: list[tuple[int, str | None]] = [(0, None)]  # (values so far, anchor) per level
    added = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, CollectionStartEvent):
            if len(frames) > MAX_DEPTH:
                raise _refuse(
                    f"nested more than {MAX_DEPTH} levels deep; project files need a few",
                    file,
                    event,
                )
            if event.anchor:
                open_anchors.add(event.anchor)
            frames.append((0, event.anchor))
        elif isinstance(event, CollectionEndEvent):
            count, anchor = frames.pop()
            if anchor:
                sizes[anchor] = count + 1
                open_anchors.discard(anchor)
            frames[-1] = (frames[-1][0] + count + 1, frames[-1][1])
        elif isinstance(event, ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
                open_anchors.discard(event.anchor)
            frames[-1] = (frames[-1][0] + 1, frames[-1][1])
        elif isinstance(event, AliasEvent):
            if event.anchor in open_anchors:
                raise _refuse(
                    f"alias *{event.anchor} refers to a node that contains it", file, event
                )
            size = sizes.get(event.anchor, 1)  # an unknown anchor: the composer says so
            added += size
            if added > MAX_ALIAS_VALUES:
                raise _refuse(
                    f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (at *{event.anchor}); "
                    "write the repeated part out or use fewer nested aliases",
                    file,
                    event,
                )
            frames[-1] = (frames[-1][0] + size, frames[-1][1])


def _refuse(message: str, file: str, event: Event) -> ConfigError:
    mark = event.start_mark
    return ConfigError(message, file=file, line=mark.line + 1 if mark is not None else None)


def _plain(node: Any, key: str, lines: dict[str, int]) -> Any:
    """Convert ruamel's round-trip nodes to plain types, recording key lines (1-based)."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for k, v in node.items():
            child = f"{key}.{k}" if key else str(k)
            try:
                line, _ = node.lc.key(k)
            except KeyError:  # a key merged in with `<<: *anchor` sits where the map starts
                line = node.lc.line
            lines[child] = line + 1
            out[str(k)] = _plain(v, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, v in enumerate(node):
            child = f"{key}.{i}" if key else str(i)
            line, _ = node.lc.item(i)
            lines[child] = line + 1
            items.append(_plain(v, child, lines))
        return items
    # Scalar subclasses (LiteralScalarString, ScalarFloat...) become their base type.
    for base in (bool, int, float, str):
        if isinstance(node, base):
            return base(node)
    return node


def rel_path(path: Path, root: Path) -> str:
    """``path`` relative to the project folder when inside it, for messages."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


__all__ = ["MAX_ALIAS_VALUES", "MAX_DEPTH", "check_shape", "read_yaml", "rel_path"]
