"""Sync logs written back to the warehouse: runs and per-row changes, queryable with SQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backhaul import api
from backhaul.errors import ConfigError
from backhaul.observe.writeback import WritebackConfig
from backhaul.observe.writeback import write_back
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from engine.plan import MAPPINGS
from engine.plan import Warehouse
from engine.plan import pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_database("bh_wback")


def _pg(url: str) -> Any:
    def sql(*statements: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with psycopg.connect(url, autocommit=True) as conn:
            for stmt in statements:
                cur = conn.execute(stmt.encode())
                rows = cur.fetchall() if cur.description else []
        return rows

    return sql


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)])
def wh(request: pytest.FixtureRequest, project: Builder) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(
            project, "duckdb", project.sql, lambda lo, hi: f"range({lo}, {hi + 1}) t(i)"
        )
    url = request.getfixturevalue("pg_url")
    project.write("sources/wh.yml", {"type": "postgres", "url": url})
    return Warehouse(
        project, "postgres", _pg(url), lambda lo, hi: f"generate_series({lo}, {hi}) t(i)"
    )


def _write(wh: Warehouse, summary: RunSummary, schema: str = "backhaul_logs") -> int:
    project = wh.project.load()
    config = WritebackConfig.model_validate({"enabled": True, "schema": schema})
    with api.open_store(project) as store:
        return write_back(project, "s", summary, store, config)


def test_runs_and_changes_are_queryable_in_the_warehouse(
    wh: Warehouse, receiver: WebhookReceiver
) -> None:
    wh.users(30)
    wh.project.webhook_destination(receiver)
    wh.project.sync("s", destination="hook", mappings=MAPPINGS)
    first = wh.project.run("s")
    assert _write(wh, first) == 31  # the run row and 30 changes
    wh.sql("UPDATE users SET email = 'v2' || email WHERE id <= 2")
    receiver.faults.reject({"2": "contact is archived"})
    second = wh.project.run("s")
    assert second.status is RunStatus.PARTIAL
    assert _write(wh, second) == 3

    runs = wh.sql(
        "SELECT run_id, sync, status, added, changed, succeeded, rejected "
        "FROM backhaul_logs.backhaul_runs ORDER BY started_at"
    )
    assert runs == [
        (first.run_id, "s", "succeeded", 30, 0, 30, 0),
        (second.run_id, "s", "partial", 0, 2, 1, 1),
    ]
    changes = wh.sql(
        'SELECT "key", op, status, error FROM backhaul_logs.backhaul_changelog '
        f"WHERE run_id = '{second.run_id}' ORDER BY \"key\""
    )
    assert changes == [
        ("1", "change", "ok", None),
        ("2", "change", "rejected", "contact is archived"),
    ]
    per_status = wh.sql(
        "SELECT status, count(*) FROM backhaul_logs.backhaul_changelog GROUP BY status ORDER BY status"
    )
    assert per_status == [("ok", 31), ("rejected", 1)]


def test_writing_a_run_again_replaces_its_rows(wh: Warehouse) -> None:
    wh.users(5)
    wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS)
    run = wh.project.run("s")
    _write(wh, run, schema="history")
    _write(wh, run, schema="history")
    assert wh.sql("SELECT count(*) FROM history.backhaul_runs") == [(1,)]
    assert wh.sql("SELECT count(*) FROM history.backhaul_changelog") == [(5,)]


def test_unsupported_source_gets_a_config_error(project: Builder) -> None:
    project.write("sources/wh.yml", {"type": "duckdb", "path": ":memory:"})
    project.model("users", "SELECT 1 AS id, 'a' AS email")
    project.sqlite_destination()
    project.sync("s", mappings=MAPPINGS)
    run = project.run("s")
    with pytest.raises(ConfigError, match="writeback"):
        _write(Warehouse(project, "duckdb", project.sql, str), run)


def test_schema_option_is_validated() -> None:
    with pytest.raises(ValueError):
        WritebackConfig.model_validate({"enabled": True, "schema": "drop table; --"})
    assert WritebackConfig().enabled is False


def test_a_sync_file_turns_writeback_on(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(12)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", writeback={"enabled": True, "schema": "sync_logs"})
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED
    logged = project.sql("SELECT count(*) FROM sync_logs.backhaul_changelog WHERE status = 'ok'")
    assert logged == [(12,)]
    runs = project.sql("SELECT status, added FROM sync_logs.backhaul_runs")
    assert runs == [("succeeded", 12)]
