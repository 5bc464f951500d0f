"""A project can keep its run store in Postgres (`state.metadata_url`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from tests.conftest import Builder

from backhaul.summary import RunStatus


def test_runs_and_rows_are_recorded_in_postgres(fast_tmp: Path, pg_db: str) -> None:
    project = Builder(fast_tmp / "proj", project_extra={"state": {"metadata_url": pg_db}})
    project.users(25)
    project.sqlite_destination()
    project.sync("s")
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED
    assert not (project.root / ".backhaul" / "backhaul.db").exists()
    with psycopg.connect(pg_db) as conn:
        runs = conn.execute("SELECT id, status, added FROM runs").fetchall()
        rows = conn.execute(
            "SELECT count(*) FROM run_rows WHERE run_id = %s AND status = 'ok'", [summary.run_id]
        ).fetchone()
    assert runs == [(summary.run_id, "succeeded", 25)]
    # Rows that went well are in the run's row log in the state folder, not in Postgres.
    assert rows == (0,)
    assert (project.root / ".backhaul" / "row_logs" / summary.run_id).is_dir()
    assert len(project.rows(summary.run_id, status="ok")) == 25
    out = project.cli("runs", "s")
    assert out.returncode == 0 and summary.run_id[:8] in out.stdout
