"""Arrow values handed to Python code: records, driver rows, template variables, previews.

Every place that turns Arrow data into Python values goes through here, so a value reads the
same in a webhook body, a Postgres row and a Liquid template: a ``MAP`` (at any depth) is a
``dict``, as DuckDB writes it to JSON, not Arrow's default list of ``(key, value)`` pairs.
"""

from __future__ import annotations

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


__all__ = ["rows", "values"]
