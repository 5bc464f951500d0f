"""An independent pure-Python evaluator of audiences over rows of the test world.

It reads the condition models and decides membership row by row, following the semantics
in docs/audiences.md, without using the compiler: nulls fail every positive test, negative
operators are exact complements, a date against a timestamp column means that whole day,
``within_last`` runs from ``now - N days`` to ``now`` inclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.conditions import AudienceCondition
from backhaul.audiences.conditions import ColumnCondition
from backhaul.audiences.conditions import Condition
from backhaul.audiences.conditions import EventCondition
from backhaul.audiences.conditions import GroupCondition
from backhaul.audiences.conditions import RelatedCondition
from backhaul.audiences.conditions import SqlCondition

TYPES: dict[str, dict[str, str]] = {
    "people": {
        "id": "number",
        "name": "string",
        "country": "string",
        "age": "number",
        "score": "number",
        "vip": "boolean",
        "born": "date",
        "seen": "timestamp",
        "account_id": "number",
    },
    "accounts": {"id": "number", "plan": "string", "seats": "number"},
    "orders": {"person_id": "number", "amount": "number", "status": "string"},
    "visits": {"person_id": "number", "at": "timestamp", "page": "string"},
}
RELATED = {"accounts": ("accounts", "account_id", "id"), "orders": ("orders", "id", "person_id")}
EVENTS = {"visits": ("visits", "person_id", "at")}
NEGATIVE = {
    "not_equals": "equals",
    "not_in": "in",
    "is_not_null": "is_null",
    "not_within_last": "within_last",
}


def _null_safe(fn: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    def wrapped(row: dict[str, Any]) -> bool:
        try:
            return bool(fn(row))
        except TypeError:  # a comparison with None: SQL's null, then false
            return False

    return wrapped


# Raw SQL snippets the property tests use, with what they mean in Python.
SQL: dict[str, Callable[[dict[str, Any]], bool]] = {
    "age > 40": _null_safe(lambda p: p.get("age") > 40),
    "age * 2 > 100": _null_safe(lambda p: p.get("age") * 2 > 100),
    "country = 'FR' OR age IS NULL": lambda p: p.get("country") == "FR" or p.get("age") is None,
    "vip": lambda p: p.get("vip") is True,
    "score * 2 >= age": _null_safe(lambda p: p.get("score") * 2 >= p.get("age")),
}


def _day(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _read(raw: Any, kind: str) -> Any:
    if kind in ("date", "timestamp") and isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            return datetime.fromisoformat(raw)
    if kind == "number":
        return float(raw)
    return raw


def _start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def compare(value: Any, kind: str, op: str, raw: Any, days: int | None, now: datetime) -> bool:
    """One test of one value, two-valued."""
    if op in NEGATIVE:
        return not compare(value, kind, NEGATIVE[op], raw, days, now)
    if op == "is_null":
        return value is None
    if value is None:
        return False
    if op == "within_last":
        assert days is not None
        if kind == "date":
            today = now.date()
            return today - timedelta(days=days) <= value <= today
        return now - timedelta(days=days) <= value <= now
    if op == "in":
        return any(compare(value, kind, "equals", r, None, now) for r in raw)
    if op == "between":
        return compare(value, kind, "gte", raw[0], None, now) and compare(
            value, kind, "lte", raw[1], None, now
        )
    r = _read(raw, kind)
    whole_day = kind == "timestamp" and _day(r)
    if op == "equals":
        if whole_day:
            return _start(r) <= value < _start(r) + timedelta(days=1)
        return bool(value == r)
    if op == "contains":
        return r in value
    if op == "starts_with":
        return bool(value.startswith(r))
    if whole_day:
        r = _start(r) + timedelta(days=1) if op in ("gt", "after", "lte") else _start(r)
        return value >= r if op in ("gt", "after", "gte") else value < r
    if op in ("gt", "after"):
        return bool(value > r)
    if op == "gte":
        return bool(value >= r)
    if op in ("lt", "before"):
        return bool(value < r)
    if op == "lte":
        return bool(value <= r)
    raise AssertionError(op)


def _counted(n: int, rule: tuple[str, int]) -> bool:
    kind, threshold = rule
    if kind == "at_least":
        return n >= threshold
    if kind == "at_most":
        return n <= threshold
    return n == threshold


class Evaluator:
    def __init__(
        self,
        data: Mapping[str, list[dict[str, Any]]],
        audiences: Mapping[str, AudienceConfig],
        now: datetime,
    ) -> None:
        self.data = data
        self.audiences = audiences
        self.now = now

    def members(self, config: AudienceConfig) -> set[Any]:
        people = [p for p in self.data.get("people", []) if p.get("id") is not None]
        return {p["id"] for p in people if self.holds(config.match, config.conditions, p)}

    def holds(self, match: str, conditions: list[Condition], person: dict[str, Any]) -> bool:
        results = [self.condition(c, person) for c in conditions]
        if match == "all":
            return all(results)
        if match == "any":
            return any(results)
        return not any(results)

    def _where(self, table: str, row: dict[str, Any], where: list[ColumnCondition]) -> bool:
        return all(
            compare(
                row.get(w.column), TYPES[table][w.column], w.op.value, w.value, w.days, self.now
            )
            for w in where
        )

    def condition(self, cond: Condition, person: dict[str, Any]) -> bool:
        if isinstance(cond, ColumnCondition):
            kind = TYPES["people"][cond.column]
            return compare(
                person.get(cond.column), kind, cond.op.value, cond.value, cond.days, self.now
            )
        if isinstance(cond, GroupCondition):
            return self.holds(cond.match, cond.items, person)
        if isinstance(cond, AudienceCondition):
            other = self.audiences[cond.audience]
            inside = self.holds(other.match, other.conditions, person)
            return not inside if cond.negated else inside
        if isinstance(cond, SqlCondition):
            return SQL[cond.sql](person)
        if isinstance(cond, RelatedCondition):
            table, parent_col, key = RELATED[cond.related]
            mine = person.get(parent_col)
            rows = [
                r
                for r in self.data.get(table, [])
                if mine is not None
                and r.get(key) is not None
                and r.get(key) == mine
                and self._where(table, r, cond.where)
            ]
            return _counted(len(rows), cond.count_rule())
        if isinstance(cond, EventCondition):
            return self._event(cond, person)
        raise AssertionError(cond)

    def _event(self, cond: EventCondition, person: dict[str, Any]) -> bool:
        table, key, ts = EVENTS[cond.event]
        rows = [
            r
            for r in self.data.get(table, [])
            if r.get(key) is not None
            and r.get(key) == person["id"]
            and self._where(table, r, cond.where)
        ]
        timed = cond.first or cond.last
        if timed is not None:
            times = [r[ts] for r in rows if r.get(ts) is not None]
            moment = (min(times) if cond.first else max(times)) if times else None
            return compare(moment, "timestamp", timed.op.value, timed.value, timed.days, self.now)
        if cond.within_last_days is not None:
            low = self.now - timedelta(days=cond.within_last_days)
            rows = [r for r in rows if r.get(ts) is not None and low <= r[ts] <= self.now]
        elif cond.between is not None:
            lo, hi = (_read(v, "timestamp") for v in cond.between)
            lo_t = _start(lo) if _day(lo) else lo
            rows = [
                r
                for r in rows
                if r.get(ts) is not None
                and r[ts] >= lo_t
                and (r[ts] < _start(hi) + timedelta(days=1) if _day(hi) else r[ts] <= hi)
            ]
        return _counted(len(rows), cond.count_rule())
