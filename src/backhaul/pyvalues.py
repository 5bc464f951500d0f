"""Arrow values handed to Python code (records, driver rows, template variables, previews),
and values shown to a person (the terminal's tables, the web app's dry runs).

Every place that turns Arrow data into Python values goes through here, so a value reads the
same in a webhook body, a Postgres row and a Liquid template: a ``MAP`` (at any depth) is a
``dict``, as DuckDB writes it to JSON, not Arrow's default list of ``(key, value)`` pairs.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa


def rows(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts keyed by column name."""
    out: list[dict[str, Any]] = table.to_pylist(maps_as_pydicts="strict")
    return out


def values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The values of one column, in order."""
    out: list[Any] = column.to_pylist(maps_as_pydicts="strict")
    return out


def shown(value: Any, limit: int | None = None) -> str:
    """``value`` as one table cell (a terminal or a page): null as ``∅``, a list or object
    as JSON, and text a plain print would hide or split across lines (empty, a space at
    either end, a line break or another control character) as a JSON string, quotes and
    escapes included, so ``a`` and ``a `` and ``x\\ny`` read apart. Cut to ``limit``
    characters when given."""
    if value is None:
        return "∅"
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
        if isinstance(value, str) and (
            not text or text != text.strip() or any(not ch.isprintable() for ch in text)
        ):
            text = json.dumps(text, ensure_ascii=False)
    if limit is not None and len(text) > limit:
        return text[: limit - 3] + "…"
    return text


__all__ = ["rows", "shown", "values"]
