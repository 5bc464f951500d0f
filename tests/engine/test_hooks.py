"""Pre and post SQL hooks run on the model's source warehouse around a run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backhaul import api
from backhaul.config.checks import check_syncs
from backhaul.summary import RunStatus
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

AUDIT = (
    "INSERT INTO audit VALUES ({{ run.id | sql }}, {{ run.sync | sql }}, {{ run.status | sql }}, "
    "{{ run.succeeded }}, {{ run.added }}, {{ run.error | sql }})"
)


def _duckdb_project(project: Builder, **hooks: Any) -> None:
    project.sql(
        "CREATE TABLE raw AS SELECT i::BIGINT AS id, 'u' || i || '@x.com' AS email "
        "FROM range(1, 4) t(i)",
        "CREATE TABLE users (id BIGINT, email VARCHAR)",
        "CREATE TABLE audit (run_id VARCHAR, sync VARCHAR, status VARCHAR, "
        "succeeded BIGINT, added BIGINT, error VARCHAR)",
        "CREATE TABLE marks (n INTEGER)",
    )
    project.model("users", "SELECT * FROM users")
    project.sqlite_destination()
    project.sync("s", hooks=hooks)


REFRESH = ["DELETE FROM users", "INSERT INTO users SELECT * FROM raw"]


def test_pre_hook_refreshes_what_the_model_reads_and_post_hook_audits(project: Builder) -> None:
    _duckdb_project(project, pre=REFRESH, post=[AUDIT])
    dest = project.root / "dest.sqlite"

    first = project.run("s")

    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 3
    assert [r[0] for r in sqlite_rows(dest)] == [1, 2, 3]  # `users` was empty before the hook
    project.sql("INSERT INTO raw VALUES (4, 'u4@x.com')")
    second = project.run("s")

    assert second.counts.added == 1 and second.counts.succeeded == 1
    assert project.sql("SELECT * FROM audit ORDER BY succeeded DESC") == [
        (first.run_id, "s", "succeeded", 3, 3, None),
        (second.run_id, "s", "succeeded", 1, 1, None),
    ]


def test_failing_pre_hook_fails_the_run_before_anything_is_read(project: Builder) -> None:
    _duckdb_project(project, pre=["INSERT INTO marks VALUES (1)", "SELECT * FROM missing_table"])

    result = project.cli("run", "s")

    assert result.returncode == 1  # failed (docs/runs.md), not a configuration error
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "syncs/s.yml:" in lines[0] and "hooks.pre.1" in lines[0]
    assert "missing_table does not exist" in lines[0]
    assert "nothing was read or sent" in lines[0]
    assert project.sql("SELECT count(*) FROM marks") == [(0,)]  # one transaction, rolled back
    assert not project.state_file("s").exists()
    assert not (project.root / "dest.sqlite").exists()
    with api.open_store(project.load()) as store:
        [run] = store.runs("s")
    assert run.status is RunStatus.FAILED and run.error is not None and "hooks.pre.1" in run.error


def test_failing_post_hook_fails_the_run_but_keeps_what_was_delivered(project: Builder) -> None:
    _duckdb_project(project, pre=REFRESH, post=["INSERT INTO no_such_table VALUES (1)"])
    dest = project.root / "dest.sqlite"

    first = project.run("s")

    assert first.status is RunStatus.FAILED and first.exit_code == 1
    assert first.error is not None
    assert "syncs/s.yml:" in first.error and "hooks.post.0" in first.error
    assert "no_such_table" in first.error and "stay delivered" in first.error
    assert first.counts.succeeded == 3
    assert len(sqlite_rows(dest)) == 3
    before = project.state_file("s").stat().st_size

    again = project.run("s")

    assert again.counts.planned == 0 and again.counts.succeeded == 0  # the snapshot advanced
    assert again.status is RunStatus.FAILED  # the hook still fails
    assert len(sqlite_rows(dest)) == 3
    assert project.state_file("s").stat().st_size >= before


def test_failing_post_hook_keeps_the_earlier_failure_in_the_error(project: Builder) -> None:
    nulls = "INSERT INTO users SELECT NULL, email FROM raw"  # every row invalid: run fails
    _duckdb_project(project, pre=["DELETE FROM users", nulls], post=["SELECT * FROM nope"])

    run = project.run("s")

    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.startswith("syncs/s.yml:") and "hooks.post.0" in run.error
    assert "the run had failed before: nothing valid could be delivered" in run.error


def test_plan_does_not_run_hooks_and_says_so(project: Builder) -> None:
    _duckdb_project(project, pre=["INSERT INTO marks VALUES (1)"], post=[AUDIT])

    plan = project.plan("s")
    result = project.cli("plan", "s")

    assert project.sql("SELECT count(*) FROM marks") == [(0,)]
    assert project.sql("SELECT count(*) FROM audit") == [(0,)]
    assert any("hooks skipped" in n for n in plan.notes)
    assert "hooks skipped" in result.stdout


def test_project_default_hooks_apply_unless_the_sync_sets_its_own(project: Builder) -> None:
    project.write("backhaul.yml", {"name": "t", "defaults": {"hooks": {"pre": REFRESH}}})
    _duckdb_project(project, post=[AUDIT])

    run = project.run("s")

    assert run.counts.succeeded == 3  # the default pre hook filled `users`
    assert project.sql("SELECT run_id FROM audit") == [(run.run_id,)]


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ({"pre": ["SELECT {{ run.status | sql }}"]}, "pre hook runs before the run has an outcome"),
        ({"post": ["SELECT {{ run.nope }}"]}, "unknown variable `run.nope`"),
        ({"post": ["SELECT {{ email }}"]}, "hooks see only `run.*`"),
        ({"post": ["SELECT {{ run.id | shout }}"]}, "unknown Liquid filter `shout`"),
        ({"pre": ["SELECT {% if %}"]}, "does not parse"),
    ],
)
def test_hooks_are_checked_statically(
    project: Builder, hooks: dict[str, Any], message: str
) -> None:
    _duckdb_project(project, **hooks)

    errors = check_syncs(project.load(), ["s"])["s"]
    run = project.run("s")

    assert any(message in e.message for e in errors), [e.message for e in errors]
    phase = next(iter(hooks))
    assert any(f"hooks.{phase}.0" in e.message for e in errors)
    assert run.status is RunStatus.FAILED and run.refused
    assert project.sql("SELECT count(*) FROM audit") == [(0,)]


def test_in_memory_duckdb_source_cannot_run_hooks(project: Builder) -> None:
    project.write(
        "sources/wh.yml",
        {"type": "duckdb", "setup_sql": "CREATE TABLE users AS SELECT 1 AS id, 'a' AS email"},
    )
    project.model("users", "SELECT * FROM users")
    project.sqlite_destination()
    project.sync("s", hooks={"pre": ["SELECT 1"]})

    errors = check_syncs(project.load(), ["s"])["s"]

    assert any("in memory" in e.message and "hooks.pre" in e.message for e in errors)


# -- Postgres -----------------------------------------------------------------------------


def _pg_project(project: Builder, url: str, **hooks: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw (id BIGINT PRIMARY KEY, email TEXT)")
        conn.execute("CREATE MATERIALIZED VIEW users_mv AS SELECT * FROM raw")
        conn.execute(
            "CREATE TABLE audit (run_id TEXT, sync TEXT, status TEXT, succeeded BIGINT, "
            "added BIGINT, error TEXT)"
        )
        conn.execute("CREATE TABLE marks (n INTEGER)")
        conn.execute("INSERT INTO raw VALUES (1, 'a@x.com'), (2, 'b@x.com')")
    project.write("sources/pg.yml", {"type": "postgres", "url": "${env:BH_HOOK_PG_URL}"})
    project.write("models/users.yml", {"source": "pg", "primary_key": "id"})
    project.write("models/users.sql", "SELECT * FROM users_mv\n")
    project.sqlite_destination()
    project.sync("s", hooks=hooks)


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql.encode()).fetchall())


def test_postgres_pre_hook_refreshes_a_materialised_view_and_post_hook_audits(
    project: Builder, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BH_HOOK_PG_URL", pg_db)
    _pg_project(project, pg_db, pre=["REFRESH MATERIALIZED VIEW users_mv"], post=[AUDIT])

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 2
    assert [r[0] for r in sqlite_rows(project.root / "dest.sqlite")] == [1, 2]
    assert _pg(pg_db, "SELECT * FROM audit") == [(run.run_id, "s", "succeeded", 2, 2, None)]


def test_postgres_failing_pre_hook_rolls_back_and_redacts_secrets(
    project: Builder, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hunter2secretpw"
    url = pg_db.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    monkeypatch.setenv("BH_HOOK_PG_URL", url)
    _pg_project(project, pg_db, pre=["INSERT INTO marks VALUES (1)", f"SELECT '{secret}'::int"])

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert run.error is not None and "hooks.pre.1" in run.error
    assert "invalid input syntax" in run.error and secret not in run.error and "***" in run.error
    assert _pg(pg_db, "SELECT count(*) FROM marks") == [(0,)]
    assert not project.state_file("s").exists()
    assert not (project.root / "dest.sqlite").exists()


# -- MariaDB ------------------------------------------------------------------------------


@pytest.fixture
def maria_db() -> Iterator[str]:
    from tests.sources import maria_database
    from tests.sources import maria_exec

    with maria_database("bh_hooks") as name:
        maria_exec(
            name,
            "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200))",
            "CREATE TABLE marks (n INT)",
            "CREATE TABLE audit (run_id VARCHAR(64), sync VARCHAR(64), status VARCHAR(16), "
            "succeeded BIGINT, added BIGINT, error TEXT)",
        )
        yield name


def _maria(db: str, sql: str) -> list[tuple[Any, ...]]:
    from tests.sources import maria_connect

    conn = maria_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _maria_project(project: Builder, db: str, **hooks: Any) -> None:
    project.write("sources/my.yml", {"type": "mysql", "url": f"mysql://root@127.0.0.1:3306/{db}"})
    project.write("models/users.yml", {"source": "my", "primary_key": "id"})
    project.write("models/users.sql", "SELECT * FROM users\n")
    project.sqlite_destination()
    project.sync("s", hooks=hooks)


def test_mariadb_hooks_fill_what_the_model_reads_and_audit(project: Builder, maria_db: str) -> None:
    fill = "INSERT INTO users VALUES (1, 'a@x.com'), (2, 'b@x.com')"
    _maria_project(project, maria_db, pre=[fill], post=[AUDIT])

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 2
    assert _maria(maria_db, "SELECT * FROM audit") == [(run.run_id, "s", "succeeded", 2, 2, None)]


def test_mariadb_failing_pre_hook_rolls_back_its_dml(project: Builder, maria_db: str) -> None:
    _maria_project(
        project, maria_db, pre=["INSERT INTO marks VALUES (1)", "SELECT * FROM missing_table"]
    )

    run = project.run("s")

    assert run.status is RunStatus.FAILED and run.error is not None
    assert "hooks.pre.1" in run.error and "missing_table" in run.error
    assert _maria(maria_db, "SELECT count(*) FROM marks") == [(0,)]
    assert not project.state_file("s").exists()
