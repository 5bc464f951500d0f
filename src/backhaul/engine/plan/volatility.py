"""Model columns whose value is new on every run: a random value or the time of the query.

A row's fingerprint covers its key and mapped values, so a column computed with ``uuid()``
or ``now()`` makes every row look changed on every run, and every row is sent again each
time without anything saying why. The plan names such columns (a note, not an error: a
timestamp may be sent on purpose). Only what the query selects counts: ``now()`` in a
``WHERE`` clause changes which rows there are, not their values. ``current_date`` is left
alone: it changes once a day, and a value such as "days since sign-up" is meant to follow it.

The SQL is read with sqlglot in the source's dialect. SQL it cannot read gets no note; the
warehouse, not this check, is the judge of the query.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# Functions sqlglot parses to a node of their own.
_NODES: tuple[type[exp.Expression], ...] = (
    exp.Rand,
    exp.Uuid,
    exp.CurrentTimestamp,
    exp.CurrentTime,
    exp.CurrentDatetime,
    exp.Localtimestamp,
)
# The same, as other dialects spell them (parsed as anonymous functions).
_NAMES = frozenset(
    {
        "now",
        "getdate",
        "sysdate",
        "systimestamp",
        "clock_timestamp",
        "statement_timestamp",
        "transaction_timestamp",
        "get_current_timestamp",
        "localtime",
        "newid",
        "uuid_generate_v4",
        "random_uuid",
        "generate_uuid",
    }
)


def volatile_columns(sql: str, dialect: str | None) -> dict[str, str]:
    """The columns ``sql`` selects with a random value or the current time in them.

    Args:
        sql: The model's query.
        dialect: sqlglot's name for the warehouse's SQL (``None``: sqlglot's own).

    Returns:
        Each such column's name as the query spells it, with the first function found in
        it, as SQL of that dialect (``NOW()``, ``GEN_RANDOM_UUID()``...). Columns selected in a CTE or a subquery count too,
        since a query may pass them on by name or with ``*``.
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, ValueError):  # ValueError: a dialect sqlglot does not know
        return {}
    found: dict[str, str] = {}
    for select in tree.find_all(exp.Select):
        for column in select.selects:
            name = column.alias_or_name
            function = _first_volatile(column.find_all(exp.Func), dialect)
            if name and function and name not in found:
                found[name] = function
    return found


def volatile_notes(sql: str, dialect: str | None, sent: Iterable[str]) -> tuple[str, ...]:
    """One note for each column of ``sent`` (the key and the mapped columns) that
    :func:`volatile_columns` finds; names are compared without regard to case, as most
    warehouses fold unquoted names."""
    by_name = {name.lower(): (name, fn) for name, fn in volatile_columns(sql, dialect).items()}
    notes = []
    for column in dict.fromkeys(sent):
        if hit := by_name.get(column.lower()):
            notes.append(
                f"column `{hit[0]}` is computed with `{hit[1]}`, whose value is new on every "
                "run: every row is sent again each run. Leave it out of the key and the "
                "mappings, or take the value from the data (an `updated_at` column, say)"
            )
    return tuple(notes)


def _first_volatile(functions: Iterable[exp.Func], dialect: str | None) -> str | None:
    for fn in functions:
        if isinstance(fn, _NODES) or (isinstance(fn, exp.Anonymous) and fn.name.lower() in _NAMES):
            return fn.sql(dialect=dialect)
    return None


__all__ = ["volatile_columns", "volatile_notes"]
