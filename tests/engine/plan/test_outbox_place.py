"""Where a run builds its outbox: in memory up to ``IN_MEMORY_ROWS`` planned rows, in the
sync's state file beyond. Both places deliver the same, and neither outlives the run."""

from __future__ import annotations

import duckdb
import pytest

from backhaul.engine import runner
from backhaul.engine.plan import outbox
from backhaul.summary import RunStatus
from conftest import Builder, sqlite_rows

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def _outbox_tables(project: Builder) -> list[str]:
    with duckdb.connect(str(project.state_file("s")), read_only=True) as con:
        found = con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name = 'outbox'")
        return [name for (name,) in found.fetchall()]


@pytest.mark.parametrize(
    ("in_memory_rows", "place"), [(2_000_000, "work.outbox"), (0, "st.outbox")]
)
def test_both_places_deliver_the_same_changes(
    project: Builder, monkeypatch: pytest.MonkeyPatch, in_memory_rows: int, place: str
) -> None:
    monkeypatch.setattr(outbox, "IN_MEMORY_ROWS", in_memory_rows)
    used: list[str] = []

    def recorded(planned_rows: int) -> str:
        used.append(outbox.outbox_table(planned_rows))
        return used[-1]

    monkeypatch.setattr(runner, "outbox_table", recorded)
    project.users(300)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)

    first = project.run("s")
    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 300
    project.sql(
        "UPDATE users SET email = 'changed' || id || '@example.com' WHERE id % 10 = 3",
        "DELETE FROM users WHERE id % 10 = 7",
        "INSERT INTO users SELECT i, 'new' || i || '@example.com', 'n', 1 "
        "FROM range(301, 331) t(i)",
    )
    second = project.run("s")

    assert second.status is RunStatus.SUCCEEDED, second.error
    c = second.counts
    assert (c.changed, c.removed, c.added) == (30, 30, 30)
    assert c.succeeded == 90 and c.rejected == 0
    assert used == [place, place]
    assert sqlite_rows(dest) == project.sql("SELECT id, email FROM users ORDER BY id")
    assert _outbox_tables(project) == []


def test_an_outbox_left_in_the_state_file_by_a_killed_run_is_dropped(project: Builder) -> None:
    project.users(20)
    project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)
    assert project.run("s").status is RunStatus.SUCCEEDED
    # What a large run killed while sending leaves behind.
    with duckdb.connect(str(project.state_file("s"))) as con:
        con.execute("CREATE TABLE outbox AS SELECT 0::BIGINT AS seq, 'add' AS op")
    assert _outbox_tables(project) == ["outbox"]

    project.sql("UPDATE users SET email = 'x' || id WHERE id = 1")
    again = project.run("s")

    assert again.status is RunStatus.SUCCEEDED and again.counts.succeeded == 1
    assert _outbox_tables(project) == []
