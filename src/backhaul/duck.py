"""Small helpers over DuckDB's Python API that differ between its 1.x and 2.x releases."""

from __future__ import annotations

import re
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


# DuckDB's size syntax (its `memory_limit` setting), without the trailing words it ignores.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)
_SHARE = re.compile(r"^\s*\d+(?:\.\d+)?\s*%\s*$")
_UNIT = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
MIN_MEMORY_LIMIT = 16 * 1000**2  # below this DuckDB cannot plan even a small sync


def check_memory_limit(value: Any) -> str:
    """``value`` when it is a memory limit DuckDB accepts and that leaves room to plan.

    Raises:
        ValueError: A message saying what is accepted (for the project file's error).
    """
    accepted = (
        "must be a size such as 512MB, 2GB or 1.5GiB (units B, KB, MB, GB, TB or KiB, MiB, "
        "GiB, TiB) or a share of the RAM such as 50%"
    )
    if not isinstance(value, str):  # `memory_limit: 1024` has no unit
        raise ValueError(f"{accepted}, not {value!r}")
    size = _SIZE.match(value)
    if size is None and not _SHARE.match(value):
        raise ValueError(f"{accepted}, not {value!r}")
    if size is not None and float(size.group(1)) * _UNIT[size.group(2).lower()] < MIN_MEMORY_LIMIT:
        raise ValueError(f"must be at least 16MB for DuckDB to plan in, not {value!r}")
    con = duckdb.connect(":memory:")
    try:  # DuckDB has the last word: its releases differ (shares of RAM came in 1.x)
        con.execute("SET memory_limit = ?", [value])
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(
            f"{accepted}; DuckDB {duckdb.__version__} refuses {value!r}: {first}"
        ) from None
    finally:
        con.close()
    return value
