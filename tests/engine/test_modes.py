"""Sync modes, removal handling, null policy, resyncs and mapping kinds, end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from backhaul import api
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import keys_of
from conftest import sqlite_dicts
from conftest import sqlite_rows

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def _sent(receiver: WebhookReceiver, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """(operation, record) of every record received from request ``start`` on."""
    return [(r.json["operation"], rec) for r in receiver.calls[start:] for rec in r.json["records"]]


def _precreate(path: Path, rows: list[tuple[int, str]]) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT)")
    con.executemany("INSERT INTO contacts VALUES (?, ?)", rows)
    con.commit()
    con.close()


def test_upsert_creates_and_updates_and_leaves_removed_rows(project: Builder) -> None:
    project.users(10)
    dest = project.sqlite_destination()
    project.sync("s", mode="upsert", mappings=MAPPINGS)
    project.run("s")
    project.sql(
        "UPDATE users SET email = 'new@x' WHERE id = 2",
        "DELETE FROM users WHERE id = 3",
        "INSERT INTO users VALUES (11, 'eleven@x', 'n', 1)",
    )

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    assert (run.counts.added, run.counts.changed, run.counts.removed) == (1, 1, 1)
    rows = dict(sqlite_rows(dest))
    assert rows[2] == "new@x" and rows[11] == "eleven@x"
    assert rows[3] == "u3@example.com"  # upsert never deletes
    assert len(rows) == 11
    assert project.run("s").counts.planned == 0  # the removal was acknowledged


def test_update_rejects_rows_missing_at_destination_and_retries_them(project: Builder) -> None:
    project.users(8)
    dest = project.sqlite_destination()
    _precreate(dest, [(i, f"old{i}") for i in range(1, 6)])
    project.sync("s", mode="update", mappings=MAPPINGS)

    first = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.exit_code == 3
    assert (first.counts.succeeded, first.counts.rejected) == (5, 3)
    rejected = project.rows(first.run_id, status="rejected")
    assert {r.key: r.error for r in rejected} == {
        k: f"no row with key {k} in table contacts" for k in ("6", "7", "8")
    }
    assert sqlite_rows(dest) == [(i, f"u{i}@example.com") for i in range(1, 6)]

    # Never acknowledged, so still pending: sent again, and only they are.
    second = project.run("s")
    assert second.counts.planned == 3 and second.counts.rejected == 3
    assert keys_of(project.rows(second.run_id, status="rejected")) == {"6", "7", "8"}
    assert keys_of(project.rows(second.run_id)) == {"6", "7", "8"}

    con = sqlite3.connect(dest)
    con.execute("INSERT INTO contacts VALUES (6, 'placeholder')")
    con.commit()
    con.close()
    third = project.run("s")
    assert third.counts.planned == 3
    assert keys_of(project.rows(third.run_id, status="ok")) == {"6"}
    assert keys_of(project.rows(third.run_id, status="rejected")) == {"7", "8"}
    assert dict(sqlite_rows(dest))[6] == "u6@example.com"


def test_insert_never_sends_changes_to_existing_keys(project: Builder) -> None:
    project.users(5)
    dest = project.sqlite_destination()
    project.sync("s", mode="insert", mappings=MAPPINGS)
    project.run("s")
    project.sql(
        "UPDATE users SET email = 'changed@x' WHERE id = 1",
        "INSERT INTO users VALUES (6, 'six@x', 'n', 1)",
    )

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    # The change needed no call: skipped, never counted as delivered.
    assert (run.counts.added, run.counts.changed, run.counts.succeeded) == (1, 1, 1)
    assert run.counts.skipped == 1
    rows = dict(sqlite_rows(dest))
    assert rows[1] == "u1@example.com" and rows[6] == "six@x"
    assert len(rows) == 6
    assert project.run("s").counts.planned == 0


def test_insert_mode_skipped_rows_are_readable_in_the_run_record(project: Builder) -> None:
    project.users(3)
    project.sqlite_destination()
    project.sync("s", mode="insert", mappings=MAPPINGS)
    project.run("s")
    project.sql("UPDATE users SET email = 'changed@x' WHERE id = 1")

    run = project.run("s")

    outcomes = {o.key: o for o in project.rows(run.run_id)}
    assert outcomes["1"].status == "skipped" and outcomes["1"].operation is None


@pytest.mark.parametrize(
    ("on_remove", "expected"),
    [
        ("delete", {}),
        ("clear", {3: None, 4: None}),
        ("nothing", {3: "u3@example.com", 4: "u4@example.com"}),
    ],
)
def test_mirror_on_remove(project: Builder, on_remove: str, expected: dict[int, Any]) -> None:
    project.users(20)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", on_remove=on_remove, mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users WHERE id IN (3, 4)")

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 2
    rows = dict(sqlite_rows(dest))
    assert {k: rows[k] for k in (3, 4) if k in rows} == expected
    kept = {k: v for k, v in rows.items() if k not in (3, 4)}
    assert kept == {i: f"u{i}@example.com" for i in range(1, 21) if i not in (3, 4)}
    outcomes = project.rows(run.run_id)
    assert keys_of(outcomes) == {"3", "4"}
    operation = {"delete": "delete", "clear": "clear", "nothing": None}[on_remove]
    assert {o.operation for o in outcomes} == {operation}
    assert project.run("s").counts.planned == 0


@pytest.mark.parametrize("nulls", ["skip", "send"])
def test_null_policy_in_webhook_payload(
    project: Builder, receiver: WebhookReceiver, nulls: str
) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, 'a@x'), (2, NULL)) t(id, email)")
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", nulls=nulls, mappings=MAPPINGS)

    project.run("s")

    records = {rec["id"]: rec for _, rec in _sent(receiver)}
    assert records[1] == {"id": 1, "email": "a@x"}
    assert records[2] == ({"id": 2} if nulls == "skip" else {"id": 2, "email": None})


def test_full_resync_resends_everything_and_deletes_nothing(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(20)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="mirror", mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users WHERE id = 5")
    start = len(receiver.calls)

    run = project.run("s", full_resync=True)

    assert run.status is RunStatus.SUCCEEDED and run.full_resync
    assert run.counts.removed == 0 and run.counts.succeeded == 19
    sent = _sent(receiver, start)
    assert {op for op, _ in sent} == {"upsert"}
    assert sorted(rec["id"] for _, rec in sent) == [i for i in range(1, 21) if i != 5]
    assert "5" in receiver.records
    # The removal was held back, not forgotten: the next normal run deletes it.
    later = project.run("s")
    assert later.counts.removed == 1 and "5" not in receiver.records


def test_reset_then_run_resends_everything(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(15)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)
    project.run("s")
    assert project.run("s").counts.planned == 0
    receiver.reset()

    assert api.reset(project.load(), "s") is True
    assert not project.state_file("s").exists()
    run = project.run("s")

    assert run.counts.added == 15 and run.counts.succeeded == 15
    assert len(receiver.records) == 15


def test_composite_primary_key(project: Builder) -> None:
    project.sql(
        "CREATE TABLE members AS SELECT o AS org, i AS id, 'm' || o || '-' || i AS email "
        "FROM range(1, 4) a(o), range(1, 4) b(i)"
    )
    project.model("members", "SELECT * FROM members", primary_key=["org", "id"])
    dest = project.sqlite_destination()
    project.sync(
        "s",
        model="members",
        mode="mirror",
        mappings=[{"column": "org", "field": "org"}, *MAPPINGS],
    )
    assert project.run("s").counts.succeeded == 9
    project.sql(
        "UPDATE members SET email = 'changed' WHERE org = 2 AND id = 1",
        "DELETE FROM members WHERE org = 1 AND id = 2",
    )

    run = project.run("s")

    outcomes = {o.key: (o.op.value, o.operation) for o in project.rows(run.run_id)}
    assert outcomes == {"(2, 1)": ("change", "upsert"), "(1, 2)": ("remove", "delete")}
    assert sqlite_rows(dest, order="org, id") == project.sql(
        "SELECT org, id, email FROM members ORDER BY org, id"
    )


def test_nested_target_field_arrives_nested(project: Builder, receiver: WebhookReceiver) -> None:
    project.model("users", "SELECT 1 AS id, 'Paris' AS city, 'FR' AS country")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"column": "city", "field": "address.city"},
            {"column": "country", "field": "address.country"},
        ],
    )

    project.run("s")

    assert receiver.records["1"] == {"id": 1, "address": {"city": "Paris", "country": "FR"}}


def test_liquid_template_mapping(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(3)
    project.webhook_destination(receiver)
    label = {"template": "{{ name | upcase }} <{{ email }}>", "field": "label"}
    project.sync("s", destination="hook", mappings=[{"column": "id", "field": "id"}, label])

    project.run("s")
    assert receiver.records["2"]["label"] == "NAME 2 <u2@example.com>"

    # A new template text is a change of every row.
    project.sync(
        "s",
        destination="hook",
        mappings=[{"column": "id", "field": "id"}, {**label, "template": "{{ name }}!"}],
    )
    run = project.run("s")
    assert run.counts.changed == 3
    assert receiver.records["2"]["label"] == "name 2!"


def test_casts_arrive_as_typed_values(project: Builder, receiver: WebhookReceiver) -> None:
    project.model(
        "users",
        "SELECT 1 AS id, '42' AS i, '3.5' AS f, 'true' AS b, '2024-01-02' AS d, "
        "'2024-01-02 03:04:05' AS ts, 7 AS s",
    )
    project.webhook_destination(receiver)
    casts = {"i": "int", "f": "float", "b": "bool", "d": "date", "ts": "timestamp", "s": "string"}
    project.sync(
        "s",
        destination="hook",
        mappings=[{"column": "id", "field": "id"}]
        + [{"column": c, "field": c, "cast": t} for c, t in casts.items()],
    )

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    assert receiver.records["1"] == {
        "id": 1,
        "i": 42,
        "f": 3.5,
        "b": True,
        "d": "2024-01-02",
        "ts": "2024-01-02T03:04:05",
        "s": "7",
    }


def test_cast_to_sqlite_columns(project: Builder) -> None:
    project.model("users", "SELECT 1 AS id, '42' AS n, 'false' AS flag, '2.5' AS ratio")
    dest = project.sqlite_destination()
    project.sync(
        "s",
        mappings=[
            {"column": "id", "field": "id"},
            {"column": "n", "field": "n", "cast": "int"},
            {"column": "flag", "field": "flag", "cast": "bool"},
            {"column": "ratio", "field": "ratio", "cast": "float"},
        ],
    )

    project.run("s")

    assert sqlite_dicts(dest) == [{"id": 1, "n": 42, "flag": 0, "ratio": 2.5}]


def test_json_cast_arrives_as_json_value(project: Builder, receiver: WebhookReceiver) -> None:
    project.model("users", """SELECT 1 AS id, '{"a": [1, 2]}' AS doc""")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"column": "doc", "field": "doc", "cast": "json"},
        ],
    )

    project.run("s")

    assert receiver.records["1"]["doc"] == {"a": [1, 2]}
