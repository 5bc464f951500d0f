"""The fingerprint is versioned: a change in DuckDB's hash costs one resend, never a miss."""

from __future__ import annotations

import duckdb
from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul.summary import RunStatus


def _set_meta(builder: Builder, sync: str, name: str, value: str) -> None:
    con = duckdb.connect(str(builder.state_file(sync)))
    try:
        con.execute("UPDATE meta SET value = ? WHERE name = ?", [value, name])
    finally:
        con.close()


def _get_meta(builder: Builder, sync: str, name: str) -> str:
    con = duckdb.connect(str(builder.state_file(sync)), read_only=True)
    try:
        return str(con.execute("SELECT value FROM meta WHERE name = ?", [name]).fetchall()[0][0])
    finally:
        con.close()


def test_changed_hash_function_resends_every_row_once(project: Builder) -> None:
    project.users(50)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror")
    assert project.run("s").counts.added == 50
    real_canary = _get_meta(project, "s", "fp_canary")

    # Pretend the snapshot was written by a DuckDB whose hash() gave other values.
    _set_meta(project, "s", "fp_canary", "12345")
    project.sql("UPDATE users SET name = 'unmapped change'")  # not mapped: no real change
    resent = project.run("s")
    assert resent.status is RunStatus.SUCCEEDED
    assert resent.counts.changed == 50  # every row resent once, none missed
    assert resent.counts.removed == 0
    assert _get_meta(project, "s", "fp_canary") == real_canary  # adopted after a clean run

    quiet = project.run("s")
    assert quiet.counts.planned == 0
    assert len(sqlite_rows(dest)) == 50


def test_drift_still_detects_removals_and_additions(project: Builder) -> None:
    project.users(20)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror")
    project.run("s")
    _set_meta(project, "s", "fp_canary", "not-the-current-hash")
    project.sql("DELETE FROM users WHERE id <= 2", "INSERT INTO users VALUES (100, 'n@x', 'n', 1)")
    summary = project.run("s")
    assert (summary.counts.added, summary.counts.removed, summary.counts.changed) == (1, 2, 18)
    ids = [r[0] for r in sqlite_rows(dest)]
    assert 1 not in ids and 2 not in ids and 100 in ids


def test_fingerprint_ignores_unmapped_columns_and_row_order(project: Builder) -> None:
    project.users(30, extra_columns="'x' AS note")
    project.sqlite_destination()
    project.sync("s")
    project.run("s")
    project.model("users", "SELECT * FROM users ORDER BY id DESC")  # same rows, new order
    project.sql("UPDATE users SET note = 'y'")
    assert project.run("s").counts.planned == 0
