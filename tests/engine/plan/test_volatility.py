"""A model column computed with ``now()`` or ``uuid()`` is new on every run, so every row is
sent again each run: the plan and the run say so, naming the column, and say nothing of a
column that is not sent."""

from __future__ import annotations

import pytest

from backhaul.engine.plan.volatility import volatile_columns
from backhaul.engine.plan.volatility import volatile_notes
from backhaul.observe.events import Notice
from backhaul.observe.events import RunEvent
from conftest import Builder


@pytest.mark.parametrize(
    ("sql", "dialect", "found"),
    [
        ("SELECT id, now() AS synced_at FROM t", "duckdb", {"synced_at": "NOW()"}),
        ("SELECT id, CAST(now() AS VARCHAR) AS at FROM t", "mysql", {"at": "NOW()"}),
        (
            "WITH a AS (SELECT id, gen_random_uuid() AS token FROM t) SELECT * FROM a",
            "postgres",
            {"token": "GEN_RANDOM_UUID()"},
        ),
        ("SELECT id, random() * 10 AS bucket FROM t", "duckdb", {"bucket": "RANDOM()"}),
        ("SELECT id, current_timestamp AS ts FROM t", "snowflake", {"ts": "CURRENT_TIMESTAMP()"}),
        ("SELECT id, uuid_generate_v4() AS u FROM t", "postgres", {"u": "UUID_GENERATE_V4()"}),
        # In a WHERE clause the time picks rows; it does not make their values new.
        ("SELECT id, email FROM t WHERE seen > now() - INTERVAL 1 DAY", "duckdb", {}),
        # A day count follows the date on purpose.
        ("SELECT id, date_diff('day', signup, current_date) AS days FROM t", "duckdb", {}),
        ("SELECT id, lower(email) AS email FROM t", "duckdb", {}),
        # SQL sqlglot cannot read, or a dialect it does not know: no finding, no error.
        ("SELEKT id FROM", "duckdb", {}),
        ("SELECT id, now() AS at FROM t", "no-such-dialect", {}),
    ],
)
def test_volatile_columns(sql: str, dialect: str, found: dict[str, str]) -> None:
    assert volatile_columns(sql, dialect) == found


def test_a_note_names_each_sent_column_once_whatever_its_case() -> None:
    sql = "SELECT id, now() AS Seen_At, random() AS unsent FROM t"
    notes = volatile_notes(sql, "duckdb", ["id", "seen_at", "seen_at"])
    assert len(notes) == 1
    assert notes[0].startswith("column `Seen_At` is computed with `NOW()`")
    assert volatile_notes(sql, "duckdb", ["id"]) == ()


def test_the_plan_and_the_run_say_which_mapped_column_is_new_every_run(
    project: Builder,
) -> None:
    project.users(5)
    project.model("users", "SELECT id, email, now() AS seen_at FROM users")
    project.sqlite_destination()
    project.sync(
        "s",
        mappings=[
            {"column": "id", "field": "id"},
            {"column": "email", "field": "email"},
            {"column": "seen_at", "field": "seen_at"},
        ],
    )
    note = "column `seen_at` is computed with `NOW()`, whose value is new on every run"

    assert [n for n in project.plan("s").notes if n.startswith(note)]
    events: list[RunEvent] = []
    first = project.run("s", events=events.append)
    assert first.counts.added == 5
    assert [e for e in events if isinstance(e, Notice) and e.message.startswith(note)]
    # What the note warns of: nothing changed in the warehouse, and every row goes again.
    assert project.run("s").counts.changed == 5


def test_a_column_that_is_not_sent_gets_no_note(project: Builder) -> None:
    project.users(5)
    project.model("users", "SELECT id, email, now() AS seen_at FROM users")
    project.sqlite_destination()
    project.sync("s")  # id and email only

    assert not [n for n in project.plan("s").notes if "seen_at" in n]
    events: list[RunEvent] = []
    project.run("s", events=events.append)
    assert not [e for e in events if isinstance(e, Notice) and "seen_at" in e.message]
    assert project.run("s").counts.changed == 0
