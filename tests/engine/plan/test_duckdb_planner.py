"""`planner: warehouse` on a DuckDB warehouse file: planner tables inside the file itself."""

from __future__ import annotations

import pytest

from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from engine.plan import MAPPINGS
from engine.plan import Warehouse
from engine.plan import dry_run_changes_nothing
from engine.plan import null_and_duplicate_keys_are_invalid
from engine.plan import one_percent_travels_exactly
from engine.plan import rejected_rows_are_retried
from engine.plan import run
from engine.plan import same_result_as_local_planner
from engine.plan import second_run_sends_nothing

pytestmark = pytest.mark.integration


@pytest.fixture
def wh(project: Builder) -> Warehouse:
    return Warehouse(project, "duckdb", project.sql, lambda lo, hi: f"range({lo}, {hi + 1}) t(i)")


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


def test_failed_cast_is_invalid_when_planned_in_the_warehouse(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE people AS SELECT * FROM (VALUES (1, '12'), (2, 'twelve')) t(id, n)")
    wh.project.model("users", "SELECT * FROM people")
    wh.project.sqlite_destination()
    wh.project.sync(
        "s",
        planner="warehouse",
        mappings=[{"column": "id", "field": "id"}, {"column": "n", "field": "n", "cast": "int"}],
    )
    first = run(wh, "s")
    assert (first.counts.succeeded, first.counts.invalid) == (1, 1)
    [row] = wh.project.rows(first.run_id, status="invalid")
    assert row.key == "2" and "`n`" in str(row.error)
    assert wh.sql("SELECT k0 FROM backhaul_planner.s_snapshot") == [(1,)]


def test_mapping_change_resends_every_row(wh: Warehouse) -> None:
    wh.users(50)
    wh.project.sqlite_destination()
    wh.project.sync("s", mappings=MAPPINGS, planner="warehouse")
    assert run(wh, "s").counts.added == 50
    wh.project.sync(
        "s",
        planner="warehouse",
        mappings=[MAPPINGS[0], {"column": "email", "field": "email", "cast": "string"}],
    )
    assert run(wh, "s").counts.changed == 50


def test_in_memory_duckdb_source_gets_a_clear_config_error(project: Builder) -> None:
    project.write("sources/wh.yml", {"type": "duckdb", "path": ":memory:"})
    project.model("users", "SELECT 1 AS id, 'a' AS email")
    project.sqlite_destination()
    project.sync("s", planner="warehouse")
    summary = project.run("s")
    assert summary.status is RunStatus.FAILED
    assert "planner: warehouse" in str(summary.error) and "planner: local" in str(summary.error)
