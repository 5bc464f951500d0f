"""`plan` and the `run` after it take one path to one `SyncPlan`, for both planners.

A dry run and a run compute the same frozen plan through `engine.plan.compute`: the same
counts, the same snapshot size, the same guard verdict, with settings resolved once.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import psycopg
import pytest

from backhaul.engine.plan import SyncPlan
from backhaul.engine.plan import backend_for
from backhaul.engine.plan import compute
from backhaul.engine.runner import open_planning
from backhaul.engine.runner import plan_sync
from backhaul.engine.runner import settings_for
from backhaul.observe.events import Planned
from backhaul.summary import Counts
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from conftest import Builder
from conftest import sqlite_rows
from engine.plan import MAPPINGS
from engine.plan import pg_database

Sql = Callable[..., list[tuple[Any, ...]]]
PLANNED = ("queried", "added", "changed", "removed", "retried", "unchanged", "invalid")


@dataclass
class Plans:
    """The `Planned` events of a run: the counts of the plan it applied."""

    counts: list[Counts] = field(default_factory=list)

    def __call__(self, event: object) -> None:
        if isinstance(event, Planned):
            self.counts.append(event.counts)


def planned(counts: Counts) -> dict[str, int]:
    return {name: getattr(counts, name) for name in PLANNED}


def sync_plan(project: Builder, *, force: bool = False) -> SyncPlan:
    """The `SyncPlan` a dry run computes, from the engine's one planning function."""
    loaded = project.load()
    sync = loaded.sync("s")
    settings = settings_for(loaded, sync)
    ws = open_planning(loaded, sync, settings, read_only=True)
    try:
        return compute(ws, backend_for(ws), settings, full_resync=False, force=force)
    finally:
        ws.close()


def plan_then_run(project: Builder, *, force: bool = False) -> tuple[SyncPlan, RunSummary]:
    """Plan, check the dry run shows that plan, run, check the run applied the same plan."""
    plan = sync_plan(project, force=force)
    dry = plan_sync(project.load(), "s", force=force)
    assert planned(dry.counts) == planned(plan.counts)
    assert dry.status is (RunStatus.GUARDED if plan.verdict.guarded else RunStatus.SUCCEEDED)
    assert dry.error == plan.verdict.message

    plans = Plans()
    summary = project.run("s", force=force, events=plans)
    if plan.verdict.guarded:
        assert summary.status is RunStatus.GUARDED
        assert summary.error == plan.verdict.message
        assert planned(summary.counts) == planned(plan.counts)
        assert plans.counts == []  # stopped before the outbox: nothing was sent
    else:
        assert summary.status is RunStatus.SUCCEEDED, summary.error
        [applied] = plans.counts
        assert planned(applied) == planned(plan.counts)
        assert planned(summary.counts) == planned(plan.counts)
    return plan, summary


def scenario(project: Builder, sql: Sql, planner: str) -> None:
    sql(
        "CREATE TABLE users AS SELECT CAST(i AS BIGINT) AS id, "
        "'u' || CAST(i AS VARCHAR) || '@x' AS email FROM (SELECT * FROM "
        "(VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), "
        "(15), (16), (17), (18), (19), (20)) AS v(i)) AS t"
    )
    project.model("users", "SELECT * FROM users")
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", max_remove_pct=10, mappings=MAPPINGS, planner=planner)

    first, summary = plan_then_run(project)
    assert (first.counts.added, first.snapshot_rows, first.verdict.guarded) == (20, 0, False)
    assert summary.counts.succeeded == 20

    # 3 of 20 removed (15%) is above max_remove_pct: guarded in the plan and in the run.
    sql("DELETE FROM users WHERE id <= 3", "UPDATE users SET email = 'changed' WHERE id = 9")
    before = sqlite_rows(dest)
    guarded, _ = plan_then_run(project)
    assert guarded.verdict.guarded and guarded.verdict.message is not None
    assert "max_remove_pct" in guarded.verdict.message
    assert (guarded.counts.removed, guarded.counts.changed, guarded.snapshot_rows) == (3, 1, 20)
    assert sqlite_rows(dest) == before  # nothing was sent

    forced, summary = plan_then_run(project, force=True)
    assert not forced.verdict.guarded
    assert (forced.counts.removed, forced.counts.changed) == (3, 1)
    assert summary.counts.succeeded == 4
    assert len(sqlite_rows(dest)) == 17

    settled, _ = plan_then_run(project)
    assert (settled.counts.planned, settled.snapshot_rows) == (0, 17)


def test_local_planner(project: Builder) -> None:
    scenario(project, project.sql, "local")


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_database("bh_planrun")


def test_warehouse_planner_on_postgres(project: Builder, pg_url: str) -> None:
    project.write("sources/wh.yml", {"type": "postgres", "url": pg_url})

    def sql(*statements: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for stmt in statements:
                conn.execute(stmt.encode())
        return []

    scenario(project, sql, "warehouse")
