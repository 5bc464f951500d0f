"""`validate --check-destinations`: each sync checked against what its destination reports.

The static checks (:mod:`backhaul.config.checks`) know the files; these ask the
destination itself, read-only: its credentials work (``check()``), its object and the
mapped fields exist and can be written (the connector's own ``prepare``, which only
reads, for connectors that offer :meth:`field_kinds`), and each mapped field holds the
kind of value the model column (or its ``cast``) gives it. Nothing is written, no
snapshot is opened. Every problem is one ``file:line: key: message`` line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from backhaul.config.models import Cast
from backhaul.config.models import ColumnMapping
from backhaul.config.models import StaticMapping
from backhaul.config.models import TemplateMapping
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError

# The kind of value a warehouse type holds, by a word in its name (first match wins).
_WAREHOUSE_KINDS = (
    ("TIMESTAMP", "datetime"),
    ("DATETIME", "datetime"),
    ("DATE", "date"),
    ("BOOL", "bool"),
    ("INT", "number"),
    ("DECIMAL", "number"),
    ("NUMERIC", "number"),
    ("DOUBLE", "number"),
    ("FLOAT", "number"),
    ("REAL", "number"),
)
_CAST_KINDS = {
    Cast.STRING: "text",
    Cast.INT: "number",
    Cast.FLOAT: "number",
    Cast.BOOL: "bool",
    Cast.DATE: "date",
    Cast.TIMESTAMP: "datetime",
    Cast.JSON: "text",
}
# What a destination field of each kind cannot take (text fields take anything).
_REFUSES = {
    "number": {"text", "bool", "date", "datetime"},
    "bool": {"number", "date", "datetime", "text"},
    "date": {"number", "bool"},
    "datetime": {"number", "bool"},
}


def warehouse_kind(type_name: str) -> str:
    """``number``, ``bool``, ``date``, ``datetime`` or ``text`` for a warehouse type."""
    upper = type_name.upper()
    return next((kind for word, kind in _WAREHOUSE_KINDS if word in upper), "text")


def check_destinations(project: Project, names: Iterable[str]) -> dict[str, list[ConfigError]]:
    """Each named sync's problems against its destination (empty lists: it fits)."""
    return {name: _check(project, project.sync(name)) for name in names}


def _check(project: Project, sync: SyncDef) -> list[ConfigError]:
    from backhaul.calls import NullRecorder
    from backhaul.engine.runner import open_destination

    try:
        dest, _secrets = open_destination(project, sync, NullRecorder(), uuid.uuid4().hex)
    except BackhaulError as exc:
        return [_at(sync, "destination", exc.message)]
    return asyncio.run(_ask_and_close(project, sync, dest))


async def _ask_and_close(project: Project, sync: SyncDef, dest: Any) -> list[ConfigError]:
    # One event loop for the questions and the close: the HTTP clients belong to it.
    try:
        return await _ask(project, sync, dest)
    finally:
        await dest.close()


async def _ask(project: Project, sync: SyncDef, dest: Any) -> list[ConfigError]:
    try:
        await dest.check()
    except BackhaulError as exc:
        return [_at(sync, "destination", exc.message)]
    kinds_of = getattr(dest, "field_kinds", None)
    if kinds_of is None:
        return []  # the connector cannot describe its fields: credentials were the check
    from backhaul.engine.workspace import resolve_match

    cfg = sync.config
    fields = {m.field: pa.string() for m in cfg.mappings}
    needs = bool(type(dest).capabilities.needs_match_fields)
    try:
        match = list(resolve_match(sync, project.models[cfg.model], needs))
    except ConfigError:
        match = list(cfg.match.fields)  # the static checks say what is wrong with it
    try:
        await dest.prepare(fields, match, cfg.object)
        kinds: dict[str, str] = await kinds_of(cfg.object)
    except BackhaulError as exc:
        return [_at(sync, "mappings", exc.message)]
    return _kind_errors(project, sync, kinds)


def _kind_errors(project: Project, sync: SyncDef, kinds: dict[str, str]) -> list[ConfigError]:
    from backhaul.engine.workspace import open_source

    model = project.models[sync.config.model]
    source = open_source(project, model)
    try:
        columns = dict(source.columns(model.sql))
    finally:
        source.close()
    errors: list[ConfigError] = []
    for i, m in enumerate(sync.config.mappings):
        wanted = kinds.get(m.field.split(".")[0])
        if wanted is None or isinstance(m, StaticMapping):
            continue
        if m.cast is not None:
            have, what = _CAST_KINDS[m.cast], f"cast to {m.cast.value}"
        elif isinstance(m, TemplateMapping):
            have, what = "text", "a template (text)"
        elif isinstance(m, ColumnMapping) and m.column in columns:
            have, what = warehouse_kind(columns[m.column]), f"`{m.column}` ({columns[m.column]})"
        else:
            continue
        if have in _REFUSES.get(wanted, set()):
            message = (
                f"`{m.field}` holds {wanted} values at the destination, but the mapping "
                f"sends {what}: map a {wanted} column or set `cast`"
            )
            errors.append(_at(sync, f"mappings.{i}", message))
    return errors


def _at(sync: SyncDef, key: str, message: str) -> ConfigError:
    first = message.strip().splitlines()[0] if message.strip() else "the destination refused"
    return ConfigError(first, file=str(sync.positions.file), line=sync.positions.line(key), key=key)


__all__ = ["check_destinations", "warehouse_kind"]
