"""Small helpers over DuckDB's Python API that differ between its 1.x and 2.x releases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa


def arrow_table(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> pa.Table:
    """Run ``sql`` and return its whole result as an Arrow table."""
    rel = con.sql(sql, params=params) if params else con.sql(sql)
    to_table = getattr(rel, "to_arrow_table", None) or rel.arrow
    table: pa.Table = to_table()
    return table


def arrow_reader(con: duckdb.DuckDBPyConnection, sql: str, batch_size: int) -> pa.RecordBatchReader:
    """Run ``sql`` and stream its result as Arrow record batches."""
    rel = con.sql(sql)
    to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
    reader: pa.RecordBatchReader = to_reader(batch_size)
    return reader


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The first value of the first row (or None), leaving no open result behind."""
    rows = con.execute(sql, params).fetchall() if params else con.execute(sql).fetchall()
    return rows[0][0] if rows else None
