"""Check an audience against its catalog: names, operators by column type, values, cycles.

Every problem is a :class:`Problem` with the dotted key of the audience file it is about
(``conditions.2.where.0.op``), so the loader turns it into ``file:line: key: message``.
These checks run at load with the types the schema declares, and again in ``backhaul
validate`` with the warehouse's types, and they are what the compiler relies on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot.errors import SqlglotError

from backhaul.audiences.audience import SPLIT_COLUMN
from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.catalog import Catalog
from backhaul.audiences.catalog import Table
from backhaul.audiences.conditions import DAYS
from backhaul.audiences.conditions import LIST_VALUE
from backhaul.audiences.conditions import NO_VALUE
from backhaul.audiences.conditions import OPS_BY_TYPE
from backhaul.audiences.conditions import AudienceCondition
from backhaul.audiences.conditions import ColumnCondition
from backhaul.audiences.conditions import Condition
from backhaul.audiences.conditions import EventCondition
from backhaul.audiences.conditions import GroupCondition
from backhaul.audiences.conditions import Op
from backhaul.audiences.conditions import RelatedCondition
from backhaul.audiences.conditions import SqlCondition
from backhaul.audiences.conditions import TimeCondition
from backhaul.audiences.conditions import walk
from backhaul.audiences.types import ColumnType
from backhaul.audiences.types import coerce
from backhaul.audiences.types import type_of_value


@dataclass(frozen=True)
class Problem:
    """Something wrong in an audience file, at a dotted key."""

    key: str
    message: str


def values_of(op: Op, value: Any) -> list[Any]:
    """The scalar values a condition compares with (none, one, a list, or two bounds)."""
    if op in NO_VALUE or op in DAYS or value is None:
        return []
    if op in LIST_VALUE or op is Op.BETWEEN:
        return list(value) if isinstance(value, list) else [value]
    return [value]


def effective_type(table: Table, column: str, op: Op, value: Any) -> ColumnType | None:
    """The column's type as known, else the type its values stand for.

    A column of unknown type compared by days is a timestamp; dates and timestamps mixed
    in one list read as timestamps.
    """
    known = table.type_of(column)
    if known is None and column == table.timestamp:
        known = ColumnType.TIMESTAMP
    if known is not None:
        return known
    if op in DAYS:
        return ColumnType.TIMESTAMP
    kinds = {type_of_value(v) for v in values_of(op, value)} - {None}
    if kinds == {ColumnType.DATE, ColumnType.TIMESTAMP}:
        return ColumnType.TIMESTAMP
    return next(iter(kinds)) if len(kinds) == 1 else None


def _hint(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"known: {', '.join(names) or 'none'}"


def _what(table: Table) -> str:
    if table.kind == "parent":
        return f"the parent model `{table.model}`"
    return f"{table.kind} model `{table.name}`"


def check_comparison(table: Table, column: str, op: Op, value: Any, key: str) -> list[Problem]:
    """One column test: the column exists, the operator fits its type, the values parse."""
    if table.closed and column not in table.columns:
        return [
            Problem(
                f"{key}.column",
                f"`{column}` is not a column of {_what(table)} ({_hint(column, table.columns)})",
            )
        ]
    values = values_of(op, value)
    kinds = {type_of_value(v) for v in values} - {None}
    kind = effective_type(table, column, op, value)
    if kind is None:
        if len(kinds) > 1:
            shown = " and ".join(sorted(str(k) for k in kinds))
            return [Problem(f"{key}.value", f"the values mix {shown}; use one type")]
        return []
    if op not in OPS_BY_TYPE[kind]:
        allowed = ", ".join(sorted(OPS_BY_TYPE[kind]))
        return [
            Problem(
                f"{key}.op",
                f"`{op}` does not apply to the {kind} column `{column}` (use one of: {allowed})",
            )
        ]
    read: list[Any] = []
    for v in values:
        try:
            read.append(coerce(v, kind))
        except ValueError as exc:
            return [Problem(f"{key}.value", f"the {kind} column `{column}` {exc}")]
    if op is Op.BETWEEN and len(read) == 2 and _above(read[0], read[1]):
        return [Problem(f"{key}.value", "the first bound is above the second; swap them")]
    return []


def _above(low: Any, high: Any) -> bool:
    from datetime import date
    from datetime import datetime

    if isinstance(low, date) and isinstance(high, date):
        lo = low if isinstance(low, datetime) else datetime(low.year, low.month, low.day)
        hi = high if isinstance(high, datetime) else datetime(high.year, high.month, high.day)
        return lo > hi
    try:
        return bool(low > high)
    except TypeError:
        return False


def check_audience(
    name: str,
    config: AudienceConfig,
    catalog: Catalog,
    audiences: Mapping[str, AudienceConfig],
    *,
    dialect: str,
) -> list[Problem]:
    """Every problem of one audience against its catalog and the other audiences."""
    problems = _columns(config, catalog)
    problems += _conditions(config.conditions, "conditions", catalog, audiences, dialect)
    problems += _tests(name, config, catalog, audiences)
    return problems


def _columns(config: AudienceConfig, catalog: Catalog) -> list[Problem]:
    problems: list[Problem] = []
    parent = catalog.parent
    for i, column in enumerate(config.columns or []):
        if parent.closed and column not in parent.columns:
            problems.append(
                Problem(
                    f"columns.{i}",
                    f"`{column}` is not a column of {_what(parent)} "
                    f"({_hint(column, parent.columns)})",
                )
            )
        elif config.splits is not None and column == SPLIT_COLUMN:
            problems.append(
                Problem(
                    f"columns.{i}",
                    f"`{SPLIT_COLUMN}` is the column the splits fill in; leave the parent's "
                    f"`{SPLIT_COLUMN}` out of `columns` or rename it in the model",
                )
            )
    return problems


def _conditions(
    conditions: list[Condition],
    key: str,
    catalog: Catalog,
    audiences: Mapping[str, AudienceConfig],
    dialect: str,
) -> list[Problem]:
    problems: list[Problem] = []
    for here, cond in walk(conditions, key):
        if isinstance(cond, ColumnCondition):
            problems += check_comparison(catalog.parent, cond.column, cond.op, cond.value, here)
        elif isinstance(cond, RelatedCondition):
            problems += _related(cond, here, catalog)
        elif isinstance(cond, EventCondition):
            problems += _event(cond, here, catalog)
        elif isinstance(cond, AudienceCondition):
            problems += _membership(cond, here, catalog, audiences)
        elif isinstance(cond, SqlCondition):
            try:
                sqlglot.condition(cond.sql, dialect=dialect)
            except SqlglotError as exc:
                problems.append(Problem(f"{here}.sql", _sql_problem(exc)))
        elif isinstance(cond, GroupCondition) and not cond.items:
            problems.append(Problem(f"{here}.{cond.match}", "a group needs at least one condition"))
    return problems


def _sql_problem(exc: SqlglotError) -> str:
    found = getattr(exc, "errors", None) or []
    if found and isinstance(found[0], dict) and found[0].get("highlight"):
        where = found[0]
        return (
            f"the SQL is not one boolean expression: unexpected `{where['highlight']}` at "
            f"column {where.get('col')}"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
    return f"the SQL does not parse: {first}"


def _joined(
    cond: RelatedCondition | EventCondition, key: str, catalog: Catalog
) -> tuple[Table | None, list[Problem]]:
    """The related or event table of ``cond`` and the problems of its ``where`` list (or
    None and why, for a table the schema does not have)."""
    if isinstance(cond, RelatedCondition):
        field, what, name, tables = "related", "related model", cond.related, catalog.related
    else:
        field, what, name, tables = "event", "event", cond.event, catalog.events
    table = tables.get(name)
    if table is None:
        message = f"unknown {what} `{name}` in schema `{catalog.name}` ({_hint(name, tables)})"
        return None, [Problem(f"{key}.{field}", message)]
    problems: list[Problem] = []
    for j, w in enumerate(cond.where):
        problems += check_comparison(table, w.column, w.op, w.value, f"{key}.where.{j}")
    return table, problems


def _related(cond: RelatedCondition, key: str, catalog: Catalog) -> list[Problem]:
    table, problems = _joined(cond, key, catalog)
    if table is None:
        return problems
    kind, n = cond.count_rule()
    if table.cardinality in ("1:1", "N:1") and kind in ("at_least", "exactly") and n > 1:
        problems.append(
            Problem(
                f"{key}.{kind}",
                f"`{kind}: {n}` can never hold: each parent row has at most one "
                f"`{cond.related}` row ({table.cardinality}); use `at_least: 1` or `exactly: 0`",
            )
        )
    return problems


def _event(cond: EventCondition, key: str, catalog: Catalog) -> list[Problem]:
    table, problems = _joined(cond, key, catalog)
    if table is None:
        return problems
    ts = table.timestamp or ""
    if cond.between is not None:
        found = check_comparison(table, ts, Op.BETWEEN, cond.between, key)
        problems += [Problem(f"{key}.between", p.message) for p in found]
    for which in ("first", "last"):
        timed: TimeCondition | None = getattr(cond, which)
        if timed is not None:
            found = check_comparison(table, ts, timed.op, timed.value, f"{key}.{which}")
            problems += [
                Problem(p.key.replace(f"{key}.{which}.column", f"{key}.{which}"), p.message)
                for p in found
            ]
    return problems


def _membership(
    cond: AudienceCondition,
    key: str,
    catalog: Catalog,
    audiences: Mapping[str, AudienceConfig],
) -> list[Problem]:
    field = "not_in_audience" if cond.negated else "in_audience"
    other = audiences.get(cond.audience)
    if other is None:
        return [
            Problem(
                f"{key}.{field}",
                f"unknown audience `{cond.audience}` ({_hint(cond.audience, audiences)})",
            )
        ]
    if other.schema_ != catalog.name:
        return [
            Problem(
                f"{key}.{field}",
                f"audience `{cond.audience}` is built on schema `{other.schema_}`, not "
                f"`{catalog.name}`: membership needs the same parent",
            )
        ]
    return []


def references(conditions: list[Condition]) -> list[tuple[str, str]]:
    """The audiences a tree refers to, with the key of each reference."""
    return [
        (f"{k}.{'not_in_audience' if c.negated else 'in_audience'}", c.audience)
        for k, c in walk(conditions, "conditions")
        if isinstance(c, AudienceCondition)
    ]


def membership_cycles(audiences: Mapping[str, AudienceConfig]) -> dict[str, tuple[str, str]]:
    """Audiences whose membership conditions loop back to themselves.

    Returns:
        ``{audience: (key of the reference that starts the loop, "a → b → a")}``.
    """
    found: dict[str, tuple[str, str]] = {}
    for start in sorted(audiences):
        for key, first in references(audiences[start].conditions):
            path = _path_back(first, start, audiences, [start, first], set())
            if path is not None and start not in found:
                found[start] = (key, " → ".join(path))
    return found


def _path_back(
    node: str,
    target: str,
    audiences: Mapping[str, AudienceConfig],
    path: list[str],
    seen: set[str],
) -> list[str] | None:
    if node == target:
        return path
    if node in seen or node not in audiences:
        return None
    seen.add(node)
    for _, nxt in references(audiences[node].conditions):
        found = _path_back(nxt, target, audiences, [*path, nxt], seen)
        if found is not None:
            return found
    return None


def uses_now(config: AudienceConfig, audiences: Mapping[str, AudienceConfig]) -> bool:
    """Whether membership depends on the current time (through any referenced audience)."""
    pending, seen = [config], set()
    while pending:
        current = pending.pop()
        for _, cond in walk(current.conditions, "conditions"):
            if isinstance(cond, ColumnCondition) and cond.op in DAYS:
                return True
            if isinstance(cond, EventCondition):
                timed = cond.first or cond.last
                if cond.within_last_days is not None or (timed is not None and timed.op in DAYS):
                    return True
            if isinstance(cond, RelatedCondition) and any(w.op in DAYS for w in cond.where):
                return True
            if isinstance(cond, EventCondition) and any(w.op in DAYS for w in cond.where):
                return True
            if isinstance(cond, AudienceCondition) and cond.audience not in seen:
                seen.add(cond.audience)
                other = audiences.get(cond.audience)
                if other is not None:
                    pending.append(other)
    return False


def _tests(
    name: str, config: AudienceConfig, catalog: Catalog, audiences: Mapping[str, AudienceConfig]
) -> list[Problem]:
    problems: list[Problem] = []
    models = catalog.models
    relative = bool(config.tests) and uses_now(config, audiences)
    for i, case in enumerate(config.tests):
        for model in case.rows:
            if model not in models:
                problems.append(
                    Problem(
                        f"tests.{i}.rows.{model}",
                        f"`{model}` is not a model of schema `{catalog.name}` "
                        f"({_hint(model, models)})",
                    )
                )
        if relative and case.now is None:
            problems.append(
                Problem(
                    f"tests.{i}",
                    f"audience `{name}` counts days back from now: set `now:` (like "
                    "2024-06-01 12:00:00) so the case gives the same result every day",
                )
            )
    return problems


__all__ = [
    "Problem",
    "check_audience",
    "check_comparison",
    "effective_type",
    "membership_cycles",
    "references",
    "uses_now",
    "values_of",
]
