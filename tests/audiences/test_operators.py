"""Every operator and condition kind, on a small hand-made world, in DuckDB and in Postgres.

The expected members are worked out by hand from the rows below (now = 2024-06-15 12:00).
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from typing import Any

import pytest
from tests.audiences.world import DuckWorld
from tests.audiences.world import audience

D = date
T = datetime
DATA: dict[str, list[dict[str, Any]]] = {
    "people": [
        {
            "id": 1,
            "name": "Ann O'Neil",
            "country": "FR",
            "age": 30,
            "score": 1.5,
            "vip": True,
            "born": D(1990, 5, 1),
            "seen": T(2024, 6, 14, 10),
            "account_id": 10,
        },
        {
            "id": 2,
            "name": "bob",
            "country": "DE",
            "age": 45,
            "score": 2.0,
            "vip": False,
            "born": D(1985, 1, 15),
            "seen": T(2024, 6, 1),
            "account_id": 11,
        },
        {"id": 3},
        {
            "id": 4,
            "name": "Çelik",
            "country": "US",
            "age": 18,
            "score": -0.5,
            "vip": False,
            "born": D(2006, 6, 15),
            "seen": T(2024, 5, 1, 23, 59, 59),
            "account_id": 12,
        },
        {
            "id": 5,
            "name": "dan\\x",
            "country": "FR",
            "age": 60,
            "score": 10.0,
            "vip": True,
            "born": D(1964, 12, 31),
            "seen": T(2024, 6, 15, 12),
            "account_id": 10,
        },
        {"id": None, "name": "no key", "country": "FR", "age": 30, "vip": True, "account_id": 10},
    ],
    "accounts": [
        {"id": 10, "plan": "enterprise", "seats": 100},
        {"id": 11, "plan": "free", "seats": 1},
        {"id": 12},
        {"id": 13, "plan": "enterprise", "seats": 5},
    ],
    "orders": [
        {"person_id": 1, "amount": 100.0, "status": "paid"},
        {"person_id": 1, "amount": 50.0, "status": "refunded"},
        {"person_id": 1, "amount": 20.0, "status": "paid"},
        {"person_id": 2, "amount": 10.0, "status": "paid"},
        {"person_id": 4},
        {"person_id": None, "amount": 5.0, "status": "paid"},
    ],
    "visits": [
        {"person_id": 1, "at": T(2024, 6, 15, 11), "page": "/pricing"},
        {"person_id": 1, "at": T(2024, 6, 10, 9), "page": "/docs"},
        {"person_id": 1, "at": T(2024, 5, 1), "page": "/pricing"},
        {"person_id": 2, "at": T(2024, 6, 14, 12), "page": "/pricing"},
        {"person_id": 2, "at": T(2024, 6, 16), "page": "/pricing"},
        {"person_id": 4, "at": T(2024, 1, 1), "page": "/home"},
        {"person_id": 5, "at": T(2024, 6, 15, 12), "page": None},
        {"person_id": None, "at": T(2024, 6, 15), "page": "/x"},
    ],
}
EVERYONE = {1, 2, 3, 4, 5}


@pytest.fixture(scope="module")
def w(world: DuckWorld) -> DuckWorld:
    world.load(DATA)
    return world


def c(column: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"column": column, "op": op, **extra}
    if value is not None:
        out["value"] = value
    return out


COLUMN_CASES = [
    (c("country", "equals", "FR"), {1, 5}),
    (c("country", "not_equals", "FR"), {2, 3, 4}),
    (c("country", "in", ["FR", "DE"]), {1, 2, 5}),
    (c("country", "not_in", ["FR", "DE"]), {3, 4}),
    (c("name", "contains", "'"), {1}),
    (c("name", "contains", "\\"), {5}),
    (c("name", "contains", "O'Ne"), {1}),
    (c("name", "starts_with", "Ç"), {4}),
    (c("name", "starts_with", "b"), {2}),
    (c("name", "is_null"), {3}),
    (c("name", "is_not_null"), {1, 2, 4, 5}),
    (c("age", "gt", 30), {2, 5}),
    (c("age", "gte", 30), {1, 2, 5}),
    (c("age", "lt", 30), {4}),
    (c("age", "lte", 30), {1, 4}),
    (c("age", "between", [18, 45]), {1, 2, 4}),
    (c("age", "in", [18, 60]), {4, 5}),
    (c("score", "equals", 1.5), {1}),
    (c("score", "lt", 0), {4}),
    (c("vip", "equals", True), {1, 5}),
    (c("vip", "not_equals", True), {2, 3, 4}),
    (c("vip", "equals", False), {2, 4}),
    (c("born", "before", D(1985, 1, 15)), {5}),
    (c("born", "after", D(1985, 1, 15)), {1, 4}),
    (c("born", "equals", D(1990, 5, 1)), {1}),
    (c("born", "equals", "1990-05-01"), {1}),  # a quoted date reads as a date
    (c("born", "between", [D(1985, 1, 15), D(1990, 5, 1)]), {1, 2}),
    (c("born", "within_last", days=6575), {4}),  # born exactly 6575 days before now
    (c("born", "within_last", days=6574), set()),
    (c("born", "not_within_last", days=6575), {1, 2, 3, 5}),
    (c("seen", "equals", D(2024, 6, 14)), {1}),  # a date on a timestamp: the whole day
    (c("seen", "equals", T(2024, 6, 15, 12)), {5}),
    (c("seen", "after", D(2024, 6, 1)), {1, 5}),  # after the day: from June 2nd
    (c("seen", "gt", D(2024, 6, 1)), {1, 5}),
    (c("seen", "gte", D(2024, 6, 1)), {1, 2, 5}),
    (c("seen", "lte", D(2024, 6, 1)), {2, 4}),  # up to the end of the day
    (c("seen", "lt", D(2024, 6, 1)), {4}),
    (c("seen", "before", T(2024, 6, 1, 10)), {2, 4}),
    (c("seen", "between", [D(2024, 5, 1), D(2024, 6, 1)]), {2, 4}),
    (c("seen", "in", [D(2024, 6, 14), D(2024, 5, 1)]), {1, 4}),
    (c("seen", "within_last", days=1), {5}),
    (c("seen", "within_last", days=2), {1, 5}),
    (c("seen", "not_within_last", days=2), {2, 3, 4}),
    (c("account_id", "is_null"), {3}),
]


@pytest.mark.parametrize(("condition", "expected"), COLUMN_CASES, ids=lambda x: str(x))
def test_parent_column_operators(
    w: DuckWorld, condition: dict[str, Any], expected: set[int]
) -> None:
    assert w.members(audience([condition])) == expected


RELATED_CASES = [
    ({"related": "accounts", "where": [c("plan", "equals", "enterprise")]}, {1, 5}),
    (
        {"related": "accounts", "where": [c("plan", "equals", "enterprise")], "exactly": 0},
        {2, 3, 4},
    ),
    ({"related": "accounts"}, {1, 2, 4, 5}),  # 3 has no account
    ({"related": "accounts", "where": [c("seats", "gte", 50)]}, {1, 5}),
    ({"related": "accounts", "where": [c("plan", "not_equals", "free")]}, {1, 4, 5}),
    ({"related": "orders", "at_least": 2}, {1}),
    ({"related": "orders", "where": [c("status", "equals", "paid")]}, {1, 2}),
    ({"related": "orders", "exactly": 1}, {2, 4}),
    ({"related": "orders", "at_most": 1}, {2, 3, 4, 5}),
    ({"related": "orders", "at_least": 0}, EVERYONE),
    ({"related": "orders", "where": [c("amount", "gt", 30)], "at_least": 2}, {1}),
    ({"related": "orders", "where": [c("status", "not_equals", "paid")]}, {1, 4}),
    (
        {"related": "orders", "where": [c("status", "equals", "paid"), c("amount", "lt", 50)]},
        {1, 2},
    ),
]


@pytest.mark.parametrize(("condition", "expected"), RELATED_CASES, ids=lambda x: str(x))
def test_related_model_conditions(
    w: DuckWorld, condition: dict[str, Any], expected: set[int]
) -> None:
    assert w.members(audience([condition])) == expected


EVENT_CASES = [
    ({"event": "visits"}, {1, 2, 4, 5}),
    ({"event": "visits", "within_last_days": 1}, {1, 2, 5}),  # the boundary is included
    ({"event": "visits", "at_least": 2, "within_last_days": 1}, set()),
    ({"event": "visits", "exactly": 2}, {2}),
    ({"event": "visits", "did_not": True, "within_last_days": 7}, {3, 4}),
    ({"event": "visits", "did_not": True}, {3}),
    ({"event": "visits", "at_most": 1}, {3, 4, 5}),
    ({"event": "visits", "at_least": 2, "where": [c("page", "starts_with", "/pricing")]}, {1, 2}),
    ({"event": "visits", "between": [D(2024, 6, 10), D(2024, 6, 14)]}, {1, 2}),
    ({"event": "visits", "between": [T(2024, 6, 10, 10), T(2024, 6, 15, 11)]}, {1, 2}),
    ({"event": "visits", "where": [c("page", "is_null")]}, {5}),
    ({"event": "visits", "first": {"op": "before", "value": D(2024, 2, 1)}}, {4}),
    ({"event": "visits", "first": {"op": "within_last", "days": 40}}, {2, 5}),
    ({"event": "visits", "last": {"op": "not_within_last", "days": 3}}, {2, 3, 4}),
    (
        {
            "event": "visits",
            "last": {"op": "after", "value": D(2024, 6, 14)},
            "where": [c("page", "equals", "/pricing")],
        },
        {1, 2},
    ),
    (
        {"event": "visits", "last": {"op": "between", "value": [D(2024, 6, 14), D(2024, 6, 15)]}},
        {1, 5},
    ),
]


@pytest.mark.parametrize(("condition", "expected"), EVENT_CASES, ids=lambda x: str(x))
def test_event_conditions(w: DuckWorld, condition: dict[str, Any], expected: set[int]) -> None:
    assert w.members(audience([condition])) == expected


def test_membership_of_other_audiences_includes_and_excludes(w: DuckWorld) -> None:
    others = {
        "fr": audience([c("country", "equals", "FR")]),
        "older_fr": audience([{"in_audience": "fr"}, c("age", "gt", 40)]),
    }
    assert w.members(audience([{"in_audience": "fr"}]), others) == {1, 5}
    assert w.members(audience([{"not_in_audience": "fr"}]), others) == {2, 3, 4}
    assert w.members(audience([{"in_audience": "older_fr"}]), others) == {5}
    assert w.members(audience([{"not_in_audience": "older_fr"}]), others) == {1, 2, 3, 4}


GROUP_CASES = [
    (audience([]), EVERYONE),
    (audience([], match="any"), set()),
    (audience([c("country", "equals", "DE"), c("age", "lt", 20)], match="any"), {2, 4}),
    (audience([c("country", "equals", "FR"), c("age", "is_null")], match="none"), {2, 4}),
    (
        audience(
            [c("vip", "equals", True), {"any": [c("age", "gt", 50), c("country", "equals", "DE")]}]
        ),
        {5},
    ),
    (
        audience(
            [
                {
                    "none": [
                        c("country", "equals", "FR"),
                        {"all": [c("age", "gt", 40), c("vip", "equals", False)]},
                    ]
                }
            ]
        ),
        {3, 4},
    ),
    (
        audience(
            [
                {
                    "any": [
                        {"related": "orders", "at_least": 2},
                        {"event": "visits", "first": {"op": "before", "value": D(2024, 2, 1)}},
                    ]
                },
                {"not_in_audience": "nobody"},
            ]
        ),
        {1, 4},
    ),
]


@pytest.mark.parametrize(("config", "expected"), GROUP_CASES, ids=lambda x: str(x)[:80])
def test_nested_groups(w: DuckWorld, config: Any, expected: set[int]) -> None:
    others = {"nobody": audience([], match="any")}
    assert w.members(config, others) == expected


SQL_CASES = [
    ({"sql": "age * 2 > 100"}, {5}),
    ({"sql": "country = 'FR' OR age IS NULL"}, {1, 3, 5}),
    ({"sql": "age > 40"}, {2, 5}),  # null for 3: not a member
    ({"none": [{"sql": "age > 40"}]}, {1, 3, 4}),  # and its negation holds for 3
]


@pytest.mark.parametrize(("condition", "expected"), SQL_CASES, ids=lambda x: str(x))
def test_raw_sql_condition(w: DuckWorld, condition: dict[str, Any], expected: set[int]) -> None:
    assert w.members(audience([condition])) == expected


def test_relative_dates_use_the_warehouse_clock_without_now(w: DuckWorld) -> None:
    """Without ``now`` the SQL asks the warehouse for the time: 2024 is long ago by then."""
    recent = audience([c("seen", "within_last", days=30)])
    assert w.members(recent) == {1, 2, 5}  # against the fixed now
    assert w.members(recent, now=None) == set()
    sql = w.compiler(now=None).render(w.compiler(now=None).members("a", recent))
    assert "CURRENT_TIMESTAMP" in sql.upper()
    old = audience([c("seen", "not_within_last", days=30)])
    assert w.members(old, now=None) == EVERYONE
