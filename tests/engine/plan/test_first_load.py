"""A plan that only adds rows goes to a DuckDB or Postgres table in one statement;
everything that does not fit that path (a table with rows, a refused row, a template, a
change) goes in batches, and a load whose checkpoint was lost is sent again as upserts.

Real DuckDB files and a real Postgres: the table must end equal to the model, row for row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from backhaul.destinations.base import Operation
from backhaul.observe.events import BatchDone
from backhaul.observe.events import RunEvent
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from conftest import Builder

ONE_STATEMENT = "loaded in one statement"
DECLINED = "first load declined"
MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "email", "field": "email"},
    {"column": "score", "field": "score"},
]


@pytest.fixture
def crm(project: Builder) -> Path:
    """A DuckDB destination ``crm`` whose table Backhaul creates."""
    project.destination(
        "crm", type="duckdb", path="crm.duckdb", table="contacts", create_table=True
    )
    return project.root / "crm.duckdb"


def table(path: Path, sql: str = "SELECT id, email, score FROM contacts ORDER BY id") -> list[Any]:
    with duckdb.connect(str(path)) as con:
        return con.execute(sql).fetchall()


def model(project: Builder) -> list[Any]:
    return project.sql("SELECT id, email, score FROM users ORDER BY id")


@dataclass
class Ran:
    """A run's summary, how many batch events it sent and what the runner logged."""

    summary: RunSummary
    batches: int
    log: str


def run(project: Builder, caplog: pytest.LogCaptureFixture) -> Ran:
    events: list[RunEvent] = []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="backhaul.engine.runner"):
        summary = project.run("s", events=events.append)
    return Ran(summary, sum(isinstance(e, BatchDone) for e in events), caplog.text)


def test_a_first_run_goes_in_one_statement_and_later_runs_in_batches(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(500)
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT in first.log
    assert "inside the workspace" in first.log  # the rows never left DuckDB
    assert first.batches == 1
    assert (
        first.summary.counts.added,
        first.summary.counts.succeeded,
        first.summary.counts.delivered_added,
    ) == (
        500,
        500,
        500,
    )
    assert table(crm) == model(project)
    # Created without a key, as DuckDB loads fastest; later runs merge on the match field.
    assert (
        table(
            crm,
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = 'contacts' AND constraint_type = 'PRIMARY KEY'",
        )
        == []
    )
    outcomes = project.rows(first.summary.run_id)
    assert len(outcomes) == 500
    assert {(o.op.value, o.status.value) for o in outcomes} == {("add", "ok")}
    assert {o.key for o in outcomes} == {str(i) for i in range(1, 501)}

    assert project.run("s").counts.planned == 0  # the snapshot holds every key

    project.sql(
        "UPDATE users SET email = 'new@x' WHERE id = 2",
        "DELETE FROM users WHERE id = 3",
        "INSERT INTO users VALUES (501, 'u501@example.com', 'n', 5)",
    )
    second = run(project, caplog)
    assert second.summary.status is RunStatus.SUCCEEDED, second.summary.error
    assert ONE_STATEMENT not in second.log  # a change and a removal: batches
    assert (
        second.summary.counts.added,
        second.summary.counts.changed,
        second.summary.counts.removed,
    ) == (1, 1, 1)
    assert table(crm) == model(project)


@pytest.mark.integration  # runs `backhaul plan` as a user would
def test_the_plan_says_which_first_load_goes_in_one_statement(project: Builder, crm: Path) -> None:
    project.users(500)
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)
    note = "first load: the 500 added row(s) go in one statement"

    assert any(n.startswith(note) for n in project.plan("s").notes)
    shown = project.cli("plan", "s")
    assert shown.returncode == 0, shown.stderr
    assert note in shown.stdout

    project.run("s")
    project.sql("INSERT INTO users VALUES (501, 'u501@example.com', 'n', 5)")
    assert not [n for n in project.plan("s").notes if n.startswith("first load")]

    # The same plan to a destination without a one-statement load says nothing of it.
    project.sqlite_destination("db")
    project.sync("t", destination="db", mode="mirror", mappings=MAPPINGS)
    assert project.plan("t").counts.added == 501
    assert not [n for n in project.plan("t").notes if n.startswith("first load")]


@pytest.mark.parametrize("where", ["sync", "defaults"])
def test_a_batch_size_set_in_the_files_keeps_its_batches(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    project.users(500)
    if where == "defaults":
        project.write("backhaul.yml", {"name": "t", "defaults": {"batch_size": 50}})
        project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)
    else:
        project.sync("s", destination="crm", mode="mirror", batch_size=50, mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT not in first.log
    assert first.batches == 10
    assert table(crm) == model(project)


def test_invalid_rows_are_reported_and_the_valid_ones_load_in_one_statement(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(30)
    project.sql(
        "INSERT INTO users VALUES (NULL, 'nokey@x', 'n', 1)",
        "INSERT INTO users VALUES (4, 'twice@x', 'n', 1)",  # key 4 twice: both invalid
    )
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert ONE_STATEMENT in first.log
    c = first.summary.counts
    assert (c.queried, c.invalid, c.added, c.succeeded) == (32, 3, 29, 29)  # 4: two rows
    assert {r.key for r in project.rows(first.summary.run_id, status="invalid")} == {"(null)", "4"}
    assert table(crm) == [r for r in model(project) if r[0] not in (None, 4)]
    assert project.run("s").counts.added == 0  # the invalid keys stay out, nothing resent


def test_a_match_value_two_keys_share_undoes_the_load_and_the_rows_go_in_batches(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(20)
    project.sql("UPDATE users SET email = 'u4@example.com' WHERE id = 5")  # 4 and 5 share it
    project.sync(
        "s",
        destination="crm",
        mode="upsert",
        match={"fields": ["email"]},
        mappings=[{"column": "email", "field": "email"}, {"column": "score", "field": "score"}],
    )

    first = run(project, caplog)

    # The match field is not the model's key, so the load looks for a shared email before
    # it commits and finds one: the load is undone and the batches merge one row per email.
    assert DECLINED in first.log
    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    emails = table(crm, "SELECT email, count(*) FROM contacts GROUP BY email ORDER BY email")
    assert len(emails) == 19 and {n for _, n in emails} == {1}


@pytest.mark.parametrize("match", [None, "email"], ids=["on-the-key", "on-email"])
def test_a_first_load_leaves_the_snapshot_batches_would_leave(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture, match: str | None
) -> None:
    project.users(40)
    extra = {"match": {"fields": [match]}} if match else {}

    def snapshot(batch_size: int | None) -> list[Any]:
        sizes = {"batch_size": batch_size} if batch_size else {}
        project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS, **extra, **sizes)
        ran = run(project, caplog)
        assert ran.summary.status is RunStatus.SUCCEEDED, ran.summary.error
        assert (ONE_STATEMENT in ran.log) is (batch_size is None)
        with duckdb.connect(str(project.state_file("s"))) as con:
            rows = con.execute("SELECT * FROM snapshot ORDER BY ALL").fetchall()
        project.state_file("s").unlink()
        crm.unlink()
        return rows

    at_once = snapshot(None)
    assert len(at_once) == 40
    assert at_once == snapshot(7)
    emails = {f"u{i}@example.com" for i in range(1, 41)}
    assert {row[2] for row in at_once} == (emails if match else set(range(1, 41)))


def test_insert_mode_loads_in_one_statement(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(40)
    project.sync("s", destination="crm", mode="insert", mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT in first.log
    assert table(crm) == model(project)
    assert {o.operation for o in project.rows(first.summary.run_id)} == {"insert"}


def test_a_table_that_has_rows_declines_and_the_rows_go_as_upserts(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(30)
    with duckdb.connect(str(crm)) as con:
        con.execute("CREATE TABLE contacts (id BIGINT PRIMARY KEY, email VARCHAR, score BIGINT)")
        con.execute("INSERT INTO contacts VALUES (3, 'stale@x', 0), (99, 'other@x', 1)")
    project.sync("s", destination="crm", mode="upsert", mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT not in first.log and DECLINED in first.log
    assert first.summary.counts.succeeded == 30
    assert table(crm) == [*model(project), (99, "other@x", 1)]


def test_a_refused_row_is_reported_by_key_and_the_rest_delivered(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(25)
    with duckdb.connect(str(crm)) as con:
        con.execute(
            "CREATE TABLE contacts (id BIGINT PRIMARY KEY, email VARCHAR "
            "CHECK (email <> 'u7@example.com'), score BIGINT)"
        )
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert DECLINED in first.log  # the one statement failed whole; batches find the row
    assert (first.summary.counts.succeeded, first.summary.counts.rejected) == (24, 1)
    refused = project.rows(first.summary.run_id, status="rejected")
    assert [r.key for r in refused] == ["7"]
    assert "CHECK" in (refused[0].error or "")
    assert table(crm) == [r for r in model(project) if r[0] != 7]

    project.sql("UPDATE users SET email = 'fixed@x' WHERE id = 7")
    again = run(project, caplog)  # a retry is not an add: batches
    assert ONE_STATEMENT not in again.log
    assert (again.summary.counts.retried, again.summary.counts.succeeded) == (1, 1)
    assert table(crm) == model(project)


def test_a_load_whose_checkpoint_was_lost_is_sent_again_as_upserts(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a process killed between the destination's commit and the snapshot's leaves:
    every row at the destination, none in the snapshot."""
    project.users(60)
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)
    assert ONE_STATEMENT in run(project, caplog).log
    with duckdb.connect(str(project.state_file("s"))) as con:
        con.execute("DELETE FROM snapshot")
    project.sql("UPDATE users SET score = score + 1000 WHERE id <= 10")

    again = run(project, caplog)

    assert again.summary.status is RunStatus.SUCCEEDED, again.summary.error
    assert DECLINED in again.log
    assert (again.summary.counts.added, again.summary.counts.succeeded) == (60, 60)
    assert table(crm) == model(project)
    assert table(crm, "SELECT count(*), count(DISTINCT id) FROM contacts") == [(60, 60)]
    assert project.run("s").counts.planned == 0


def test_rows_that_need_python_on_their_way_go_in_batches(
    project: Builder, crm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(20)
    mappings = [
        *MAPPINGS,
        {"template": "{{ name | upcase }}", "field": "label"},
    ]
    project.sync("s", destination="crm", mode="mirror", mappings=mappings)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT not in first.log and DECLINED not in first.log
    assert table(crm, "SELECT id, label FROM contacts ORDER BY id") == [
        (i, f"NAME {i}") for i in range(1, 21)
    ]


def test_a_destination_that_fails_stops_the_run_and_keeps_the_snapshot(
    project: Builder, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(10)
    project.destination("crm", type="duckdb", path="crm.duckdb", table="contacts")
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.FAILED
    assert "does not exist" in (first.summary.error or "")
    assert first.summary.counts.succeeded == 0
    assert project.plan("s").counts.added == 10  # nothing was checkpointed


# -- Postgres: COPY straight into the table, block by block -------------------------------


def pg_table(url: str, sql: str = "SELECT id, email, score FROM contacts ORDER BY id") -> list[Any]:
    with psycopg.connect(url) as con:
        return con.execute(sql).fetchall()


@pytest.mark.integration
def test_postgres_first_run_goes_in_one_copy(
    project: Builder, pg_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(3_000)
    project.destination("pg", type="postgres", url=pg_db, table="contacts", create_table=True)
    project.sync("s", destination="pg", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert first.summary.status is RunStatus.SUCCEEDED, first.summary.error
    assert ONE_STATEMENT in first.log and first.batches == 1
    assert pg_table(pg_db) == model(project)
    assert len(project.rows(first.summary.run_id)) == 3_000

    project.sql("UPDATE users SET email = 'new@x' WHERE id = 2", "DELETE FROM users WHERE id = 3")
    second = run(project, caplog)
    assert ONE_STATEMENT not in second.log
    assert (second.summary.counts.changed, second.summary.counts.removed) == (1, 1)
    assert pg_table(pg_db) == model(project)


@pytest.mark.integration
def test_postgres_refused_row_falls_back_to_batches_and_is_reported(
    project: Builder, pg_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    project.users(50)
    with psycopg.connect(pg_db, autocommit=True) as con:
        con.execute(
            "CREATE TABLE contacts (id BIGINT PRIMARY KEY, "
            "email TEXT CHECK (email <> 'u9@example.com'), score BIGINT)"
        )
    project.destination("pg", type="postgres", url=pg_db, table="contacts")
    project.sync("s", destination="pg", mode="mirror", mappings=MAPPINGS)

    first = run(project, caplog)

    assert DECLINED in first.log
    assert (first.summary.counts.succeeded, first.summary.counts.rejected) == (49, 1)
    assert [r.key for r in project.rows(first.summary.run_id, status="rejected")] == ["9"]
    assert pg_table(pg_db) == [r for r in model(project) if r[0] != 9]


def test_the_stream_keeps_order_only_while_it_is_open(project: Builder, crm: Path) -> None:
    from backhaul.engine.plan import FirstLoad
    from backhaul.engine.workspace import open_workspace

    project.users(3)
    project.sync("s", destination="crm", mode="mirror", mappings=MAPPINGS)
    loaded = project.load()
    ws = open_workspace(loaded, loaded.syncs["s"], read_only=True)

    def keeps_order() -> bool:
        # On a cursor of its own: the stream holds the workspace's connection.
        cur = ws.con.cursor()
        row = cur.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
        cur.close()
        assert row is not None
        return bool(row[0])

    def load(select: str) -> FirstLoad:
        return FirstLoad(3, ("id",), {}, Operation.UPSERT, True, select, "", "")

    try:
        assert not keeps_order()  # planning's setting
        rows = load("SELECT 1 AS id").stream(ws)
        assert keeps_order()
        assert rows.read_all().num_rows == 1
        rows.close()
        load("").streamed(ws)
        assert not keeps_order()

        with pytest.raises(duckdb.Error):
            load("SELECT * FROM no_such_table").stream(ws)
        assert not keeps_order()  # a stream that never opened leaves planning's setting
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("match", "cast", "unique"),
    [(None, None, True), ("email", None, False), (None, "string", False)],
    ids=["the-key", "email", "the-key-cast"],
)
def test_a_load_vouches_for_its_match_values_only_when_they_are_the_key_as_it_is(
    project: Builder, crm: Path, match: str | None, cast: str | None, unique: bool
) -> None:
    # A table without a key looks for a repeated match value before a first load commits,
    # unless the engine knows none can repeat: every key column mapped, uncast, to one.
    from backhaul.engine.plan.first_load import _match_unique
    from backhaul.engine.workspace import open_workspace

    project.users(3)
    maps = [{**MAPPINGS[0], "cast": cast} if cast else MAPPINGS[0], *MAPPINGS[1:]]
    extra = {"match": {"fields": [match]}} if match else {}
    project.sync("s", destination="crm", mode="upsert", mappings=maps, **extra)
    loaded = project.load()
    ws = open_workspace(loaded, loaded.syncs["s"], read_only=True)
    try:
        assert _match_unique(ws) is unique
    finally:
        ws.close()
