"""Guards stop suspicious runs before anything is sent; dry runs change nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import sqlite_rows

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(path: Path) -> list[tuple[object, ...]]:
    """The snapshot rows (acks folded in) as stored, read without changing the file."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{path}' AS st (READ_ONLY)")
        rows = con.execute("SELECT k0, fp FROM st.snapshot ORDER BY k0").fetchall()
        acks = con.execute("SELECT count(*) FROM st.acks").fetchall()[0][0]
        rejected = con.execute("SELECT count(*) FROM st.rejected").fetchall()[0][0]
        return [*rows, ("acks", acks), ("rejected", rejected)]
    finally:
        con.close()


def _counts(summary: RunSummary) -> dict[str, int]:
    return summary.counts.as_dict()


def test_removals_above_the_limit_stop_the_run_before_sending(project: Builder) -> None:
    project.users(50)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", max_remove_pct=10, mappings=MAPPINGS)
    project.run("s")
    project.sql(
        "DELETE FROM users WHERE id <= 6",  # 12% of the rows
        "UPDATE users SET email = 'changed' WHERE id = 20",
    )
    before_rows = sqlite_rows(dest)
    before_state = _snapshot(project.state_file("s"))
    before_plan = project.plan("s")

    run = project.run("s")

    assert run.status is RunStatus.GUARDED and run.exit_code == 1
    assert run.error is not None and "max_remove_pct" in run.error and "--force" in run.error
    assert run.counts.succeeded == 0
    assert project.rows(run.run_id) == []
    assert sqlite_rows(dest) == before_rows  # neither the deletes nor the change went out
    assert _snapshot(project.state_file("s")) == before_state
    after_plan = project.plan("s")
    assert _counts(after_plan) == _counts(before_plan)
    assert after_plan.samples == before_plan.samples


def test_force_overrides_the_removal_guard(project: Builder) -> None:
    project.users(50)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", max_remove_pct=10, mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users WHERE id <= 6")
    assert project.run("s").status is RunStatus.GUARDED

    run = project.run("s", force=True)

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 6
    assert [r[0] for r in sqlite_rows(dest)] == list(range(7, 51))


def test_project_default_limit_applies(project: Builder) -> None:
    project.write("backhaul.yml", {"name": "t", "defaults": {"max_remove_pct": 5}})
    project.users(40)
    project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users WHERE id <= 3")  # 7.5%

    assert project.run("s").status is RunStatus.GUARDED


def test_removals_are_not_guarded_when_nothing_is_removed_at_the_destination(
    project: Builder,
) -> None:
    project.users(10)
    project.sqlite_destination()
    project.sync("s", mode="upsert", mappings=MAPPINGS)  # on_remove: nothing
    project.run("s")
    project.sql("DELETE FROM users WHERE id <= 8")

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 8


def test_a_model_that_suddenly_returns_no_rows_is_stopped(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(20)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="mirror", max_remove_pct=100, mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users")
    requests = len(receiver.calls)

    run = project.run("s")

    assert run.status is RunStatus.GUARDED and run.exit_code == 1
    assert run.error is not None and "0 rows" in run.error
    assert len(receiver.calls) == requests
    assert len(receiver.records) == 20

    forced = project.run("s", force=True)
    assert forced.counts.removed == 20 and receiver.records == {}


def test_plan_before_any_run_creates_no_state_and_sends_nothing(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(10)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)

    plan = project.plan("s")

    assert plan.dry_run and plan.counts.added == 10
    keys = [r["key"] for r in plan.samples["add"]]
    assert len(keys) == 5 and set(keys) <= {str(i) for i in range(1, 11)}
    assert not project.state_file("s").exists()
    assert receiver.calls == []
    assert project.run("s").counts.added == 10


def test_plan_after_a_run_changes_no_state(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(10)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="mirror", mappings=MAPPINGS)
    project.run("s")
    project.sql("UPDATE users SET email = 'x' WHERE id = 4", "DELETE FROM users WHERE id = 9")
    state = project.state_file("s")
    digest = _digest(state)
    requests = len(receiver.calls)

    plan = project.plan("s")
    plan_again = project.plan("s")

    assert (plan.counts.changed, plan.counts.removed) == (1, 1)
    assert _counts(plan_again) == _counts(plan)
    assert plan.samples["change"] == [{"key": "4", "id": 4, "email": "x"}]
    assert plan.samples["remove"] == [{"key": "9"}]
    assert _digest(state) == digest
    assert len(receiver.calls) == requests
    run = project.run("s")
    assert (run.counts.changed, run.counts.removed) == (1, 1)
    assert receiver.records["4"]["email"] == "x" and "9" not in receiver.records
