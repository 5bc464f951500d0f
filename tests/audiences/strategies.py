"""Hypothesis strategies: rows of the test world and random condition trees over it."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st
from tests.audiences.evaluator import SQL
from tests.audiences.evaluator import TYPES

from backhaul.audiences.conditions import OPS_BY_TYPE
from backhaul.audiences.conditions import TIME_OPS
from backhaul.audiences.conditions import Op
from backhaul.audiences.types import ColumnType

# Text that would end a literal, start a comment or read as SQL if it were pasted in.
HOSTILE = [
    "'",
    "''",
    "\\",
    "\\'",
    "'; DROP TABLE people; --",
    "--",
    "/*",
    "*/",
    "/* x */",
    "' OR 1=1 --",
    "SELECT",
    "NULL",
    '"',
    "`",
    "$$",
    "$1",
    "%s",
    "?",
    ":name",
    "\n",
    "\t",
    "é",
    "ß",
    "Ç",
    "日本",
    "🙂",
    "\u202e",
    "O'Neil",
    "a\\b",
    "bh_model_0",
    '"bh_model_0"',
    " ",
]
STRINGS = st.one_of(
    st.sampled_from(["FR", "DE", "", "a", "ab", *HOSTILE]),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=6,
    ),
)
NOW = datetime(2024, 6, 15, 12, 0, 0)
DAYS = st.dates(min_value=date(2024, 5, 1), max_value=date(2024, 7, 1))
TIMES = st.builds(
    lambda d, s: datetime(d.year, d.month, d.day) + timedelta(seconds=s),
    DAYS,
    st.sampled_from([0, 1, 3600, 43200, 43199, 86399]),
)
INTS = st.integers(min_value=-3, max_value=60)
FLOATS = st.sampled_from([-1.5, 0.0, 0.5, 2.25, 30.0, 100.0])

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": STRINGS,
    "number": st.one_of(INTS, FLOATS),
    "boolean": st.booleans(),
    "date": DAYS,
    "timestamp": TIMES,
}


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy, strategy)


# Built once: hypothesis checks every new strategy object before its first draw, and building
# these per row cost more than drawing from them.
_COUNTRY = _maybe(st.sampled_from(["FR", "DE", "US"]))
_INT = _maybe(INTS)
_FLOAT = _maybe(FLOATS)
_BOOL = _maybe(st.booleans())
_DAY = _maybe(DAYS)
_TIME = _maybe(TIMES)
_ACCOUNT = _maybe(st.integers(min_value=1, max_value=4))
_PLAN = _maybe(st.sampled_from(["free", "pro", "enterprise"]))


@st.composite
def world_data(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    """Rows for every table, with nulls, shared values and keys that match across tables."""
    n = draw(st.integers(min_value=0, max_value=8))
    strings = draw(st.lists(STRINGS, min_size=1, max_size=4))
    pick = _maybe(st.sampled_from(strings))
    people = []
    for i in range(1, n + 1):
        people.append(
            {
                "id": i,
                "name": draw(pick),
                "country": draw(_COUNTRY),
                "age": draw(_INT),
                "score": draw(_FLOAT),
                "vip": draw(_BOOL),
                "born": draw(_DAY),
                "seen": draw(_TIME),
                "account_id": draw(_ACCOUNT),
            }
        )
    if draw(st.booleans()):
        people.append({"id": None, "country": "FR", "age": 30, "account_id": 1})
    person = _maybe(st.integers(min_value=1, max_value=max(n, 1)))
    accounts = [
        {"id": i, "plan": draw(_PLAN), "seats": draw(_INT)}
        for i in range(1, draw(st.integers(min_value=0, max_value=4)) + 1)
    ]
    orders = [
        {"person_id": draw(person), "amount": draw(_FLOAT), "status": draw(pick)}
        for _ in range(draw(st.integers(min_value=0, max_value=10)))
    ]
    visits = [
        {"person_id": draw(person), "at": draw(_TIME), "page": draw(pick)}
        for _ in range(draw(st.integers(min_value=0, max_value=14)))
    ]
    return {
        "people": people,
        "accounts": accounts,
        "orders": orders,
        "visits": visits,
        "_strings": [{"value": s} for s in strings],
    }


def _sorted_pair(kind: str, a: Any, b: Any) -> list[Any]:
    def when(v: Any) -> Any:
        if isinstance(v, datetime):
            return v
        if isinstance(v, date):
            return datetime(v.year, v.month, v.day)
        return v

    return [a, b] if when(a) <= when(b) else [b, a]


@st.composite
def comparison(
    draw: st.DrawFn, table: str, column: str | None = None, strings: list[str] | None = None
) -> dict[str, Any]:
    """A ``{column, op, value|days}`` test valid for the column's type."""
    if column is None:
        column = draw(st.sampled_from(tuple(sorted(c for c in TYPES[table] if c != "id"))))
    kind = TYPES[table][column]
    ops = tuple(sorted(OPS_BY_TYPE[ColumnType(kind)]))
    op = Op(draw(st.sampled_from(ops)))
    values = (
        st.sampled_from(tuple(strings))
        if (strings and kind == "string" and draw(st.booleans()))
        else VALUES[kind]
    )
    if kind == "timestamp":
        values = st.one_of(TIMES, DAYS)
    out: dict[str, Any] = {"column": column, "op": op.value}
    if op in (Op.IS_NULL, Op.IS_NOT_NULL):
        return out
    if op in (Op.WITHIN_LAST, Op.NOT_WITHIN_LAST):
        out["days"] = draw(st.integers(min_value=0, max_value=40))
        return out
    if op in (Op.IN, Op.NOT_IN):
        out["value"] = draw(st.lists(values, min_size=1, max_size=3))
        return out
    if op is Op.BETWEEN:
        out["value"] = _sorted_pair(kind, draw(values), draw(values))
        return out
    out["value"] = draw(values)
    return out


# Tuples, not lists, so that hypothesis reuses each strategy: it checks every new strategy
# object before drawing from it, which cost more than the draws.
@cache
def _comparisons(
    table: str, column: str | None, strings: tuple[str, ...], max_size: int
) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(comparison(table, column, list(strings)), max_size=max_size)


def _count(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("", "at_least", "at_most", "exactly")))
    return {} if not kind else {kind: draw(st.integers(min_value=0, max_value=3))}


_ACCOUNT_COUNTS = st.sampled_from([{}, {"at_least": 1}, {"exactly": 0}, {"at_most": 0}])


@st.composite
def leaf(draw: st.DrawFn, strings: list[str], audiences: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("column", "column", "related", "event", "audience", "sql")))
    if kind == "column":
        return draw(comparison("people", strings=strings))
    if kind == "related":
        related = draw(st.sampled_from(("accounts", "orders")))
        table = related
        where = draw(_comparisons(table, None, tuple(strings), 2))
        out: dict[str, Any] = {"related": related, "where": where}
        count = _count(draw)
        if related == "accounts":  # N:1: only "has one" or "has none"
            count = draw(_ACCOUNT_COUNTS)
        return out | count
    if kind == "event":
        where = draw(_comparisons("visits", "page", tuple(strings), 1))
        out = {"event": "visits", "where": where}
        shape = draw(st.sampled_from(("count", "did_not", "first", "last")))
        if shape in ("first", "last"):
            timed = draw(comparison("visits", "at"))
            timed.pop("column")
            if timed["op"] not in {op.value for op in TIME_OPS}:
                timed = {"op": "within_last", "days": 5}
            return out | {shape: timed}
        if shape == "did_not":
            out["did_not"] = True
        else:
            out |= _count(draw)
        window = draw(st.sampled_from(("", "within", "between")))
        if window == "within":
            out["within_last_days"] = draw(st.integers(min_value=0, max_value=40))
        elif window == "between":
            a, b = draw(st.one_of(TIMES, DAYS)), draw(st.one_of(TIMES, DAYS))
            out["between"] = _sorted_pair("timestamp", a, b)
        return out
    if kind == "audience":
        key = draw(st.sampled_from(("in_audience", "not_in_audience")))
        return {key: draw(st.sampled_from(tuple(audiences)))}
    return {"sql": draw(st.sampled_from(tuple(sorted(SQL))))}


def trees(strings: list[str], audiences: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A list of conditions: leaves and nested all/any/none groups, a few levels deep."""
    node = st.recursive(
        leaf(strings, audiences),
        lambda children: st.builds(
            lambda match, items: {match: items},
            st.sampled_from(["all", "any", "none"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        max_leaves=6,
    )
    return st.lists(node, max_size=4)
