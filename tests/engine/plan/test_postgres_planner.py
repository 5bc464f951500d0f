"""`planner: warehouse` on PostgreSQL: the diff runs in Postgres, only changes come out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import PG_ADMIN
from conftest import Builder
from engine.plan import MAPPINGS
from engine.plan import Warehouse
from engine.plan import dry_run_changes_nothing
from engine.plan import null_and_duplicate_keys_are_invalid
from engine.plan import one_percent_travels_exactly
from engine.plan import pg_database
from engine.plan import rejected_rows_are_retried
from engine.plan import run
from engine.plan import same_result_as_local_planner
from engine.plan import second_run_sends_nothing


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_database("bh_whplan")


def _runner(url: str) -> Any:
    def sql(*statements: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with psycopg.connect(url, autocommit=True) as conn:
            for stmt in statements:
                cur = conn.execute(stmt.encode())
                rows = cur.fetchall() if cur.description else []
        return rows

    return sql


@pytest.fixture
def wh(project: Builder, pg_url: str) -> Warehouse:
    project.write("sources/wh.yml", {"type": "postgres", "url": pg_url})
    return Warehouse(
        project, "postgres", _runner(pg_url), lambda lo, hi: f"generate_series({lo}, {hi}) AS t(i)"
    )


def test_second_run_on_unchanged_model_sends_nothing(wh: Warehouse) -> None:
    second_run_sends_nothing(wh)


def test_one_percent_changes_travel_exactly(wh: Warehouse) -> None:
    one_percent_travels_exactly(wh)


def test_rejected_rows_are_kept_in_the_warehouse_and_retried(
    wh: Warehouse, receiver: WebhookReceiver
) -> None:
    rejected_rows_are_retried(wh, receiver)


def test_null_and_duplicate_keys_are_invalid_and_never_sent(wh: Warehouse) -> None:
    null_and_duplicate_keys_are_invalid(wh)


def test_same_counts_and_keys_as_the_local_planner(
    wh: Warehouse, receiver: WebhookReceiver
) -> None:
    same_result_as_local_planner(wh, receiver)


def test_dry_run_leaves_the_planner_tables_as_they_were(wh: Warehouse) -> None:
    dry_run_changes_nothing(wh)


def test_text_keys_and_a_custom_schema(wh: Warehouse) -> None:
    wh.sql(
        "CREATE TABLE accounts AS SELECT md5(i::text)::uuid AS id, 'a' || i || '@x' AS email "
        "FROM generate_series(1, 40) AS t(i)"
    )
    wh.project.model("users", "SELECT * FROM accounts")
    wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS, planner="warehouse", planner_schema="bh_state")
    assert run(wh, "s").counts.succeeded == 40
    assert "s_snapshot" in wh.planner_tables("bh_state")
    assert "s_snapshot" not in wh.planner_tables()
    wh.sql("UPDATE accounts SET email = 'x' WHERE email = 'a5@x'")
    second = run(wh, "s")
    assert (second.counts.changed, second.counts.unchanged) == (1, 39)
    [row] = wh.project.rows(second.run_id)
    assert row.key == wh.sql("SELECT id::text FROM accounts WHERE email = 'x'")[0][0]


@pytest.fixture
def limited_role(pg_url: str) -> Iterator[str]:
    """A role that may read the model but not create schemas in the database."""
    role = f"bh_reader_{uuid.uuid4().hex[:8]}"
    db = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"'
        )
    try:
        yield role
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_missing_schema_without_create_privilege_names_the_grants(
    wh: Warehouse, pg_url: str, limited_role: str
) -> None:
    wh.users(20)
    role_url = pg_url.replace("postgres@", f"{limited_role}@")
    wh.project.write("sources/wh.yml", {"type": "postgres", "url": role_url})
    wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS, planner="warehouse")

    failed = run(wh, "s")

    assert failed.status is RunStatus.FAILED
    assert "backhaul_planner" in str(failed.error)
    assert "GRANT USAGE, CREATE ON SCHEMA backhaul_planner" in str(failed.error)
    assert wh.planner_tables() == set()
    assert not (wh.project.root / "dest.sqlite").exists()  # nothing was sent

    # The admin creates the schema for the role, as the error says: the next run works.
    wh.sql(f'CREATE SCHEMA backhaul_planner AUTHORIZATION "{limited_role}"')
    ok = run(wh, "s")
    assert ok.status is RunStatus.SUCCEEDED, ok.error
    assert ok.counts.succeeded == 20


def test_read_only_planner_tables_fail_with_state_intact(
    wh: Warehouse, pg_url: str, limited_role: str
) -> None:
    wh.users(20)
    wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS, planner="warehouse")
    assert run(wh, "s").counts.succeeded == 20
    # The role can read the planner tables but write none of them.
    wh.sql(
        f'GRANT USAGE ON SCHEMA backhaul_planner TO "{limited_role}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA backhaul_planner TO "{limited_role}"',
    )
    wh.project.write(
        "sources/wh.yml",
        {"type": "postgres", "url": pg_url.replace("postgres@", f"{limited_role}@")},
    )
    wh.sql("UPDATE users SET email = 'z' || email WHERE id <= 3")

    failed = run(wh, "s")

    assert failed.status is RunStatus.FAILED
    assert "backhaul_planner" in str(failed.error) and "GRANT" in str(failed.error)
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_snapshot") == [(20,)]
    assert wh.sql("SELECT count(*) FROM backhaul_planner.s_acks") == [(0,)]
