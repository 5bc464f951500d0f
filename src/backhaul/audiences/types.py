"""Column types as the audience builder sees them, and how values are read against them.

Five logical types are enough to decide which operators apply and how a value becomes a SQL
literal: ``string``, ``number``, ``boolean``, ``date`` and ``timestamp``. A column's type
comes from the schema file (``type:``) or from the warehouse (``Source.columns``); when
neither says, the value written in the condition decides.
"""

from __future__ import annotations

import math
from datetime import UTC
from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Any


class ColumnType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"


TEMPORAL = (ColumnType.DATE, ColumnType.TIMESTAMP)

# Substrings of warehouse type names, checked in this order (``datetime`` before ``date``).
_WAREHOUSE = (
    ("timestamp", ColumnType.TIMESTAMP),
    ("datetime", ColumnType.TIMESTAMP),
    ("date", ColumnType.DATE),
    ("bool", ColumnType.BOOLEAN),
    ("char", ColumnType.STRING),
    ("text", ColumnType.STRING),
    ("string", ColumnType.STRING),
    ("uuid", ColumnType.STRING),
    ("int", ColumnType.NUMBER),
    ("numeric", ColumnType.NUMBER),
    ("decimal", ColumnType.NUMBER),
    ("double", ColumnType.NUMBER),
    ("float", ColumnType.NUMBER),
    ("real", ColumnType.NUMBER),
    ("number", ColumnType.NUMBER),
)


def from_warehouse(type_name: str) -> ColumnType | None:
    """The logical type of a warehouse type name (``BIGINT``, ``timestamp with time zone``).

    Returns None for types the builder has no operators for (lists, structs, JSON...).
    """
    lowered = type_name.lower()
    if "[" in lowered or lowered.startswith(("struct", "map", "list", "array", "json")):
        return None
    if lowered.startswith(("interval", "point", "geo")):
        return None
    for part, kind in _WAREHOUSE:
        if part in lowered:
            return kind
    return None


def naive_utc(value: datetime) -> datetime:
    """A datetime without a time zone, in UTC (how the builder compares timestamps)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def type_of_value(value: Any) -> ColumnType | None:
    """The logical type a single YAML value stands for (None for null or anything else)."""
    if isinstance(value, bool):
        return ColumnType.BOOLEAN
    if isinstance(value, int | float):
        return ColumnType.NUMBER
    if isinstance(value, datetime):
        return ColumnType.TIMESTAMP
    if isinstance(value, date):
        return ColumnType.DATE
    if isinstance(value, str):
        return ColumnType.STRING
    return None


def coerce(value: Any, kind: ColumnType) -> Any:
    """``value`` read as a value of ``kind``; raises ValueError saying what was expected.

    Dates and timestamps may be written unquoted (YAML reads them as dates) or as ISO text.
    A date is accepted for a timestamp column (it means the whole day; see the compiler).
    """
    if kind is ColumnType.STRING:
        if isinstance(value, str):
            return value
        raise ValueError(f"expects text, got {_shown(value)}; quote the value")
    if kind is ColumnType.NUMBER:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"expects a finite number, got {value}")
            return value
        raise ValueError(f"expects a number, got {_shown(value)}")
    if kind is ColumnType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expects true or false, got {_shown(value)}")
    if kind is ColumnType.DATE:
        if isinstance(value, datetime):
            raise ValueError(f"expects a date (YYYY-MM-DD), got the timestamp {value}")
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"expects a date (YYYY-MM-DD), got {_shown(value)}")
    if isinstance(value, datetime):
        return naive_utc(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        for parse in (datetime.fromisoformat, date.fromisoformat):
            try:
                parsed = parse(value)
            except ValueError:
                continue
            return naive_utc(parsed) if isinstance(parsed, datetime) else parsed
    raise ValueError(
        f"expects a date (YYYY-MM-DD) or a timestamp (YYYY-MM-DD HH:MM:SS), got {_shown(value)}"
    )


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value!r}"
    if value is None:
        return "null"
    return repr(value) if not isinstance(value, date) else str(value)


__all__ = ["TEMPORAL", "ColumnType", "coerce", "from_warehouse", "naive_utc", "type_of_value"]
