"""Scenarios shared by the Postgres and DuckDB warehouse-planner tests.

Each scenario takes a :class:`Warehouse`: a project whose ``wh`` source is the warehouse
under test, and a way to run SQL in that warehouse. The same scenarios run for both, and
each proves an invariant the local planner already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from backhaul.observe.events import Notice
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver
from conftest import PG_ADMIN
from conftest import Builder
from conftest import audit_log
from conftest import sqlite_audit
from conftest import sqlite_rows

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


@dataclass
class Warehouse:
    """A project whose source ``wh`` is the warehouse under test."""

    project: Builder
    kind: str
    sql: Callable[..., list[tuple[Any, ...]]]
    series: Callable[[int, int], str]  # FROM-clause rows i in [lo, hi]

    def users(self, n: int) -> None:
        self.sql(
            "DROP TABLE IF EXISTS users",
            "CREATE TABLE users AS SELECT CAST(i AS BIGINT) AS id, "
            f"'u' || i || '@example.com' AS email, 'name ' || i AS name FROM {self.series(1, n)}",
        )
        self.project.model("users", "SELECT * FROM users")

    def change_one_percent(self, n: int) -> tuple[set[str], set[str], set[str]]:
        """Change, add and remove n/100 rows each of the ``users`` table."""
        self.sql(
            "UPDATE users SET email = 'changed' || id || '@example.com' WHERE id % 100 = 7",
            "DELETE FROM users WHERE id % 100 = 13",
            "INSERT INTO users SELECT CAST(i AS BIGINT), 'new' || i || '@example.com', 'n' "
            f"FROM {self.series(n + 1, n + n // 100)}",
        )
        changed = {str(i) for i in range(1, n + 1) if i % 100 == 7}
        removed = {str(i) for i in range(1, n + 1) if i % 100 == 13}
        added = {str(i) for i in range(n + 1, n + n // 100 + 1)}
        return changed, added, removed

    def planner_tables(self, schema: str = "backhaul_planner") -> set[str]:
        if self.kind == "duckdb":
            rows = self.sql(
                f"SELECT table_name FROM duckdb_tables() WHERE schema_name = '{schema}'"
            )
        else:
            rows = self.sql(
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"
            )
        return {str(r[0]) for r in rows}


@dataclass
class Notes:
    """Collects the run's notices (the warehouse planner reports its transfer there)."""

    messages: list[str]

    def __call__(self, event: object) -> None:
        if isinstance(event, Notice):
            self.messages.append(event.message)

    def transferred_rows(self) -> int:
        line = next(m for m in self.messages if m.startswith("planned in the warehouse"))
        return int(line.split(": ", 1)[1].split(" ", 1)[0])


def run(wh: Warehouse, sync: str, **options: Any) -> RunSummary:
    return wh.project.run(sync, **options)


def ops_of(wh: Warehouse, run_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in wh.project.rows(run_id):
        assert row.status == "ok", row
        out.setdefault(row.op.value, set()).add(row.key)
    return out


def pg_database(prefix: str) -> Iterator[str]:
    """A fresh Postgres database URL, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- scenarios ---------------------------------------------------------------------------


def second_run_sends_nothing(wh: Warehouse) -> None:
    wh.users(300)
    dest = wh.project.sqlite_destination()
    wh.project.sync("s", mode="mirror", mappings=MAPPINGS, planner="warehouse")

    first = run(wh, "s")
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert first.counts.added == 300 and first.counts.succeeded == 300
    assert {"s_snapshot", "s_acks", "s_rejected", "s_meta"} <= wh.planner_tables()
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_snapshot") == [(300,)]
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_acks") == [(0,)]  # folded
    before = sqlite_rows(dest)
    sqlite_audit(dest)

    notes = Notes([])
    second = wh.project.run("s", events=notes)
    assert second.status is RunStatus.SUCCEEDED
    assert (second.counts.queried, second.counts.unchanged, second.counts.planned) == (300, 300, 0)
    assert wh.project.rows(second.run_id) == []
    assert audit_log(dest) == {"insert": set(), "update": set(), "delete": set()}
    assert sqlite_rows(dest) == before
    assert notes.transferred_rows() == 0  # nothing to send: no model row left the warehouse


def one_percent_travels_exactly(wh: Warehouse, n: int = 10_000) -> None:
    wh.users(n)
    dest = wh.project.sqlite_destination()
    wh.project.sync("s", mode="mirror", mappings=MAPPINGS, planner="warehouse")
    assert run(wh, "s").counts.succeeded == n
    changed, added, removed = wh.change_one_percent(n)

    notes = Notes([])
    second = wh.project.run("s", events=notes)

    assert second.status is RunStatus.SUCCEEDED, second.error
    c = second.counts
    assert (c.added, c.changed, c.removed, c.unchanged) == (
        len(added),
        len(changed),
        len(removed),
        n - len(changed) - len(removed),
    )
    assert ops_of(wh, second.run_id) == {"add": added, "change": changed, "remove": removed}
    model = wh.sql("SELECT id, email FROM users ORDER BY id")
    assert sqlite_rows(dest) == [tuple(r) for r in model]
    # Out of the warehouse came the plan (one row per planned key), the model rows to
    # send and the snapshot rows of removed and changed keys (the identity each was
    # delivered under): 6 per 100 rows, not the whole model.
    planned = len(changed) + len(added) + len(removed)
    sent = len(changed) + len(added)
    assert notes.transferred_rows() == planned + sent + len(removed) + len(changed)
    assert notes.transferred_rows() < n // 10
    assert run(wh, "s").counts.planned == 0


def rejected_rows_are_retried(wh: Warehouse, receiver: WebhookReceiver) -> None:
    wh.users(10)
    wh.project.webhook_destination(receiver)
    wh.project.sync("s", destination="hook", mappings=MAPPINGS, planner="warehouse")
    assert run(wh, "s").counts.succeeded == 10
    wh.sql("UPDATE users SET email = 'v2-' || email")
    receiver.faults.reject({"3": "email domain is blocked", "7": "contact is archived"})

    partial = run(wh, "s")

    assert partial.status is RunStatus.PARTIAL
    assert (partial.counts.succeeded, partial.counts.rejected) == (8, 2)
    rejected = wh.sql(
        "SELECT key_text, error, attempts FROM backhaul_planner.s_rejected ORDER BY key_text"
    )
    assert rejected == [("3", "email domain is blocked", 1), ("7", "contact is archived", 1)]

    again = run(wh, "s")  # still refused: retried, counted again
    assert again.counts.retried == 2 and again.counts.rejected == 2
    assert again.counts.changed == 0
    assert [
        r[2]
        for r in wh.sql(
            "SELECT key_text, error, attempts FROM backhaul_planner.s_rejected ORDER BY key_text"
        )
    ] == [2, 2]

    receiver.faults.clear()
    fixed = run(wh, "s")
    assert fixed.status is RunStatus.SUCCEEDED
    assert fixed.counts.retried == 2 and fixed.counts.succeeded == 2
    assert ops_of(wh, fixed.run_id) == {"retry": {"3", "7"}}
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_rejected") == [(0,)]
    assert receiver.records["3"]["email"] == "v2-u3@example.com"
    assert run(wh, "s").counts.planned == 0


def null_and_duplicate_keys_are_invalid(wh: Warehouse) -> None:
    wh.sql(
        "DROP TABLE IF EXISTS people",
        "CREATE TABLE people (id BIGINT, email VARCHAR)",
        "INSERT INTO people VALUES (1, 'a@x'), (2, 'b@x'), (2, 'b2@x'), (NULL, 'nokey@x'), "
        "(3, 'c@x'), (4, 'd@x'), (4, 'd2@x'), (4, 'd3@x')",
    )
    wh.project.model("users", "SELECT * FROM people")
    dest = wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS, planner="warehouse")

    first = run(wh, "s")

    assert first.counts.invalid == 6 and first.counts.succeeded == 2
    invalid = {r.key: r.error for r in wh.project.rows(first.run_id, status="invalid")}
    assert set(invalid) == {"2", "4", "(null)"}
    assert invalid["(null)"] == "null primary key"
    assert "2 rows" in str(invalid["2"]) and "3 rows" in str(invalid["4"])
    assert sqlite_rows(dest) == [(1, "a@x"), (3, "c@x")]
    again = run(wh, "s")
    assert again.counts.invalid == 6 and again.counts.succeeded == 0
    assert sqlite_rows(dest) == [(1, "a@x"), (3, "c@x")]


def same_result_as_local_planner(wh: Warehouse, receiver: WebhookReceiver) -> None:
    n = 2_000
    wh.users(n)
    wh.project.sqlite_destination("local_db", table="local_t")
    wh.project.sqlite_destination("wh_db", table="wh_t")
    wh.project.sync("local", destination="local_db", mode="mirror", mappings=MAPPINGS)
    wh.project.sync(
        "inwh", destination="wh_db", mode="mirror", mappings=MAPPINGS, planner="warehouse"
    )
    for step in range(3):
        if step == 1:
            wh.change_one_percent(n)
        if step == 2:
            wh.sql(
                "UPDATE users SET name = 'unmapped column changed'",
                "UPDATE users SET email = upper(email) WHERE id % 50 = 1",
            )
        local, inwh = run(wh, "local"), run(wh, "inwh")
        assert local.status is inwh.status is RunStatus.SUCCEEDED
        lc, wc = local.counts.as_dict(), inwh.counts.as_dict()
        assert lc == wc, (step, lc, wc)
        assert ops_of(wh, local.run_id) == ops_of(wh, inwh.run_id)
        assert local.counts.planned > 0
    dest = wh.project.root / "dest.sqlite"
    assert sqlite_rows(dest, "local_t") == sqlite_rows(dest, "wh_t")


def dry_run_changes_nothing(wh: Warehouse) -> None:
    wh.users(100)
    wh.project.sqlite_destination()
    wh.project.sync("s", mode="mirror", mappings=MAPPINGS, planner="warehouse")

    before_any = wh.project.plan("s")  # no planner tables yet
    assert before_any.counts.added == 100
    assert "s_snapshot" not in wh.planner_tables()

    assert run(wh, "s").counts.succeeded == 100
    wh.change_one_percent(100)
    preview = wh.project.plan("s")
    assert (preview.counts.added, preview.counts.changed, preview.counts.removed) == (1, 1, 1)
    assert {r["key"] for r in preview.samples["change"]} == {"7"}
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_snapshot") == [(100,)]
    assert "s_preview" not in wh.planner_tables()
    real = run(wh, "s")
    assert (real.counts.added, real.counts.changed, real.counts.removed) == (1, 1, 1)
